"""Each fault knob, set from the configuration or the control API, seen from a client."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest

from shared.sandbox.config import DEFAULT_FAIL_ERROR
from tests.shared.sandbox.calls import SUBMIT_PATH, result_of, submit, wait_finished

OUTAGE_S = 1.0
"""A timed outage: long enough for a loaded machine to ask during it, short for the suite."""


def reset_time(answer: httpx.Response) -> float:
    stamp = answer.headers["x-rate-limit-reset-at-utc"]
    assert stamp.endswith("Z") and len(stamp) == len("2026-11-24T12:00:05Z")
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def test_submits_past_the_limit_answer_429_with_the_reset_time(make_sandbox, make_client):
    sandbox = make_sandbox(submit_rpm=3)
    client = make_client(sandbox.url)
    first_at = time.time()
    for _ in range(3):
        submit(client)

    limited = client.post(SUBMIT_PATH, json={"prompt": "one too many"})

    assert limited.status_code == 429
    assert "Retry-After" not in limited.headers
    assert first_at + 60 - 1 <= reset_time(limited) <= time.time() + 60
    assert client.get("/v2/requests/x/status").status_code == 404  # polls have their own budget
    assert sandbox.truth(with_requests=False)["totals"]["rate_limited"] == {"submit": 1, "poll": 0}


def test_retry_after_is_sent_when_configured(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(submit_rpm=1, retry_after_header=True).url)
    submit(client)

    limited = client.post(SUBMIT_PATH, json={"prompt": "again"})

    assert limited.status_code == 429
    assert 59 <= int(limited.headers["Retry-After"]) <= 60


def test_submit_is_admitted_again_once_the_oldest_leaves_the_window(make_sandbox, make_client):
    client = make_client(make_sandbox(submit_rpm=2, rate_window_s=0.4).url)
    submit(client)
    time.sleep(0.2)
    submit(client)

    assert client.post(SUBMIT_PATH, json={"prompt": "x"}).status_code == 429
    time.sleep(0.25)  # the first left the window; the second has not
    assert client.post(SUBMIT_PATH, json={"prompt": "x"}).status_code == 200
    assert client.post(SUBMIT_PATH, json={"prompt": "x"}).status_code == 429


def test_status_and_result_share_the_poll_limit_per_key(make_sandbox, make_client) -> None:
    sandbox = make_sandbox(poll_rpm=2)
    client = make_client(sandbox.url)
    request_id = submit(client)
    status_url = f"/v2/requests/{request_id}/status"

    answers = [
        client.get(status_url),
        client.get(f"/v2/requests/{request_id}"),
        client.get(status_url),
    ]
    other_key = make_client(sandbox.url, api_key="other-key").get(status_url)

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert "x-rate-limit-reset-at-utc" in answers[2].headers
    assert other_key.status_code == 200
    submit(client)  # submits have their own budget
    record = sandbox.truth([request_id])["requests"][request_id]
    assert (record["status_polls"], record["result_fetches"], record["rate_limited"]) == (2, 1, 1)


def test_credits_run_out_with_a_plain_text_406_naming_balance_and_cost(make_sandbox, make_client):
    sandbox = make_sandbox(credits=0.025, cost_per_image=0.01)
    client = make_client(sandbox.url)
    submit(client)
    submit(client, prompt="blocked [fail]")  # a FAILED job is not billed
    submit(client)

    refused = client.post(SUBMIT_PATH, json={"prompt": "one more"})

    assert refused.status_code == 406
    assert refused.headers["content-type"].startswith("text/plain")
    assert refused.text.startswith("Insufficient credits")
    assert "$0.0050" in refused.text and "$0.0100" in refused.text
    sandbox.set_faults(credits=1.0)
    assert client.post(SUBMIT_PATH, json={"prompt": "topped up"}).status_code == 200


def test_remaining_credits_follow_the_balance(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(credits=1.0, cost_per_image=0.1).url)
    request_id = submit(client, batch_size=2)

    body = result_of(client, request_id).json()

    assert body["cost"] == pytest.approx(0.2)
    assert body["remaining_credits"] == pytest.approx(0.8)


def test_team_spend_limit_answers_406(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(spend_limit=0.015).url)
    submit(client)

    refused = client.post(SUBMIT_PATH, json={"prompt": "over the limit"})

    assert refused.status_code == 406
    assert refused.text.startswith("Team spend limit reached")


def test_fail_probability_fails_jobs_with_the_configured_error(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(fail_probability=1.0, fail_error="GPU fell over").url)

    answer = wait_finished(client, submit(client))

    assert answer.status_code == 422
    assert answer.json()["error"] == "GPU fell over"


def test_fail_marker_is_configurable(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(fail_marker="#boom").url)

    failed = wait_finished(client, submit(client, prompt="a #boom fox"))
    fine = wait_finished(client, submit(client, prompt="a [fail] fox"))

    assert failed.json() | {"metrics": None} == {
        "request_id": failed.json()["request_id"],
        "status": "FAILED",
        "error": DEFAULT_FAIL_ERROR,
        "metrics": None,
    }
    assert fine.json()["status"] == "COMPLETED"


def test_injected_500_is_json(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(error_500_probability=1.0).url)

    answer = client.get("/v2/requests/x/status")

    assert answer.status_code == 500
    assert answer.json() == {"error": "Internal Server Error"}


@pytest.mark.parametrize("status", [502, 503, 504])
def test_injected_gateway_errors_are_html_pages(make_sandbox, make_client, status: int) -> None:
    sandbox = make_sandbox(**{f"error_{status}_probability": 1.0})
    client = make_client(sandbox.url)

    answer = client.post(SUBMIT_PATH, json={"prompt": "a fox"})

    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/html")
    assert f"<title>{status} " in answer.text
    totals = sandbox.truth()["totals"]
    assert totals["errors_injected"][str(status)] == 1
    assert totals["submits"] == 0


def test_error_probabilities_hit_about_as_often_as_configured(make_sandbox, make_client) -> None:
    sandbox = make_sandbox(error_503_probability=0.3, random_seed=11)
    client = make_client(sandbox.url)

    codes = [client.get("/v2/requests/x/status").status_code for _ in range(300)]

    assert 60 <= codes.count(503) <= 120
    assert codes.count(503) + codes.count(404) == 300


def test_dropped_connection_gets_no_answer_and_no_job(make_sandbox, make_client) -> None:
    sandbox = make_sandbox(drop_probability=1.0)
    client = make_client(sandbox.url)

    # The sandbox closes the socket: the client reads EOF, or a reset when the close races
    # the request still arriving (as a real dropped connection can end either way)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post(SUBMIT_PATH, json={"prompt": "a fox"})

    totals = sandbox.truth()["totals"]
    assert (totals["dropped"], totals["submits"]) == (1, 0)


def test_a_lost_answer_is_a_drop_to_the_client_but_a_job_in_the_truth(
    make_sandbox, make_client
) -> None:
    sandbox = make_sandbox(lost_answer_probability=1.0)
    client = make_client(sandbox.url)

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post(SUBMIT_PATH, json={"prompt": "a fox"})

    truth = sandbox.truth()
    assert (truth["totals"]["lost_answers"], truth["totals"]["submits"]) == (1, 1)
    assert len(truth["requests"]) == 1


def test_slow_answers_are_held_back(make_sandbox, make_client) -> None:
    sandbox = make_sandbox(slow_probability=1.0, slow_s=0.3)
    client = make_client(sandbox.url)

    started = time.monotonic()
    answer = client.get("/v2/requests/x/status")

    assert time.monotonic() - started >= 0.3
    assert answer.status_code == 404
    assert sandbox.truth()["totals"]["slowed"] == 1


def test_held_calls_stay_under_way_until_the_hold_is_lifted(sandbox, make_client) -> None:
    sandbox.set_faults(hold_s=60)
    clients = [make_client(), make_client()]
    with ThreadPoolExecutor(len(clients)) as pool:
        answers = [pool.submit(c.get, "/v2/requests/x/status") for c in clients]
        deadline = time.monotonic() + 10.0
        while sandbox.truth(with_requests=False)["held"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)

        assert sandbox.truth(with_requests=False)["held"] == 2
        assert not any(answer.done() for answer in answers)
        sandbox.set_faults(hold_s=None)
        assert [answer.result(10).status_code for answer in answers] == [404, 404]
    assert sandbox.truth(with_requests=False)["held"] == 0


def test_a_hold_never_lifted_lets_calls_go_after_hold_s(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(hold_s=0.3).url)

    started = time.monotonic()
    answer = client.get("/v2/requests/x/status")

    assert time.monotonic() - started >= 0.3
    assert answer.status_code == 404


def test_outage_answers_503_html_until_switched_off(sandbox, client) -> None:
    request_id = submit(client)
    output = result_of(client, request_id).json()["output"]
    sandbox.set_faults(outage=True)

    during = [
        client.post(SUBMIT_PATH, json={"prompt": "a fox"}),
        client.get(f"/v2/requests/{request_id}/status"),
        client.get(f"/v2/requests/{request_id}"),
    ]

    assert {(a.status_code, a.headers["content-type"].split(";")[0]) for a in during} == {
        (503, "text/html")
    }
    assert client.get(output).status_code == 200  # media is not the API
    sandbox.set_faults(outage=False)
    assert client.get(f"/v2/requests/{request_id}/status").status_code == 200


def test_timed_outage_ends_by_itself(make_sandbox, make_client) -> None:
    started = time.monotonic()
    sandbox = make_sandbox(outage=True, outage_s=OUTAGE_S)
    client = make_client(sandbox.url)

    def status_code() -> int:
        return client.get("/v2/requests/x/status").status_code

    # On while it lasts (a machine too loaded to ask within OUTAGE_S proves nothing here)
    assert status_code() == 503 or time.monotonic() - started >= OUTAGE_S
    deadline = started + OUTAGE_S + 10.0
    while (code := status_code()) == 503 and time.monotonic() < deadline:
        time.sleep(0.05)

    # Over by itself, and not before its time
    assert code == 404 and time.monotonic() - started >= OUTAGE_S
    assert sandbox.config.outage is False


def test_injected_faults_do_not_use_the_rate_limit(make_sandbox, make_client) -> None:
    sandbox = make_sandbox(poll_rpm=1, error_502_probability=1.0)
    client = make_client(sandbox.url)
    for _ in range(3):
        assert client.get("/v2/requests/x/status").status_code == 502

    sandbox.set_faults(error_502_probability=0.0)

    assert client.get("/v2/requests/x/status").status_code == 404

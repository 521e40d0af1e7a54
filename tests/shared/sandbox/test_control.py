"""The control API: ground truth, faults patched at run time, reset; no key, no faults."""

from __future__ import annotations

import pytest

from shared.sandbox.config import SandboxConfig
from tests.shared.sandbox.calls import SUBMIT_PATH, result_of, submit, wait_finished


def test_truth_reports_each_request_as_served(sandbox, client) -> None:
    done = submit(client, prompt="a fox", seed=42)
    output = result_of(client, done).json()["output"]
    client.get(output)
    failed = submit(client, prompt="a [fail] fox")
    wait_finished(client, failed)

    truth = client.get("/_sandbox/truth").json()

    record = truth["requests"][done]
    assert record["prompt"] == "a fox"
    assert record["seed"] == 42
    assert (record["submits"], record["result_fetches"], record["rate_limited"]) == (1, 1, 0)
    assert record["status_polls"] >= 1
    assert record["state"] == "COMPLETED"
    assert record["outputs"] == [output]
    assert record["error"] is None
    assert record["submitted_at"] <= record["started_at"] <= record["completed_at"] <= truth["now"]
    assert truth["requests"][failed]["state"] == "FAILED"
    assert truth["requests"][failed]["error"].startswith("NSFW")
    assert truth["requests"][failed]["outputs"] == []
    totals = truth["totals"]
    assert totals["submits"] == 2
    assert totals["result_fetches"] == 1
    assert totals["media_fetches"] == 1
    assert totals["jobs"] == {"QUEUED": 0, "PROCESSING": 0, "COMPLETED": 1, "FAILED": 1}
    assert totals["credits"]["spent"] == pytest.approx(0.01)


def test_truth_shows_completion_only_once_it_happened(make_sandbox, make_client) -> None:
    sandbox = make_sandbox(time_scale=1.0)
    request_id = submit(make_client(sandbox.url))

    record = sandbox.truth()["requests"][request_id]

    assert record["state"] == "QUEUED"
    assert record["started_at"] is None and record["completed_at"] is None


def test_truth_can_leave_out_or_narrow_the_requests(sandbox, client) -> None:
    first, second = submit(client), submit(client)

    totals_only = client.get("/_sandbox/truth", params={"requests": "0"}).json()
    narrowed = client.get("/_sandbox/truth", params={"request_id": [first, "unknown"]}).json()

    assert "requests" not in totals_only
    assert totals_only["totals"]["submits"] == 2
    assert list(narrowed["requests"]) == [first]
    assert second in sandbox.truth()["requests"]


def test_seed_is_chosen_and_recorded_when_the_request_names_none(sandbox, client) -> None:
    request_id = submit(client)

    assert isinstance(sandbox.truth()["requests"][request_id]["seed"], int)


def test_faults_patch_changes_knobs_and_answers_the_configuration(sandbox, client) -> None:
    answer = client.post("/_sandbox/faults", json={"submit_rpm": 1, "fail_error": "nope"})

    assert answer.status_code == 200
    assert answer.json()["submit_rpm"] == 1
    assert client.get("/_sandbox/faults").json() == answer.json()
    assert set(answer.json()) == set(SandboxConfig.model_fields)
    submit(client)
    assert client.post(SUBMIT_PATH, json={"prompt": "x"}).status_code == 429


@pytest.mark.parametrize(
    ("patch", "field"),
    [({"drop_probability": 2}, "drop_probability"), ({"no_such_knob": 1}, "no_such_knob")],
)
def test_invalid_faults_patch_answers_400_and_changes_nothing(client, patch, field) -> None:
    before = client.get("/_sandbox/faults").json()

    answer = client.post("/_sandbox/faults", json={"gpus": 3, **patch})

    assert answer.status_code == 400
    assert answer.json()["error"].startswith(f"{field}: ")
    assert client.get("/_sandbox/faults").json() == before


def test_faults_patch_must_be_a_json_object(client) -> None:
    assert client.post("/_sandbox/faults", json=[1]).status_code == 400
    assert client.post("/_sandbox/faults", content=b"{").status_code == 400


def test_reset_forgets_jobs_counters_and_windows(sandbox, client) -> None:
    sandbox.set_faults(submit_rpm=1, credits=0.5)
    request_id = submit(client)

    answer = client.post("/_sandbox/reset")

    assert answer.json() == {"forgotten_jobs": 1}
    assert client.get(f"/v2/requests/{request_id}/status").status_code == 404
    totals = sandbox.truth()["totals"]
    assert (totals["submits"], totals["status_polls"]) == (0, 1)
    assert totals["credits"] == {"balance": 0.5, "spent": 0.0}
    submit(client)  # the window was cleared too


def test_control_api_needs_no_key_and_is_never_faulty(sandbox, make_client) -> None:
    sandbox.set_faults(outage=True, drop_probability=1.0, poll_rpm=1)
    anonymous = make_client(api_key=None)

    for _ in range(3):
        assert anonymous.get("/_sandbox/truth").status_code == 200
    assert anonymous.post("/_sandbox/faults", json={"outage": False}).status_code == 200


def test_gpus_added_at_run_time_take_the_next_jobs(make_sandbox, make_client) -> None:
    # 2.5 s a job: none finishes while the test looks, even on a busy machine
    sandbox = make_sandbox(gpus=1, time_scale=1.0, inference_sigma=0, min_queue_s=0)
    client = make_client(sandbox.url)
    running = submit(client, width=1024, height=1024)
    waiting = submit(client, width=1024, height=1024)  # booked behind the first, stays there

    sandbox.set_faults(gpus=2)
    on_new_gpu = submit(client, width=1024, height=1024)

    states = {key: record["state"] for key, record in sandbox.truth()["requests"].items()}
    assert states == {running: "PROCESSING", waiting: "QUEUED", on_new_gpu: "PROCESSING"}

"""The v2 protocol as the protocol file gives it: answers, states, outputs and every failure row.

Each test talks to a real sandbox over a loopback socket with httpx.
"""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from shared.request_model import MODEL_SLUG
from tests.shared.sandbox.calls import SUBMIT_PATH, result_of, submit, wait_finished


def test_submit_answers_queued_with_absolute_urls_on_the_sandbox(sandbox, client) -> None:
    answer = client.post(SUBMIT_PATH, json={"prompt": "a red fox"})

    assert answer.status_code == 200
    body = answer.json()
    request_id = body["request_id"]
    assert body["status"] == "QUEUED"
    assert body["status_url"] == f"{sandbox.url}/v2/requests/{request_id}/status"
    assert body["response_url"] == f"{sandbox.url}/v2/requests/{request_id}"


def test_public_url_replaces_the_origin_in_every_url(make_sandbox, make_client) -> None:
    sandbox = make_sandbox(public_url="https://api.example.test")
    client = make_client(sandbox.url)

    body = client.post(SUBMIT_PATH, json={"prompt": "a red fox"}).json()
    output = result_of(client, body["request_id"]).json()["output"]

    assert body["status_url"].startswith("https://api.example.test/v2/requests/")
    assert output.startswith("https://api.example.test/media/")


def test_jobs_wait_queued_for_a_free_gpu_then_process_then_complete(
    make_sandbox, make_client
) -> None:
    # each job processes for 0.5 s (its 256x256 image is 1/16 of the reference size): polled
    # every 20 ms, PROCESSING is seen even on a busy machine
    sandbox = make_sandbox(gpus=1, time_scale=1.0, inference_mean_s=8.0, inference_sigma=0,
                           min_queue_s=0)  # fmt: skip
    client = make_client(sandbox.url)
    first, second = submit(client), submit(client)

    seen: dict[str, set[str]] = {first: set(), second: set()}
    deadline = time.monotonic() + 10
    while "COMPLETED" not in seen[second] and time.monotonic() < deadline:
        for request_id, states in seen.items():
            states.add(client.get(f"/v2/requests/{request_id}/status").json()["status"])
        time.sleep(0.02)

    assert seen[first] >= {"PROCESSING", "COMPLETED"}
    assert seen[second] == {"QUEUED", "PROCESSING", "COMPLETED"}
    truth = sandbox.truth()["requests"]
    assert truth[second]["started_at"] >= truth[first]["completed_at"]


def test_completed_result_has_output_metrics_and_billing(sandbox, client) -> None:
    request_id = submit(client)

    answer = result_of(client, request_id)

    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "COMPLETED"
    assert body["error"] is None
    assert body["output"] == f"{sandbox.url}/media/{request_id}/0.jpg"
    assert set(body["metrics"]) == {"inference_time", "queue_time", "total_time"}
    assert body["metrics"]["inference_time"] > 0
    assert body["metrics"]["total_time"] == pytest.approx(
        body["metrics"]["inference_time"] + body["metrics"]["queue_time"], abs=0.002
    )
    assert body["cost"] == 0.01
    assert body["remaining_credits"] == pytest.approx(1e9 - 0.01)


def test_result_before_completion_reports_the_state_without_output(make_sandbox, make_client):
    # 2.5 s for its 256x256 image: still running when asked, even on a busy machine
    client = make_client(make_sandbox(time_scale=1.0, inference_mean_s=40.0).url)
    request_id = submit(client)

    body = client.get(f"/v2/requests/{request_id}").json()

    assert body["status"] in ("QUEUED", "PROCESSING")
    assert body["output"] is None


def test_batch_size_above_one_gives_a_list_of_image_urls(sandbox, client) -> None:
    request_id = submit(client, batch_size=3, image_format="png")

    output = result_of(client, request_id).json()["output"]

    assert output == [f"{sandbox.url}/media/{request_id}/{n}.png" for n in range(3)]
    assert {client.get(url).status_code for url in output} == {200}


@pytest.mark.parametrize("batch_size", [1, 2])
def test_base64_output_carries_the_image_data(client, batch_size: int) -> None:
    request_id = submit(client, base64=True, batch_size=batch_size, width=128, height=96)

    output = result_of(client, request_id).json()["output"]

    images = [output] if batch_size == 1 else output
    assert len(images) == batch_size
    for encoded in images:
        assert Image.open(io.BytesIO(base64.b64decode(encoded))).size == (128, 96)


def test_failed_job_answers_422_with_status_failed_on_both_gets(client) -> None:
    request_id = submit(client, prompt="a lighthouse [fail]")

    status = wait_finished(client, request_id)
    result = client.get(f"/v2/requests/{request_id}")

    for answer in (status, result):
        assert answer.status_code == 422
        body = answer.json()
        assert body["status"] == "FAILED"
        assert body["request_id"] == request_id
        assert body["error"].startswith("NSFW content detected")
        assert body["metrics"]["inference_time"] > 0


@pytest.mark.parametrize("path", ["/v2/requests/{id}/status", "/v2/requests/{id}"])
def test_unknown_request_id_answers_404_naming_it(client, path: str) -> None:
    answer = client.get(path.format(id="no-such-id"))

    assert answer.status_code == 404
    assert answer.json() == {"error": "Request no-such-id not found"}


def test_request_expires_after_retention_but_its_media_stays(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(retention_s=0.3).url)
    request_id = submit(client)
    output = result_of(client, request_id).json()["output"]

    time.sleep(0.35)

    assert client.get(f"/v2/requests/{request_id}/status").status_code == 404
    assert client.get(f"/v2/requests/{request_id}").json() == {
        "error": f"Request {request_id} not found"
    }
    assert client.get(output).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", SUBMIT_PATH),
        ("PUT", SUBMIT_PATH),
        ("POST", "/v2/requests/abc/status"),
        ("DELETE", "/v2/requests/abc"),
    ],
)
def test_wrong_verb_answers_405_as_an_html_page(client, method: str, path: str) -> None:
    answer = client.request(method, path)

    assert answer.status_code == 405
    assert answer.headers["content-type"].startswith("text/html")
    assert "<h1>405 Method Not Allowed</h1>" in answer.text


def test_missing_key_answers_401_and_bearer_tokens_are_not_keys(make_client) -> None:
    client = make_client(api_key=None)

    missing = client.post(SUBMIT_PATH, json={"prompt": "a fox"})
    bearer = client.get("/v2/requests/x/status", headers={"Authorization": "Bearer test-key"})

    for answer in (missing, bearer):
        assert answer.status_code == 401
        assert answer.json() == {"error": "Missing Authorization or x-api-key in header"}


def test_key_outside_the_configured_list_answers_401(make_sandbox, make_client) -> None:
    sandbox = make_sandbox(api_keys=["good-key"])

    wrong = make_client(sandbox.url, api_key="bad-key").get("/v2/requests/x/status")
    right = make_client(sandbox.url, api_key="good-key").get("/v2/requests/x/status")

    assert wrong.status_code == 401
    assert wrong.json()["error"].startswith("Unauthorized. API key is invalid")
    assert right.status_code == 404


def test_forbidden_key_answers_403_on_submit(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(forbidden_keys=["test-key"]).url)

    answer = client.post(SUBMIT_PATH, json={"prompt": "a fox"})

    assert answer.status_code == 403
    assert MODEL_SLUG in answer.json()["error"]


def test_unknown_model_slug_answers_404(client) -> None:
    answer = client.post("/v2/no-such-model", json={"prompt": "a fox"})

    assert answer.status_code == 404
    assert answer.json() == {"error": "Model no-such-model not found"}


def test_retired_model_answers_410(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(model_retired=True).url)

    answer = client.post(SUBMIT_PATH, json={"prompt": "a fox"})

    assert answer.status_code == 410
    assert "retired" in answer.json()["error"]


def test_missing_json_content_type_answers_406_in_plain_text(client) -> None:
    answer = client.post(SUBMIT_PATH, content=b'{"prompt": "a fox"}')

    assert answer.status_code == 406
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text == "Invalid content type"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "a fox", "steps": 0}, "steps"),
        ({"prompt": "a fox", "image_format": "gif"}, "image_format"),
        ({"prompt": "a fox", "width": 4096}, "width"),
        ({"prompt": "a fox", "batch_size": 11}, "batch_size"),
        ({"steps": 4}, "prompt"),
        ({"prompt": "a fox", "strength": 0.5}, "strength"),
        (["a fox"], "body"),
    ],
)
def test_invalid_body_answers_400_naming_the_field(client, body: object, field: str) -> None:
    answer = client.post(SUBMIT_PATH, json=body)

    assert answer.status_code == 400
    assert answer.json()["error"].startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [(b"prompt=a fox", "application/json"),
     (b'{"prompt": "a fox"}', "application/json; charset=no-such-charset"),
     (b"[" * 100_000 + b"]" * 100_000, "application/json")],
)  # fmt: skip
def test_body_that_is_not_json_answers_400(client, content: bytes, content_type: str) -> None:
    answer = client.post(SUBMIT_PATH, content=content, headers={"Content-Type": content_type})

    assert answer.status_code == 400
    assert "JSON" in answer.json()["error"]


@pytest.mark.parametrize("name", ["\u00b2.jpg", "\u0966.jpg", "00.jpg", "+0.jpg"])
def test_media_names_other_than_the_index_itself_are_not_found(sandbox, client, name) -> None:
    request_id = submit(client)
    assert wait_finished(client, request_id).json()["status"] == "COMPLETED"
    assert client.get(f"{sandbox.url}/media/{request_id}/0.jpg").status_code == 200
    assert client.get(f"{sandbox.url}/media/{request_id}/{name}").status_code == 404


def test_late_validation_accepts_a_bad_body_that_then_fails(make_sandbox, make_client) -> None:
    client = make_client(make_sandbox(late_validation=True).url)

    request_id = client.post(SUBMIT_PATH, json={"prompt": "a fox", "steps": 0}).json()["request_id"]
    answer = wait_finished(client, request_id)

    assert answer.status_code == 422
    assert answer.json()["error"].startswith("steps: ")


def test_aspect_ratio_preset_decides_the_size(client) -> None:
    request_id = submit(client, aspect_ratio="21:9 landscape 1536x640", image_format="webp")

    output = result_of(client, request_id).json()["output"]

    image = Image.open(io.BytesIO(client.get(output).content))
    assert (image.format, image.size) == ("WEBP", (1536, 640))


def test_unknown_path_answers_404_json(client) -> None:
    answer = client.get("/v1/anything")

    assert answer.status_code == 404
    assert "error" in answer.json()


def test_sandbox_serves_many_connections_at_once(sandbox) -> None:
    limits = httpx.Limits(max_connections=64)
    client = httpx.Client(base_url=sandbox.url, limits=limits, timeout=10)
    with client, ThreadPoolExecutor(64) as pool:
        codes = list(pool.map(lambda _: client.get("/v2/requests/x").status_code, range(256)))

    assert set(codes) == {401}

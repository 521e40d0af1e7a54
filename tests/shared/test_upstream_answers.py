"""Reading Segmind's answers: every row of the protocol's failure table, every output shape,
and any body at all (hypothesis) either gives a correct answer or a ``shared.errors`` class."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import (
    InferenceFailed,
    JobRejected,
    TransientError,
    UnusableOutput,
    UpstreamError,
)
from shared.upstream_answers import (
    MAX_DETAIL_CHARS,
    Reply,
    ResultAnswer,
    StatusAnswer,
    SubmitAccepted,
    base64_image,
    is_http_url,
    parse_result,
    parse_status,
    parse_submit,
)

PARSERS = {"submit": parse_submit, "status": parse_status, "result": parse_result}
ANSWERS = {"submit": SubmitAccepted, "status": StatusAnswer, "result": ResultAnswer}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))
JPEG = b"\xff\xd8\xff\xe0" + b"JFIF" + bytes(40)
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(20)
URL = "https://cdn.segmind.com/out/abc.jpeg"


def reply(code: int, body: object = None, *, raw: bytes | None = None, **headers: str) -> Reply:
    content = raw if raw is not None else json.dumps(body).encode()
    return Reply(http_status=code, content=content, headers=headers, received_at=1_000_000.0)


def raised(call: str, answer: Reply) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        PARSERS[call](answer)
    return caught.value


# --- successful answers -------------------------------------------------------------------


def test_submit_answer_gives_the_request_id_and_ignores_foreign_urls():
    body = {
        "request_id": "9f1c-42",
        "status": "QUEUED",
        "status_url": "https://elsewhere.example/v2/requests/9f1c-42/status",
        "response_url": "https://elsewhere.example/v2/requests/9f1c-42",
    }
    assert parse_submit(reply(200, body)) == SubmitAccepted(request_id="9f1c-42", status="QUEUED")


def test_submit_answer_with_a_numeric_id_and_no_status_is_queued():
    assert parse_submit(reply(200, {"request_id": 12})) == SubmitAccepted(request_id="12")


@pytest.mark.parametrize("request_id", [None, "", "..", "a b", "x\n", True, ["id"], "x" * 300])
def test_submit_answer_without_a_usable_request_id_is_transient(request_id):
    error = raised("submit", reply(200, {"request_id": request_id, "status": "QUEUED"}))
    assert type(error) is TransientError
    assert "request_id" in error.detail


@pytest.mark.parametrize("status", ["QUEUED", "PROCESSING", "COMPLETED", "processing"])
def test_status_answer_names_where_the_request_stands(status):
    answer = parse_status(reply(200, {"status": status, "metrics": {"queue_time": 0.4}}))
    assert answer == StatusAnswer(status=status.upper(), metrics={"queue_time": 0.4})


@pytest.mark.parametrize("status", ["STARTING", None, 3, ["QUEUED"]])
def test_status_answer_with_an_unknown_status_is_transient(status):
    assert type(raised("status", reply(200, {"status": status}))) is TransientError


def test_result_answer_keeps_urls_metrics_and_billing():
    body = {
        "status": "COMPLETED",
        "output": URL,
        "metrics": {"inference_time": 1.25, "queue_time": 0, "total_time": "1.5"},
        "error": None,
        "cost": 0.0032,
        "remaining_credits": 12.5,
    }
    assert parse_result(reply(200, body)) == ResultAnswer(
        output_urls=[URL],
        metrics={"inference_time": 1.25, "queue_time": 0.0, "total_time": 1.5},
        cost=0.0032,
        remaining_credits=12.5,
    )


def test_result_answer_with_a_list_of_urls_keeps_them_in_order():
    urls = [URL, "http://127.0.0.1:8080/outputs/2.png"]
    assert parse_result(reply(200, {"status": "COMPLETED", "output": urls})).output_urls == urls


@pytest.mark.parametrize(
    "item",
    [
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "DATA:image/jpeg;BASE64," + base64.b64encode(JPEG).decode(),
        base64.b64encode(PNG).decode(),
        base64.b64encode(JPEG).decode().rstrip("="),
        base64.urlsafe_b64encode(WEBP).decode(),
        "\n".join(base64.b64encode(PNG * 3).decode()[i : i + 76] for i in range(0, 300, 76)),
    ],
)
def test_result_answer_tells_base64_images_from_urls(item):
    answer = parse_result(reply(200, {"status": "COMPLETED", "output": [item, URL]}))
    assert answer.output_urls == [URL]
    assert len(answer.output_base64) == 1
    decoded = base64.b64decode(answer.output_base64[0])
    assert decoded.startswith((PNG[:8], JPEG[:3], b"RIFF"))
    assert answer.output_base64[0] not in repr(answer)


@pytest.mark.parametrize(
    "output",
    [
        None,
        [],
        42,
        {"note": "done"},
        [7, None, ["nested"]],
        "None",
        "not a url or image",
        "ftp://files.example/x.png",
        "data:image/svg+xml,<svg/>",
        base64.b64encode(b"plain text, not an image").decode(),
        "data:text/html;base64," + base64.b64encode(b"<script>alert(1)</script>").decode(),
    ],
)
def test_a_completed_result_with_nothing_to_keep_fails_showing_its_output(output):
    body = {"status": "COMPLETED", "output": output, "metrics": {"inference_time": 1.5}}
    error = raised("result", reply(200, body))
    assert type(error) is UnusableOutput and error.kind == "unusable_output"
    assert error.detail.endswith(f"output={json.dumps(output, separators=(',', ':'))}")
    assert error.metrics == {"inference_time": 1.5}


@pytest.mark.parametrize(
    ("output", "unrecognized"),
    [
        ([URL, 7, None, ["nested"]], 2),
        ({"image": URL, "seed": 42}, 1),
        ([{"url": URL}], 0),
        ([[URL]], 0),
    ],
)
def test_urls_inside_lists_and_objects_are_kept_and_the_rest_counted(output, unrecognized):
    answer = parse_result(reply(200, {"status": "COMPLETED", "output": output}))
    assert answer.output_urls == [URL]
    assert answer.unrecognized_outputs == unrecognized


def test_a_url_with_spaces_in_its_path_is_kept_percent_encoded():
    output = "https://cdn.segmind.com/out/my image%2B1.jpeg"
    answer = parse_result(reply(200, {"status": "COMPLETED", "output": output}))
    assert answer.output_urls == ["https://cdn.segmind.com/out/my%20image%2B1.jpeg"]


@pytest.mark.parametrize(
    "metrics", [None, "fast", [1, 2], {"inference_time": "slow", "x": True, "y": None, "z": [1]}]
)
def test_metrics_of_the_wrong_type_are_dropped(metrics):
    body = {"status": "COMPLETED", "output": URL, "metrics": metrics, "cost": "free"}
    answer = parse_result(reply(200, body))
    assert (answer.metrics, answer.cost, answer.output_urls) == ({}, None, [URL])


def test_metrics_that_are_not_finite_are_dropped():
    raw = (b'{"status": "COMPLETED", "output": "https://x.example/o.png",'
           b' "metrics": {"a": NaN, "b": Infinity, "c": 1e999, "d": 2}}')  # fmt: skip
    assert parse_result(reply(200, raw=raw)).metrics == {"d": 2.0}


@pytest.mark.parametrize("status", ["QUEUED", "PROCESSING", None])
def test_a_result_that_is_not_completed_yet_is_transient(status):
    assert type(raised("result", reply(200, {"status": status}))) is TransientError


@pytest.mark.parametrize("code", [200, 404, 409, 500])
def test_a_completed_body_is_an_answer_whatever_the_code(code):
    answer = parse_result(reply(code, {"status": "COMPLETED", "output": URL}))
    assert answer.output_urls == [URL]


# --- the failure table --------------------------------------------------------------------

FAILED_BODY = {
    "request_id": "r1",
    "status": "FAILED",
    "error": "Content blocked by safety checker: 'nsfw'",
    "metrics": {"inference_time": 0.8},
}


@pytest.mark.parametrize("call", ["submit", "status", "result"])
@pytest.mark.parametrize("code", [422, 200, 500])
def test_failed_body_is_inference_failed_with_the_error_verbatim(call, code):
    error = raised(call, reply(code, FAILED_BODY))
    assert type(error) is InferenceFailed
    assert error.detail == FAILED_BODY["error"]
    assert (error.http_status, error.metrics) == (code, {"inference_time": 0.8})


def test_failed_body_without_an_error_still_says_something():
    error = raised("status", reply(422, {"status": "FAILED", "message": "OOM on worker"}))
    assert (type(error), error.detail) == (InferenceFailed, "OOM on worker")


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b'{"request_id": "r1", "sta', b"[1, 2]", b"null", b"\xff\xfe", b"<html>"],
)
@pytest.mark.parametrize("call", ["submit", "status", "result"])
def test_a_2xx_body_that_is_not_a_json_object_is_transient(call, raw):
    assert type(raised(call, reply(200, raw=raw))) is TransientError


def test_a_json_body_with_a_bom_is_read():
    raw = b"\xef\xbb\xbf" + json.dumps({"status": "QUEUED"}).encode()
    assert parse_status(reply(200, raw=raw)).status == "QUEUED"


def test_a_very_long_message_is_cut_and_lone_surrogates_are_replaced():
    error = raised("submit", reply(400, {"error": "x" * 10_000}))
    assert len(error.detail) == MAX_DETAIL_CHARS
    error = raised("submit", reply(400, raw=b'{"error": "bad \\ud800 char"}'))
    assert error.detail == "bad ? char"


def test_deeply_nested_json_is_not_a_crash():
    raw = b"[" * 100_000 + b"]" * 100_000
    assert type(raised("status", reply(200, raw=raw))) is TransientError
    assert type(raised("status", reply(400, raw=raw))) is JobRejected


# --- any answer at all --------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["QUEUED", "PROCESSING", "COMPLETED", "FAILED", URL, "r-1"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
answer_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "completed"])
        | json_values,
        "request_id": st.text(max_size=20) | json_values,
        "output": json_values
        | st.lists(st.sampled_from([URL, base64.b64encode(PNG).decode(), "None", 3])),
        "metrics": st.dictionaries(st.text(max_size=8), json_values),
        "error": json_values,
        "cost": json_values,
    },
)
codes = st.sampled_from([200, 201, 204, 301, 400, 401, 403, 404, 405, 406, 410, 422, 429, 500,
                         502, 503]) | st.integers(100, 599)  # fmt: skip
calls = st.sampled_from(["submit", "status", "result"])


def _check(call: str, answer: Reply) -> None:
    """The property: an answer of the call's type, or an error of the tree with a usable detail."""
    try:
        parsed = PARSERS[call](answer)
    except UpstreamError as exc:
        assert isinstance(exc.detail, str) and len(exc.detail) <= MAX_DETAIL_CHARS + 300
        exc.detail.encode("utf-8")
        assert exc.http_status == answer.http_status or exc.http_status is None
        return
    assert isinstance(parsed, ANSWERS[call])
    if isinstance(parsed, ResultAnswer):
        assert all(is_http_url(url) for url in parsed.output_urls)
        assert all(base64_image(image) == image for image in parsed.output_base64)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(call=calls, code=codes, body=answer_like | json_values)
def test_any_json_answer_is_an_answer_or_an_error_of_the_tree(call, code, body):
    answer = reply(code, body)
    _check(call, answer)
    status = body.get("status") if isinstance(body, dict) else None
    if isinstance(status, str) and status.strip().upper() == "FAILED":
        with pytest.raises(InferenceFailed):
            PARSERS[call](answer)


@settings(max_examples=200)
@given(call=calls, code=codes, raw=st.binary(max_size=200))
def test_any_bytes_are_an_answer_or_an_error_of_the_tree(call, code, raw):
    _check(call, reply(code, raw=raw))


@settings(max_examples=200)
@given(call=calls, body=answer_like, cut=st.integers(0, 10_000))
def test_a_truncated_2xx_body_is_transient(call, body, cut):
    full = json.dumps(body).encode()
    with pytest.raises(TransientError):
        PARSERS[call](reply(200, raw=full[: cut % len(full)]))


KNOWN_URLS = (URL, "http://127.0.0.1:9/o.webp")


@given(
    items=st.lists(
        st.sampled_from(KNOWN_URLS)
        | st.builds(lambda b: base64.b64encode(PNG + b).decode(), st.binary(max_size=30))
        | (st.booleans() | st.integers() | st.text(max_size=30)).filter(
            lambda v: not isinstance(v, str) or "://" not in v
        ),
        max_size=8,
    )
)
def test_every_output_item_is_a_url_an_image_or_counted(items):
    urls = [item for item in items if item in KNOWN_URLS]
    images = [item for item in items if isinstance(item, str) and item.startswith("iVBOR")]
    if not urls and not images:
        assert type(raised("result", reply(200, {"status": "COMPLETED", "output": items}))) is (
            UnusableOutput
        )
        return
    answer = parse_result(reply(200, {"status": "COMPLETED", "output": items}))
    assert answer.output_urls == urls
    total = len(answer.output_urls) + len(answer.output_base64) + answer.unrecognized_outputs
    assert total == len(items)


def test_an_answer_of_thousands_of_outputs_keeps_forty_and_counts_the_rest():
    urls = [f"https://cdn.segmind.com/out/{n}.jpeg" for n in range(3000)]
    answer = parse_result(reply(200, {"status": "COMPLETED", "output": urls}))
    assert answer.output_urls == urls[:40]
    assert answer.unrecognized_outputs == 2960


def test_a_url_over_8_kb_and_metrics_past_the_limits_are_not_kept():
    long_url = "https://cdn.segmind.com/out/" + "a" * 8200 + ".jpeg"
    metrics = {"inference_time": 1.5, "n" * 65: 1.0, **{f"m{n}": n for n in range(100)}}
    answer = parse_result(
        reply(200, {"status": "COMPLETED", "output": [long_url, URL], "metrics": metrics})
    )
    assert answer.output_urls == [URL] and answer.unrecognized_outputs == 1
    assert len(answer.metrics) == 31 and answer.metrics["inference_time"] == 1.5
    assert "n" * 65 not in answer.metrics

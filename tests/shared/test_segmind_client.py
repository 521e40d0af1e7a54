"""The Segmind client over ``httpx.MockTransport``: every row of the protocol's failure table,
every 429 header form, every httpx failure, and where the API key may and may not go."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from shared import segmind_client
from shared.errors import (
    AccountError,
    AnswerLost,
    InferenceFailed,
    JobRejected,
    RateLimited,
    RequestExpired,
    TransientError,
    UpstreamError,
)
from shared.request_model import MODEL_SLUG, GenerationRequest
from shared.segmind_client import CONNECTIONS_PER_THREAD, SegmindClient
from shared.settings import load_settings
from shared.upstream_answers import ResultAnswer, StatusAnswer, SubmitAccepted
from shared.upstream_timing import DELTA_MARGIN_S, WHOLE_SECOND_MARGIN_S

API_KEY = "SG_test_0123456789abcdef"
BASE = "http://127.0.0.1:8931"
OTHER = "https://cdn.other.example"
Handler = Callable[[httpx.Request], httpx.Response]


class Upstream:
    """A MockTransport that answers with ``handler`` and records every request it sees."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.handler: Handler = lambda request: httpx.Response(500)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def answer(self, code: int, body: object = None, **kwargs: object) -> None:
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        self.handler = lambda request: httpx.Response(code, **kwargs)

    def keys_sent(self) -> list[str | None]:
        return [request.headers.get("x-api-key") for request in self.requests]


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def client(upstream: Upstream) -> Iterator[SegmindClient]:
    # follow_redirects=True on purpose: the client must refuse redirects on its own.
    http = httpx.Client(transport=httpx.MockTransport(upstream), follow_redirects=True)
    segmind = SegmindClient(http, BASE + "/", API_KEY)
    yield segmind
    segmind.close()


def call(client: SegmindClient, name: str) -> object:
    if name == "submit":
        return client.submit(GenerationRequest(prompt="a panda").upstream_body())
    return getattr(client, name)("req-1")


def raised(client: SegmindClient, name: str) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        call(client, name)
    return caught.value


# --- requests as Segmind expects them ----------------------------------------------------


def test_submit_posts_json_with_the_key_to_the_model_slug(client, upstream):
    upstream.answer(200, {"request_id": "req-1", "status": "QUEUED"})
    body = GenerationRequest(prompt="a panda", seed=7).upstream_body()
    assert client.submit(body) == SubmitAccepted(request_id="req-1", status="QUEUED")
    (request,) = upstream.requests
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/v2/{MODEL_SLUG}")
    assert request.headers["x-api-key"] == API_KEY
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == body


def test_status_and_result_are_built_from_base_url_not_from_the_answer(client, upstream):
    upstream.answer(
        200,
        {
            "request_id": "req-1",
            "status": "QUEUED",
            "status_url": f"{OTHER}/v2/requests/req-1/status",
            "response_url": f"{OTHER}/v2/requests/req-1",
        },
    )
    client.submit({"prompt": "x"})
    upstream.answer(200, {"status": "COMPLETED", "output": f"{OTHER}/o.jpeg"})
    assert client.status("req-1") == StatusAnswer(status="COMPLETED")
    assert client.result("req-1") == ResultAnswer(output_urls=[f"{OTHER}/o.jpeg"])
    urls = [str(request.url) for request in upstream.requests]
    assert urls[1:] == [f"{BASE}/v2/requests/req-1/status", f"{BASE}/v2/requests/req-1"]
    assert upstream.keys_sent() == [API_KEY] * 3


def test_a_request_id_is_one_path_segment(client, upstream):
    upstream.answer(200, {"status": "QUEUED"})
    client.status("a/../../b?c#d")
    assert upstream.requests[0].url.raw_path == b"/v2/requests/a%2F..%2F..%2Fb%3Fc%23d/status"


@pytest.mark.parametrize("request_id", ["", "..", "has space"])
def test_an_impossible_request_id_is_expired_without_a_call(client, upstream, request_id):
    with pytest.raises(RequestExpired):
        client.status(request_id)
    assert upstream.requests == []


def test_a_base_url_with_a_path_prefix_is_kept(upstream):
    http = httpx.Client(transport=httpx.MockTransport(upstream))
    with http:
        upstream.answer(200, {"status": "PROCESSING"})
        SegmindClient(http, f"{BASE}/segmind/", API_KEY).status("r")
    assert str(upstream.requests[0].url) == f"{BASE}/segmind/v2/requests/r/status"


def test_without_a_key_no_key_header_is_sent(upstream):
    http = httpx.Client(transport=httpx.MockTransport(upstream))
    with http:
        upstream.answer(401, {"error": "Missing Authorization or x-api-key in header"})
        with pytest.raises(AccountError):
            SegmindClient(http, BASE, None).status("r")
    assert "x-api-key" not in upstream.requests[0].headers


def test_a_body_that_is_not_json_is_rejected_before_sending(client, upstream):
    with pytest.raises(JobRejected):
        client.submit({"prompt": "x", "guidance_scale": float("nan")})
    with pytest.raises(JobRejected):
        client.submit({"prompt": object()})
    assert upstream.requests == []


# --- the failure table -------------------------------------------------------------------

HTML_502 = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title><style>body{}</style></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
    + b"<p>padding</p>" * 500
    + b"</body></html>"
)
HTML_503 = b"<html><body><h1>Service  Unavailable</h1>\n<p>try later</p></body></html>"
FAILED_BODY = {
    "request_id": "req-1",
    "status": "FAILED",
    "error": "Content blocked by safety checker: 'nsfw'",
    "metrics": {"inference_time": 0.8},
}


@pytest.mark.parametrize(
    ("name", "code", "body", "kind", "detail"),
    [
        ("submit", 400, {"error": "prompt is required"}, JobRejected, "prompt is required"),
        ("submit", 401, {"error": "Missing Authorization or x-api-key in header"}, AccountError,
         "Missing Authorization or x-api-key in header"),
        ("status", 401, {"error": "Unauthorized. API key is invalid or may have expired..."},
         AccountError, "Unauthorized. API key is invalid or may have expired..."),
        ("submit", 403, {"message": "Your team may not call this model"}, AccountError,
         "Your team may not call this model"),
        ("submit", 402, {"error": "Payment required"}, AccountError, "Payment required"),
        ("submit", 404, {"error": "Model not found"}, JobRejected, "Model not found"),
        ("status", 404, {"error": "Request req-1 not found"}, RequestExpired,
         "Request req-1 not found"),
        ("result", 404, {"error": "Request req-1 not found"}, RequestExpired,
         "Request req-1 not found"),
        ("submit", 405, b"<html><head><title>405 Not Allowed</title></head><body>x</body></html>",
         JobRejected, "405 Not Allowed"),
        ("submit", 406, b"Invalid content type", JobRejected, "Invalid content type"),
        ("submit", 406, b"Insufficient credits. Your balance is 0.01 and this request costs 0.03",
         AccountError, "Insufficient credits. Your balance is 0.01 and this request costs 0.03"),
        ("submit", 406, b"Team spend limit reached for this month", AccountError,
         "Team spend limit reached for this month"),
        ("submit", 406, b"Team budget exceeded", AccountError, "Team budget exceeded"),
        ("submit", 406, {"error": "Not enough funds in wallet"}, AccountError,
         "Not enough funds in wallet"),
        ("submit", 406, {"error": "Value 4096 for width is not allowed"}, JobRejected,
         "Value 4096 for width is not allowed"),
        ("submit", 410, {"error": "This model has been retired"}, JobRejected,
         "This model has been retired"),
        ("status", 422, FAILED_BODY, InferenceFailed, FAILED_BODY["error"]),
        ("result", 422, FAILED_BODY, InferenceFailed, FAILED_BODY["error"]),
        ("submit", 200, FAILED_BODY, InferenceFailed, FAILED_BODY["error"]),
        ("submit", 422, {"detail": [{"loc": ["body", "steps"], "msg": "too big"}]}, JobRejected,
         '[{"loc":["body","steps"],"msg":"too big"}]'),
        ("submit", 429, {"error": "Too many requests"}, RateLimited, "Too many requests"),
        ("submit", 500, {"error": "Internal server error"}, TransientError,
         "Internal server error"),
        ("status", 500, b"oops", TransientError, "oops"),
        ("submit", 502, HTML_502, AnswerLost, "502 Bad Gateway"),
        ("status", 503, HTML_503, TransientError, "Service Unavailable try later"),
        ("result", 504, b"", TransientError, "Gateway Timeout (empty body)"),
        ("status", 408, b"", TransientError, "Request Timeout (empty body)"),
        ("submit", 418, {"error": {"code": 7, "message": "teapot"}}, JobRejected, "teapot"),
        ("submit", 406, {"error": True, "message": "Insufficient credits. Your balance is 0.01"},
         AccountError, "Insufficient credits. Your balance is 0.01"),
        ("status", 200, {"status": "FAILED", "error": True, "message": "NSFW content detected"},
         InferenceFailed, "NSFW content detected"),
        ("submit", 502, b"\xef\xbb\xbf" + HTML_502, AnswerLost, "502 Bad Gateway"),
    ],
)  # fmt: skip
def test_failure_table_row_gives_its_class_and_the_upstream_detail(
    client, upstream, name, code, body, kind, detail
):
    upstream.answer(code, body)
    error = raised(client, name)
    assert type(error) is kind
    assert (error.detail, error.http_status) == (detail, code)


def test_inference_failed_keeps_the_failed_metrics(client, upstream):
    upstream.answer(422, FAILED_BODY)
    assert raised(client, "status").metrics == {"inference_time": 0.8}


@pytest.mark.parametrize("code", [200, 404])
def test_a_completed_body_is_an_answer_whatever_the_code(client, upstream, code):
    upstream.answer(code, {"status": "COMPLETED", "output": [f"{OTHER}/1.png"]})
    assert client.result("req-1").output_urls == [f"{OTHER}/1.png"]


@pytest.mark.parametrize("name", ["submit", "status", "result"])
@pytest.mark.parametrize("body", [b"", b"<html>ok</html>", b'{"request_id": "req-1", "sta'])
def test_a_2xx_that_is_not_json_is_transient(client, upstream, name, body):
    upstream.answer(200, body)
    # a submit's 2xx may have queued the job: its retry is counted (AnswerLost)
    assert type(raised(client, name)) is (AnswerLost if name == "submit" else TransientError)


@pytest.mark.parametrize(("code", "lost"), [(500, False), (502, True), (503, False), (504, True)])
def test_a_submit_answered_by_a_gateway_may_have_been_accepted(client, upstream, code, lost):
    upstream.answer(code, b"<html>Bad Gateway</html>")
    assert type(raised(client, "submit")) is (AnswerLost if lost else TransientError)
    assert type(raised(client, "status")) is TransientError


def _http_date(delta_s: float) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=delta_s), usegmt=True)


def _iso_utc(delta_s: float) -> str:
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=delta_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("headers", "expected_s"),
    [
        (lambda: {"Retry-After": "4"}, 4 + DELTA_MARGIN_S),
        (lambda: {"Retry-After": _http_date(30)}, 30 + WHOLE_SECOND_MARGIN_S),
        (lambda: {"x-rate-limit-reset-at-utc": _iso_utc(20)}, 20 + WHOLE_SECOND_MARGIN_S),
        (lambda: {"X-RateLimit-Reset": str(int(time.time()) + 15)}, 15 + WHOLE_SECOND_MARGIN_S),
        (lambda: {"X-RateLimit-Reset": "9"}, 9 + DELTA_MARGIN_S),
        (lambda: {}, None),
    ],
)
def test_429_names_the_window_of_each_header_form(client, upstream, headers, expected_s):
    upstream.answer(429, {"error": "rate limited"}, headers=headers())
    error = raised(client, "submit")
    assert type(error) is RateLimited
    if expected_s is None:
        assert error.retry_after_s is None
    else:
        assert error.retry_after_s == pytest.approx(expected_s, abs=1.0)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        httpx.PoolTimeout("no connection free"),
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
        httpx.ReadError("connection reset"),
        httpx.DecodingError("bad gzip"),
        httpx.UnsupportedProtocol("no http"),
    ],
)
@pytest.mark.parametrize("name", ["submit", "status", "result"])
def test_every_httpx_failure_is_transient_and_chained(client, upstream, exc, name):
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    upstream.handler = fail
    error = raised(client, name)
    sent = isinstance(exc, (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError))
    assert type(error) is (AnswerLost if sent and name == "submit" else TransientError)
    assert error.__cause__ is exc
    assert type(exc).__name__ in error.detail and error.http_status is None


# --- where the key goes ------------------------------------------------------------------


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_is_transient_and_never_followed(client, upstream, code):
    upstream.answer(code, b"", headers={"Location": f"{OTHER}/v2/requests/req-1/status"})
    error = raised(client, "status")
    assert type(error) is TransientError and error.http_status == code
    assert f"{OTHER}/v2/requests/req-1/status" in error.detail
    assert [request.url.host for request in upstream.requests] == ["127.0.0.1"]


@pytest.mark.parametrize("url", [f"{OTHER}/out/1.jpeg", f"{BASE}/outputs/1.jpeg"])
def test_download_never_sends_the_key(client, upstream, url):
    upstream.answer(200, b"\xff\xd8\xff image bytes")
    assert client.download(url) == b"\xff\xd8\xff image bytes"
    assert upstream.keys_sent() == [None]


def test_download_follows_a_redirect_still_without_the_key(client, upstream):
    def redirect_once(request: httpx.Request) -> httpx.Response:
        if request.url.host == "127.0.0.1":
            return httpx.Response(302, headers={"Location": f"{OTHER}/signed/1.png?sig=abc"})
        return httpx.Response(200, content=b"png")

    upstream.handler = redirect_once
    assert client.download(f"{BASE}/outputs/1.png") == b"png"
    assert [r.url.host for r in upstream.requests] == ["127.0.0.1", "cdn.other.example"]
    assert upstream.keys_sent() == [None, None]


def test_download_ignores_a_key_set_as_a_default_header_of_the_http_client(upstream):
    http = httpx.Client(transport=httpx.MockTransport(upstream), headers={"x-api-key": API_KEY})
    with http:
        upstream.answer(200, b"bytes")
        SegmindClient(http, BASE, API_KEY).download(f"{OTHER}/1.png")
    assert upstream.keys_sent() == [None]


@pytest.mark.parametrize("code", [403, 404, 500])
def test_download_failures_are_transient(client, upstream, code):
    upstream.answer(code, b"<Error>AccessDenied</Error>")
    error = raised_download(client)
    assert (type(error), error.http_status) == (TransientError, code)


def test_download_of_a_connection_error_or_an_invalid_url_is_transient(client, upstream):
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    upstream.handler = fail
    assert type(raised_download(client)) is TransientError
    with pytest.raises(TransientError):
        client.download("http://[::1")


def test_download_larger_than_the_cap_is_refused(client, upstream, monkeypatch):
    monkeypatch.setattr(segmind_client, "MAX_BODY_BYTES", 10)
    upstream.answer(200, b"x" * 11)
    assert "larger than 10 bytes" in raised_download(client).detail


@pytest.mark.parametrize("name", ["submit", "status", "result"])
def test_an_answer_larger_than_the_cap_is_refused_unread(client, upstream, monkeypatch, name):
    monkeypatch.setattr(segmind_client, "MAX_BODY_BYTES", 100)
    upstream.answer(200, {"status": "COMPLETED", "output": "https://x.example/" + "a" * 100})
    error = raised(client, name)
    assert isinstance(error, TransientError) and "answer larger than 100 bytes" in error.detail
    assert type(error) is (AnswerLost if name == "submit" else TransientError)


class Trickle(httpx.SyncByteStream):
    """A body that arrives a few bytes at a time, each within any read timeout."""

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(40):
            time.sleep(0.01)
            yield b" "
        yield b'{"status": "PROCESSING"}'


def test_an_answer_that_trickles_in_ends_the_call_when_its_time_is_up(upstream):
    upstream.handler = lambda request: httpx.Response(200, stream=Trickle())
    http = httpx.Client(transport=httpx.MockTransport(upstream), timeout=0.1)
    client = SegmindClient(http, BASE, API_KEY)
    started = time.monotonic()
    with pytest.raises(TransientError, match="still arriving when the call's time was up"):
        client.status("req-1")
    assert time.monotonic() - started < 0.3
    http.timeout = httpx.Timeout(5.0)
    assert client.status("req-1").status == "PROCESSING"


def test_a_download_that_trickles_in_ends_when_its_time_is_up(upstream):
    # A CDN sending a byte within every read timeout held a worker's thread (with
    # SEGQ_DOWNLOAD_OUTPUTS) and `segq wait --download` for as long as it liked.
    upstream.handler = lambda request: httpx.Response(200, stream=Trickle())
    http = httpx.Client(transport=httpx.MockTransport(upstream), timeout=0.1)
    started = time.monotonic()
    with pytest.raises(TransientError, match="still arriving when the call's time was up"):
        SegmindClient(http, BASE, None).download(f"{OTHER}/1.png")
    assert time.monotonic() - started < 0.3


def test_an_answer_dropped_by_the_cap_or_the_deadline_is_still_counted_by_its_status(
    upstream, monkeypatch
):
    seen: list[tuple[str, int | None]] = []
    http = httpx.Client(transport=httpx.MockTransport(upstream), timeout=0.1)
    client = SegmindClient(http, BASE, API_KEY, on_answer=lambda *answer: seen.append(answer))
    monkeypatch.setattr(segmind_client, "MAX_BODY_BYTES", 10)
    upstream.answer(502, b"x" * 11)
    with pytest.raises(TransientError, match="larger than 10 bytes"):
        client.result("req-1")
    monkeypatch.setattr(segmind_client, "MAX_BODY_BYTES", 100)
    upstream.handler = lambda request: httpx.Response(200, stream=Trickle())
    with pytest.raises(TransientError, match="still arriving"):
        client.status("req-1")
    assert seen == [("result", 502), ("status", 200)]


def raised_download(client: SegmindClient) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        client.download(f"{OTHER}/1.png")
    return caught.value


def test_the_key_never_appears_in_an_error_or_a_repr(client, upstream):
    upstream.answer(401, {"error": f"API key {API_KEY} is invalid"})
    error = raised(client, "submit")
    assert API_KEY not in str(error) and API_KEY not in repr(error)
    assert error.detail == "API key [redacted] is invalid"

    escaped = "".join(f"\\u{ord(char):04x}" for char in API_KEY[:3]) + API_KEY[3:]
    upstream.answer(406, f'{{"detail": "key \\"{escaped}\\" has no credits"}}'.encode())
    error = raised(client, "submit")
    assert API_KEY not in str(error) and error.detail == 'key "[redacted]" has no credits'

    upstream.answer(302, b"", headers={"Location": f"{OTHER}/?key={API_KEY}"})
    assert API_KEY not in raised(client, "status").detail

    def echo(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused while sending {request.headers['x-api-key']}")

    upstream.handler = echo
    error = raised(client, "result")
    assert API_KEY not in str(error) and API_KEY not in repr(client)


def test_the_key_escaped_beside_a_lone_surrogate_is_still_redacted(client, upstream):
    # A lone surrogate cannot be written as UTF-8: the unescaping the key's search needs
    # gave up, and the detail held the key decoded.
    escaped = "".join(f"\\u{ord(char):04x}" for char in API_KEY)
    upstream.answer(401, f'{{"error": "bad key {escaped} \\ud800"}}'.encode())
    assert API_KEY not in raised(client, "submit").detail


def test_a_406_that_quotes_the_prompt_fails_the_job_not_the_account(client, upstream):
    # Given a prompt holding one of the words of an account's 406 ("credit", "budget", ...)
    body = GenerationRequest(prompt="a credit card on a budget planner").upstream_body()
    # When Segmind refuses a parameter and quotes the prompt in its message
    upstream.answer(406, {"error": f"Invalid value for steps (prompt '{body['prompt']}')"})
    with pytest.raises(UpstreamError) as caught:
        client.submit(body)
    # Then only this job fails: an account pause would take the same job as its probe, again
    # and again, and hold the fleet for good
    assert type(caught.value) is JobRejected
    # And a message that speaks of the account beside the prompt still pauses the fleet
    upstream.answer(406, {"error": f"Insufficient credits for '{body['prompt']}'"})
    with pytest.raises(AccountError):
        client.submit(body)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_the_key_echoed_in_a_json_answer_of_another_encoding_is_redacted(
    client, upstream, encoding
):
    # json.loads reads UTF-16/32 bodies, so the detail would hold the key decoded.
    body = json.dumps({"error": f"API key {API_KEY} is invalid"}).encode(encoding)
    upstream.answer(401, body)
    assert raised(client, "submit").detail == "API key [redacted] is invalid"


@pytest.mark.parametrize("name", ["submit", "status", "result"])
def test_a_json_answer_nested_too_deep_with_a_backslash_is_transient(client, upstream, name):
    # The key's search decodes answers holding a backslash: a RecursionError there escaped
    # the client, and the task with it (a submit was then sent again every lease, unbounded).
    upstream.answer(200, b"[" * 100_000 + b'"\\\\"' + b"]" * 100_000)
    assert isinstance(raised(client, name), TransientError)


@pytest.mark.parametrize("key", ['SG_quote"0123456789', "SG_backslash\\0123456789"])
def test_a_key_holding_a_character_json_escapes_is_redacted_from_a_json_answer(upstream, key):
    # Any visible ASCII character is a valid key; JSON writes " and \ escaped.
    http = httpx.Client(transport=httpx.MockTransport(upstream))
    upstream.answer(401, {"error": f"API key {key} is invalid"})
    with pytest.raises(UpstreamError) as caught:
        SegmindClient(http, BASE, key).status("req-1")
    assert caught.value.detail == "API key [redacted] is invalid"


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
def test_the_key_echoed_in_utf16_or_utf32_text_is_redacted(client, upstream, encoding):
    # Shown with its zero bytes, which a terminal hides: `segq status` printed the key.
    upstream.answer(400, f"Bad request for key {API_KEY}".encode(encoding))
    assert API_KEY not in raised(client, "submit").detail.replace("\x00", "")


def test_from_settings_builds_a_pool_per_thread_without_redirects_or_a_default_key():
    settings = load_settings({"SEGMIND_API_KEY": API_KEY}, http_timeout_s=7.5)
    client = SegmindClient.from_settings(settings)
    try:
        http = client._http
        assert http.timeout == httpx.Timeout(7.5)
        assert http.follow_redirects is False
        assert "x-api-key" not in http.headers
        assert http._transport._pool._max_connections == CONNECTIONS_PER_THREAD
        assert client.base_url == "https://api.segmind.com"
        assert API_KEY not in repr(client)
        # each thread calls through its own pool, and keeps it from one call to the next
        assert client._http is http
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(lambda: client._http).result()
        assert other is not http and not other.is_closed
    finally:
        client.close()
    assert http.is_closed and other.is_closed

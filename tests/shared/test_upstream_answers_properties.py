"""Segmind's answers under any input (hypothesis), down to the client: a correct answer or an
error of the ``shared.errors`` tree, never anything else.

``test_upstream_answers.py`` holds the parsers' own properties on whole bodies; these add wrong
types inside otherwise good answers (``output``, ``metrics``), headers of any text (the 429
window), and the same through ``SegmindClient`` over ``httpx.MockTransport``, where the key is
cut out of every answer before it is parsed.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import (
    RateLimited,
    SegqError,
    TransientError,
    UnusableOutput,
    UpstreamError,
)
from shared.segmind_client import SegmindClient
from shared.upstream_answers import (
    MAX_DETAIL_CHARS,
    Reply,
    ResultAnswer,
    StatusAnswer,
    parse_result,
    parse_status,
)
from shared.upstream_timing import (
    DELTA_MARGIN_S,
    MAX_RETRY_AFTER_S,
    WHOLE_SECOND_MARGIN_S,
    retry_after_s,
)

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
API_KEY = "SG_property_key_0123456789"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=30)
    | st.just("https://cdn.example/o.png"),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)
metric_maps = st.dictionaries(st.text(max_size=12), json_values, max_size=6) | json_values
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
codes = st.sampled_from([200, 302, 400, 401, 404, 406, 422, 429, 500, 502]) | st.integers(100, 599)
key_echoes = st.sampled_from(
    [
        {"error": "key KEY is invalid"},
        {"status": "COMPLETED", "output": "https://x.example/KEY.png"},
        {"status": "FAILED", "error": "KEY"},
    ]
)
"""Answers that echo the key (``KEY`` is replaced by it): the client must cut it out."""
header_names = st.sampled_from(["Retry-After", "x-rate-limit-reset-at-utc", "X-RateLimit-Reset"])


def reply(code: int, body: object, **headers: str) -> Reply:
    raw = json.dumps(body).encode()
    return Reply(http_status=code, content=raw, headers=headers, received_at=1_750_000_000.0)


def assert_metrics_are_finite_numbers(metrics: dict[str, float]) -> None:
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert all(name.isprintable() for name in metrics)


@BOUNDED
@given(output=json_values, metrics=metric_maps, cost=json_values)
def test_a_completed_result_with_any_output_and_metrics_is_an_answer(output, metrics, cost):
    """An answer with something to keep, or ``UnusableOutput`` showing the output: never an
    answer that silently keeps nothing."""
    body = {"status": "COMPLETED", "output": output, "metrics": metrics, "cost": cost}
    try:
        answer = parse_result(reply(200, body))
    except UnusableOutput as exc:
        assert_metrics_are_finite_numbers(exc.metrics)
        assert exc.detail.startswith("COMPLETED, but no output is a URL or an image")
        return
    assert isinstance(answer, ResultAnswer)
    assert_metrics_are_finite_numbers(answer.metrics)
    assert answer.output_urls or answer.output_base64
    assert set(answer.output_urls) <= {"https://cdn.example/o.png"}
    assert answer.cost is None or math.isfinite(answer.cost)


@BOUNDED
@given(status=st.sampled_from(["QUEUED", "PROCESSING", " processing "]), metrics=metric_maps)
def test_a_running_status_with_any_metrics_is_an_answer(status, metrics):
    answer = parse_status(reply(200, {"status": status, "metrics": metrics}))
    assert isinstance(answer, StatusAnswer) and answer.status in ("QUEUED", "PROCESSING")
    assert_metrics_are_finite_numbers(answer.metrics)


@BOUNDED
@given(name=header_names, value=header_text, now=st.floats(0, 4e9))
def test_any_429_header_value_gives_a_bounded_window_or_none(name, value, now):
    wait_s = retry_after_s({name: value}, now)
    assert wait_s is None or 0.0 <= wait_s <= MAX_RETRY_AFTER_S


NOW_S = 1_750_000_000.0
moments = st.integers(0, 3600).map(lambda s: datetime.fromtimestamp(NOW_S + s, UTC))
KNOWN_ZONES = {"UT": 0, "UTC": 0, "GMT": 0, "Z": 0, "AST": -4, "ADT": -3, "EST": -5, "EDT": -4,
               "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7}  # fmt: skip
"""The zone names ``email.utils`` knows, and their offsets in hours."""
FALLBACK = {"X-RateLimit-Reset": "7"}
FALLBACK_WAIT_S = 7 + DELTA_MARGIN_S


def http_date(moment: datetime, zone: str, offset_h: int) -> str:
    return (moment + timedelta(hours=offset_h)).strftime("%a, %d %b %Y %H:%M:%S ") + zone


def any_case(draw: st.DrawFn, text: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in text)


@st.composite
def iso_utc_spellings(draw: st.DrawFn, moment: datetime) -> str:
    """``moment`` in ISO 8601 as a header may spell it: T or space, Z or UTC, any case."""
    sep, zone = draw(st.sampled_from([("T", "Z"), ("T", "+00:00"), (" ", " UTC"), ("T", "")]))
    return any_case(draw, moment.replace(tzinfo=None).isoformat(sep) + zone)


@BOUNDED
@given(data=st.data(), moment=moments)
def test_an_iso_reset_time_means_the_same_in_any_letter_case(data, moment):
    value = data.draw(iso_utc_spellings(moment))
    wait_s = retry_after_s({"x-rate-limit-reset-at-utc": value}, NOW_S)
    assert wait_s == moment.timestamp() - NOW_S + WHOLE_SECOND_MARGIN_S


@BOUNDED
@given(moment=moments, zone=st.sampled_from(sorted(KNOWN_ZONES)))
def test_an_http_date_in_a_zone_email_utils_knows_names_the_same_moment(moment, zone):
    value = http_date(moment, zone, KNOWN_ZONES[zone])
    for name in ("Retry-After", "x-rate-limit-reset-at-utc"):
        wait_s = retry_after_s({name: value, **FALLBACK}, NOW_S)
        assert wait_s == moment.timestamp() - NOW_S + WHOLE_SECOND_MARGIN_S


@BOUNDED
@given(
    moment=moments,
    zone=st.text(st.characters(min_codepoint=65, max_codepoint=90), min_size=1, max_size=5).filter(
        lambda z: z not in KNOWN_ZONES
    )
    | st.sampled_from(["CET", "JST", "IST", "BST", "UTC+1", "GMT+9"]),
    offset_h=st.integers(-12, 14),
)
def test_an_http_date_in_a_zone_email_utils_does_not_know_is_unusable(moment, zone, offset_h):
    """Read as UTC it would be hours off: the next header (or the default hold) decides."""
    value = http_date(moment, zone, offset_h)
    for name in ("Retry-After", "x-rate-limit-reset-at-utc"):
        assert retry_after_s({name: value, **FALLBACK}, NOW_S) == FALLBACK_WAIT_S
    server_date = {"Date": value, "Retry-After": http_date(moment, "GMT", 0)}
    assert retry_after_s(server_date, NOW_S) == moment.timestamp() - NOW_S + WHOLE_SECOND_MARGIN_S


@BOUNDED
@given(
    code=st.sampled_from([200, 302, 400, 401, 404, 406, 422, 429, 500, 502])
    | st.integers(100, 599),
    body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
    headers=st.dictionaries(header_names | header_text.filter(str.strip), header_text, max_size=3),
    call=st.sampled_from(["submit", "status", "result"]),
)
def test_through_the_client_any_answer_is_an_answer_or_an_error_of_the_tree(
    code, body, headers, call
):
    def upstream(request: httpx.Request) -> httpx.Response:
        return httpx.Response(code, content=body.replace(b"KEY", API_KEY.encode()), headers=headers)

    http = httpx.Client(transport=httpx.MockTransport(upstream))
    client = SegmindClient(http, "http://127.0.0.1:9", API_KEY)
    try:
        answer = _call(client, call)
    except SegqError as exc:
        assert isinstance(exc, UpstreamError)
        assert API_KEY not in str(exc) and len(exc.detail) <= MAX_DETAIL_CHARS + 300
        if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
            assert 0.0 <= exc.retry_after_s <= MAX_RETRY_AFTER_S
        return
    finally:
        client.close()
    assert API_KEY not in answer.model_dump_json()


def _call(client: SegmindClient, call: str):
    if call == "submit":
        return client.submit({"prompt": "p"})
    return getattr(client, call)("r-1")


@BOUNDED
@given(body=json_values, cut=st.integers(1, 10_000), code=st.sampled_from([200, 201, 422, 500]))
def test_a_truncated_answer_is_an_error_of_the_tree(body, cut, code):
    raw = json.dumps({"status": "COMPLETED", "output": body}).encode()
    truncated = Reply(http_status=code, content=raw[: cut % len(raw)], received_at=0.0)
    try:
        parse_result(truncated)
    except UpstreamError as exc:
        if 200 <= code < 300:
            assert isinstance(exc, TransientError)
        return
    raise AssertionError("a truncated body was read as an answer")

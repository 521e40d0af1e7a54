"""Segmind's v2 answers read into small frozen models, or into the ``shared.errors`` tree.

Pure functions of one HTTP answer (``Reply``): no I/O, so every row of the protocol's failure
table, and any body at all, is tested without a network. Each ``parse_*`` either returns its
answer or raises a ``shared.errors.UpstreamError``; nothing else escapes, whatever the body.

The order of reading an answer, for every call:

1. A JSON body whose ``status`` is ``FAILED`` is ``InferenceFailed``, whatever the HTTP code
   (422 on v2), with the ``error`` field verbatim as its detail.
2. A JSON body whose ``status`` is ``COMPLETED`` is an answer, whatever the code (the SDK's rule).
3. Any other 2xx needs a JSON object: anything else (not JSON, truncated) is ``TransientError``.
4. Any other code is classified by ``classify_failure``.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, TypeGuard, cast
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import (
    AccountError,
    InferenceFailed,
    JobRejected,
    RateLimited,
    RequestExpired,
    TransientError,
    UnusableOutput,
    UpstreamError,
)
from shared.upstream_timing import retry_after_s

Call = Literal["submit", "status", "result"]
Status = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]

MAX_DETAIL_CHARS = 2000
"""A detail longer than this is cut (it is stored on the job record in Redis)."""

MAX_HTML_DETAIL_CHARS = 200
"""An HTML error page is reduced to its title or first words, not kept whole."""

MAX_REQUEST_ID_CHARS = 256

MAX_OUTPUT_DEPTH = 3
"""How deep ``split_output`` looks into lists and objects for output strings."""

MAX_OUTPUTS_KEPT = 40
"""A job asks for 10 images at most: outputs past this many are counted, not kept, so that a
hostile or broken answer (a helper's held 3,000 URLs) cannot put megabytes in a job record."""

MAX_URL_CHARS = 8192
"""A signed CDN URL is a few hundred characters; a longer string is not kept as one."""

MAX_METRICS = 32
MAX_METRIC_NAME_CHARS = 64
"""Metrics past these (Segmind sends three or four, with short names) are not kept."""

_ACCOUNT_406 = re.compile(
    r"credit|balance|spend(?:ing)?[\s_-]*limit|funds|budget|wallet|billing|quota",
    re.IGNORECASE,
)
"""A 406 whose message matches is about the account (pause the fleet), not about the job."""

_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a")
"""JPEG, PNG and GIF; WebP (``RIFF....WEBP``) is checked apart."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer as the parsers need it; ``received_at`` is epoch seconds (429 windows)."""

    http_status: int
    content: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    received_at: float = 0.0


class SubmitAccepted(BaseModel):
    """Segmind queued the job: poll ``request_id`` from now on, never submit it again."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    status: str = "QUEUED"


class StatusAnswer(BaseModel):
    """Where a request stands. The client raises ``InferenceFailed`` for FAILED, so callers
    only see QUEUED, PROCESSING and COMPLETED."""

    model_config = ConfigDict(frozen=True)

    status: Status
    metrics: dict[str, float] = {}


class ResultAnswer(BaseModel):
    """A COMPLETED request's outputs, told apart: media URLs, and base64 images (standard
    alphabet, padded, no ``data:`` prefix: ``base64.b64decode`` reads them as they are).

    ``unrecognized_outputs`` counts output items not kept (neither, or past ``split_output``'s
    limits) beside at least one that was (with none, the answer is ``UnusableOutput``).
    """

    model_config = ConfigDict(frozen=True)

    status: Literal["COMPLETED"] = "COMPLETED"
    output_urls: list[str] = []
    output_base64: list[str] = Field(default=[], repr=False)
    unrecognized_outputs: int = 0
    metrics: dict[str, float] = {}
    cost: float | None = None
    remaining_credits: float | None = None


def parse_submit(reply: Reply, request_texts: Iterable[str] = ()) -> SubmitAccepted:
    """The answer to ``POST /v2/{slug}``: the request id Segmind will know the job by.
    ``request_texts``: the submitted body's strings, which a refusal may quote."""
    body = answer_body(reply, "submit", request_texts)
    request_id = body.get("request_id")
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        request_id = str(request_id)
    if not is_request_id(request_id):
        detail = f"submit answer without a usable request_id: {_compact_json(body)}"
        raise TransientError(_cut(detail, MAX_DETAIL_CHARS), reply.http_status)
    return SubmitAccepted(request_id=request_id, status=_status_of(body) or "QUEUED")


def parse_status(reply: Reply) -> StatusAnswer:
    """The answer to ``GET /v2/requests/{id}/status``; an unknown status is transient."""
    body = answer_body(reply, "status")
    status = _status_of(body)
    if status not in ("QUEUED", "PROCESSING", "COMPLETED"):
        raise TransientError(f"unexpected status {_shown(body)}", reply.http_status)
    return StatusAnswer(status=cast(Status, status), metrics=read_metrics(body.get("metrics")))


def parse_result(reply: Reply) -> ResultAnswer:
    """The answer to ``GET /v2/requests/{id}``; a result not COMPLETED yet is transient, one
    with nothing to keep is ``UnusableOutput``."""
    body = answer_body(reply, "result")
    if _status_of(body) != "COMPLETED":
        raise TransientError(f"result not ready: status {_shown(body)}", reply.http_status)
    metrics = read_metrics(body.get("metrics"))
    urls, images, unrecognized = split_output(body.get("output"))
    if not urls and not images:
        shown = _compact_json(body.get("output"))
        detail = f"COMPLETED, but no output is a URL or an image segq can keep: output={shown}"
        raise UnusableOutput(_cut(detail, MAX_DETAIL_CHARS), reply.http_status, metrics)
    return ResultAnswer(
        output_urls=urls,
        output_base64=images,
        unrecognized_outputs=unrecognized,
        metrics=metrics,
        cost=_finite(body.get("cost")),
        remaining_credits=_finite(body.get("remaining_credits")),
    )


def answer_body(reply: Reply, call: Call, request_texts: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON object of an answer that is one (steps 1-3 of the module docstring)."""
    body = json_object(reply.content)
    status = _status_of(body) if body is not None else None
    if body is not None and status == "FAILED":
        raise InferenceFailed(
            failed_detail(reply, body), reply.http_status, read_metrics(body.get("metrics"))
        )
    if body is not None and (status == "COMPLETED" or 200 <= reply.http_status < 300):
        return body
    if 200 <= reply.http_status < 300:
        detail = f"answer is not a JSON object: {upstream_detail(reply, None)}"
        raise TransientError(detail, reply.http_status)
    raise classify_failure(reply, call, body, request_texts)


def classify_failure(
    reply: Reply, call: Call, body: dict[str, Any] | None, request_texts: Iterable[str] = ()
) -> UpstreamError:
    """The error class for a non-2xx answer that is neither COMPLETED nor FAILED.

    A 3xx is ``TransientError``: redirects are never followed (the key must not travel), and a
    redirect is a proxy or a moved endpoint, which retrying with backoff outlasts or, if it
    persists, ends the job as ``retries_exhausted`` (``segq retry`` brings it back once fixed).
    """
    code = reply.http_status
    detail = upstream_detail(reply, body)
    if code == 429:
        return RateLimited(detail, code, retry_after_s(reply.headers, reply.received_at))
    if 300 <= code < 400:
        return TransientError(_redirect_detail(reply, detail), code)
    if not 400 <= code < 500 or code == 408:
        return TransientError(detail, code)
    if code in (401, 402, 403) or (code == 406 and _names_the_account(detail, request_texts)):
        return AccountError(detail, code)
    if code == 404 and call != "submit":
        return RequestExpired(detail, code)
    return JobRejected(detail, code)


def _names_the_account(detail: str, request_texts: Iterable[str] = ()) -> bool:
    """Whether a 406's message speaks of the account (credits, a spend limit), leaving out
    the request's own texts it may quote: a parameter refused with the prompt "a budget
    planner" in its message is that job's problem, not a reason to pause the fleet."""
    for text in request_texts:
        if text:
            detail = detail.replace(text, " ")
    return _ACCOUNT_406.search(detail) is not None


def upstream_detail(reply: Reply, body: dict[str, Any] | None) -> str:
    """The upstream's own message: a JSON ``error``/``message``/``detail`` field, else the
    text (an HTML page reduced to its title), else the status's reason phrase."""
    if body is not None:
        message = _message_field(body)
        return _cut(message if message is not None else _compact_json(body), MAX_DETAIL_CHARS)
    text = _text(reply.content).strip()
    if _looks_like_html(text):
        return _html_summary(text) or _reason(reply.http_status, "an HTML page")
    return _cut(text, MAX_DETAIL_CHARS) if text else _reason(reply.http_status, "empty body")


def failed_detail(reply: Reply, body: dict[str, Any]) -> str:
    """A FAILED body's ``error``, verbatim; without one, whatever message it carries."""
    error = body.get("error")
    if isinstance(error, str) and error.strip():
        return _cut(error, MAX_DETAIL_CHARS)
    return upstream_detail(reply, body)


def json_object(content: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (not JSON, truncated, a list)."""
    try:
        value = json.loads(content.removeprefix(b"\xef\xbb\xbf"))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def read_metrics(value: object) -> dict[str, float]:
    """Numeric metrics (``inference_time``, ``queue_time``, ...); wrong types are dropped."""
    if not isinstance(value, dict):
        return {}
    numbers = {
        name: _finite(number)
        for name, number in itertools.islice(value.items(), MAX_METRICS)
        if isinstance(name, str) and name.isprintable() and len(name) <= MAX_METRIC_NAME_CHARS
    }
    return {name: number for name, number in numbers.items() if number is not None}


def split_output(value: object) -> tuple[list[str], list[str], int]:
    """``output`` as (URLs, base64 images, items not kept).

    The protocol knows a string or a list of them; other models of the same API answer with
    objects too (``{"image": URL}``), so the strings inside lists and objects are read as
    well, ``MAX_OUTPUT_DEPTH`` deep. A URL with spaces in its path is taken with them
    percent-encoded, as a browser would. Items past ``MAX_OUTPUTS_KEPT``, and URLs longer than
    ``MAX_URL_CHARS``, are counted among those not kept."""
    urls: list[str] = []
    images: list[str] = []
    unrecognized = 0
    for item in _output_items(value, MAX_OUTPUT_DEPTH):
        text = item.strip() if isinstance(item, str) else ""
        if len(urls) + len(images) >= MAX_OUTPUTS_KEPT:
            unrecognized += 1
        elif len(text) <= MAX_URL_CHARS and is_http_url(url := _spaces_encoded(text)):
            urls.append(url)
        elif text and (image := base64_image(text)) is not None:
            images.append(image)
        else:
            unrecognized += 1
    return urls, images, unrecognized


def _output_items(value: object, depth: int) -> list[object]:
    if value is None:
        return []
    if depth > 0 and isinstance(value, list | dict):
        inner = value.values() if isinstance(value, dict) else value
        return [item for part in inner for item in _output_items(part, depth - 1)]
    return [value]


def _spaces_encoded(text: str) -> str:
    if " " not in text or not text.lower().startswith(("http://", "https://")):
        return text
    return quote(text, safe=":/?#[]@!$&'()*+,;=%~")


def is_http_url(text: str) -> bool:
    """An absolute http(s) URL with a host and no whitespace."""
    if not text.isprintable() or any(char.isspace() for char in text):
        return False
    try:
        parts = urlsplit(text)
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def base64_image(text: str) -> str | None:
    """Normalised base64 of an image, from a ``data:...;base64,`` URI or raw base64 (standard
    or URL-safe alphabet, padding optional); None if the text is neither.

    The bytes must start like an image (JPEG, PNG, WebP, GIF): short words such as ``None``
    are valid base64 too, and a ``data:`` URI may declare anything (an HTML page, say); neither
    must become an image file.
    """
    text = text.strip()
    declared = text[:5].lower() == "data:"
    if declared:
        header, comma, text = text.partition(",")
        if not comma or not header.lower().endswith(";base64"):
            return None
    raw = _decode_base64(text)
    if raw is None or not is_image(raw):
        return None
    return base64.b64encode(raw).decode("ascii")


def is_request_id(value: object) -> TypeGuard[str]:
    """A request id that can be put in a URL path as it is: printable, no spaces, not a dot path."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_REQUEST_ID_CHARS
        and value.isprintable()
        and not any(char.isspace() for char in value)
        and value not in (".", "..")
    )


def _decode_base64(text: str) -> bytes | None:
    compact = "".join(text.split()).rstrip("=").replace("-", "+").replace("_", "/")
    if not compact:
        return None
    try:
        raw = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw or None


def is_image(raw: bytes) -> bool:
    """Bytes that start like a JPEG, PNG, GIF or WebP file."""
    return raw.startswith(_IMAGE_SIGNATURES) or (raw[:4] == b"RIFF" and raw[8:12] == b"WEBP")


def _shown(body: dict[str, Any]) -> str:
    return _cut(repr(body.get("status")), MAX_HTML_DETAIL_CHARS)


def _status_of(body: dict[str, Any]) -> str | None:
    status = body.get("status")
    return status.strip().upper() if isinstance(status, str) else None


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _message_field(body: dict[str, Any]) -> str | None:
    """The first text among ``error``, ``message`` and ``detail`` (an object's own looked
    into); failing that, the first other value there, as JSON. Text first: in ``{"error":
    true, "message": "Insufficient credits..."}`` the message is what says the account is out
    of credits (``true`` said nothing, and the job failed instead of the fleet pausing)."""
    fallback = None
    for name in ("error", "message", "detail"):
        value = body.get(name)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, dict) and (inner := _message_field(value)) is not None:
            return inner
        if fallback is None and not isinstance(value, str) and value not in (None, [], {}):
            fallback = _compact_json(value)
    return fallback


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _text(content: bytes) -> str:
    return content.removeprefix(codecs.BOM_UTF8).decode("utf-8", errors="replace")


def _looks_like_html(text: str) -> bool:
    head = text[:512].lower()
    return head.startswith("<") and ("<html" in head or "<!doctype" in head or "<body" in head)


def _html_summary(page: str) -> str:
    title = re.search(r"<title[^>]*>(.*?)</title>", page, re.IGNORECASE | re.DOTALL)
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.IGNORECASE | re.DOTALL)
    text = title.group(1) if title else re.sub(r"<[^>]*>", " ", body)
    return _cut(" ".join(text.split()), MAX_HTML_DETAIL_CHARS)


def _redirect_detail(reply: Reply, detail: str) -> str:
    location = {name.lower(): value for name, value in reply.headers.items()}.get("location")
    target = _cut(location, MAX_HTML_DETAIL_CHARS) if location else "(no Location)"
    return f"redirect to {target} not followed: {detail}"


def _reason(http_status: int, what: str) -> str:
    try:
        phrase = HTTPStatus(http_status).phrase
    except ValueError:
        phrase = f"HTTP {http_status}"
    return f"{phrase} ({what})"


def _cut(text: str, limit: int) -> str:
    """At most ``limit`` characters, lone surrogates (JSON can carry them) replaced, so the
    text can always be written as UTF-8 to Redis and logs."""
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.encode("utf-8", errors="replace").decode("utf-8")

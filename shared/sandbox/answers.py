"""HTTP answers in the shapes the protocol file gives, quirks included.

JSON for most errors (``{"error": ...}``), plain text for 406, HTML pages for 405 and for
gateway errors (502/503/504), and the 429 headers. Handlers build every answer through here so a
shape is written once.
"""

from __future__ import annotations

import json
import math
from http import HTTPStatus
from typing import Any

from aiohttp import web

from shared.sandbox.rate_limit import reset_header

RESET_HEADER = "x-rate-limit-reset-at-utc"


def json_answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json"
    )


def error_answer(status: int, message: str) -> web.Response:
    """``{"error": message}``: 400, 401, 403, 404, 410, 500."""
    return json_answer(status, {"error": message})


NOT_JSON = object()
"""What ``json_body`` gives for a body that is not JSON."""


async def json_body(request: web.Request) -> Any:
    """The request's JSON, or ``NOT_JSON``. aiohttp's ``request.json()`` raises more than
    ValueError: LookupError for an unknown charset, RecursionError for deep nesting; each
    was a 500 and a traceback, where Segmind answers 400."""
    try:
        return await request.json()
    except (ValueError, LookupError, RecursionError):
        return NOT_JSON


def plain_text_answer(status: int, text: str) -> web.Response:
    """406 comes back as plain text, not JSON (content type, credits, spend limit)."""
    return web.Response(status=status, text=text, content_type="text/plain")


def html_page(status: int) -> web.Response:
    """The HTML a gateway or web server answers with (405, 502, 503, 504): not JSON."""
    title = f"{status} {HTTPStatus(status).phrase}"
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return web.Response(status=status, text=page, content_type="text/html")


def rate_limited_answer(reset_at: float, now: float, retry_after: bool) -> web.Response:
    """429 with the reset time (to the second) and, when configured, ``Retry-After``."""
    reset = reset_header(reset_at)
    answer = error_answer(429, f"Rate limit exceeded. Try again after {reset}.")
    answer.headers[RESET_HEADER] = reset
    if retry_after:
        answer.headers["Retry-After"] = str(max(1, math.ceil(reset_at - now)))
    return answer


def not_found_answer(request_id: str) -> web.Response:
    return error_answer(404, f"Request {request_id} not found")

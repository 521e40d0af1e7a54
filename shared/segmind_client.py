"""The Segmind v2 HTTP client: submit, status, result and download, nothing else.

It owns the boundary with the upstream: every httpx exception and every HTTP answer becomes
either an answer model (``shared.upstream_answers``) or a ``shared.errors`` class, raised with
``raise ... from exc``. It does not retry, sleep or rate-limit: the tasks decide that, by class.

The API key travels only as ``x-api-key`` on the requests this client builds itself, whose URLs
are ``base_url`` plus a fixed path (``status_url``/``response_url`` in answers are ignored), and
redirects of those requests are never followed. ``download`` never sends it. The key is cut out
of every answer before it is parsed and of every error message, and ``repr`` does not show it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from shared.errors import AnswerLost, JobRejected, RequestExpired, TransientError
from shared.http_deadline import call_deadline, deadline_client
from shared.request_model import MODEL_SLUG
from shared.settings import Settings
from shared.upstream_answers import (
    Call,
    Reply,
    ResultAnswer,
    StatusAnswer,
    SubmitAccepted,
    is_request_id,
    parse_result,
    parse_status,
    parse_submit,
)

USER_AGENT = "segq/0.1 (+httpx)"
REDACTED = "[redacted]"
MIN_REDACTED_KEY_CHARS = 8
"""Keys shorter than this are not searched for in answers (a one-letter key would mangle every
URL); real Segmind keys are far longer."""

MAX_BODY_BYTES = 128 * 1024 * 1024
"""An output, or an answer of the API, larger than this is refused instead of filling a
worker's memory (ten base64 images of 2048x2048 fit)."""

_HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)

AnswerObserver = Callable[[Call, int | None], None]
"""Told of every call's outcome: its kind and the HTTP status, or None when nothing answered
(the workers count them for ``segq metrics``). It must not raise."""


DEFAULT_CALL_TIMEOUT_S = 30.0
"""A whole call's budget when the ``httpx.Client`` given has no read timeout."""

CONNECTIONS_PER_THREAD = 2
"""The API's origin, and one output host for ``download``."""


class ThreadClients:
    """One ``httpx.Client`` per calling thread, each made on that thread's first call.

    Why not one pool for the process: httpcore's pool takes one lock per request and per
    response close, and scans every connection and waiting request under it; with 32 task
    threads that lock was a third of a worker's CPU per HTTP call (bench_pipeline, py-spy).
    A thread makes one call at a time, so its own small pool never waits. One SSL context is
    shared (loading the CA bundle once, not per thread)."""

    def __init__(self, make: Callable[[], httpx.Client]) -> None:
        self._make = make
        self._local = threading.local()
        self._made: list[httpx.Client] = []
        self._lock = threading.Lock()

    def current(self) -> httpx.Client:
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = self._make()
            with self._lock:
                self._made.append(http)
        return http

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for http in made:
            http.close()


class SegmindClient:
    """One per process, thread-safe: ``http`` is one ``httpx.Client`` shared by all threads (as
    tests pass one), or ``ThreadClients`` (``from_settings``: one per thread)."""

    def __init__(
        self,
        http: httpx.Client | ThreadClients,
        base_url: str,
        api_key: str | None,
        model_slug: str = MODEL_SLUG,
        on_answer: AnswerObserver | None = None,
    ) -> None:
        self._current_http = http.current if isinstance(http, ThreadClients) else lambda: http
        self._close_http = http.close
        self._on_answer = on_answer
        self.base_url = base_url.rstrip("/")
        self.model_slug = model_slug
        self._key_headers = {"x-api-key": api_key} if api_key else {}
        self._secret = api_key if api_key and len(api_key) >= MIN_REDACTED_KEY_CHARS else None
        self._secret_forms = _encoded_forms(self._secret) if self._secret else []

    @classmethod
    def from_settings(
        cls, settings: Settings, *, on_answer: AnswerObserver | None = None
    ) -> SegmindClient:
        """A client with a connection pool per calling thread (``ThreadClients``): make it
        after any fork, one per process. Connections are kept alive 30 s between calls."""
        ssl_context = httpx.create_ssl_context()

        def make() -> httpx.Client:
            limits = httpx.Limits(
                max_connections=CONNECTIONS_PER_THREAD,
                max_keepalive_connections=CONNECTIONS_PER_THREAD,
                keepalive_expiry=30.0,
            )
            return deadline_client(
                limits=limits,
                verify=ssl_context,
                timeout=httpx.Timeout(settings.http_timeout_s),
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT},
            )

        key = settings.segmind_api_key.get_secret_value() if settings.segmind_api_key else None
        return cls(ThreadClients(make), settings.segmind_base_url, key, on_answer=on_answer)

    @property
    def _http(self) -> httpx.Client:
        """The calling thread's ``httpx.Client``."""
        return self._current_http()

    def __repr__(self) -> str:
        return f"SegmindClient(base_url={self.base_url!r}, model_slug={self.model_slug!r})"

    def submit(self, body: dict[str, Any]) -> SubmitAccepted:
        """``POST /v2/{slug}``: queues the job upstream (paid once it runs; never repeat it
        after an answer with a request id)."""
        try:
            content = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise JobRejected(f"request body is not JSON: {exc}") from exc
        path = "/v2/" + quote(self.model_slug, safe="")
        headers = {"Content-Type": "application/json"}
        texts = [value for value in body.values() if isinstance(value, str)]
        try:
            reply = self._call("submit", path, content=content, headers=headers)
            return parse_submit(reply, request_texts=texts)
        except TransientError as exc:
            if _may_have_been_accepted(exc):
                raise AnswerLost(exc.detail, exc.http_status) from exc.__cause__ or exc
            raise

    def status(self, request_id: str) -> StatusAnswer:
        """``GET /v2/requests/{id}/status``; FAILED raises ``InferenceFailed``."""
        return parse_status(self._call("status", self._request_path(request_id) + "/status"))

    def result(self, request_id: str) -> ResultAnswer:
        """``GET /v2/requests/{id}``: outputs of a COMPLETED request; FAILED raises."""
        return parse_result(self._call("result", self._request_path(request_id)))

    def download(self, url: str) -> bytes:
        """The bytes of an output URL, fetched without the API key (it may be on any host).

        Redirects are followed: the request carries no key, so none can travel. Every failure
        (no answer, an answer other than 2xx, too large, still arriving when the call's time
        is up) is ``TransientError``: a missing file is no verdict on a job that already
        completed, and the caller keeps the URL.
        """
        http = self._http
        try:
            request = http.build_request("GET", url)
            request.headers.pop("x-api-key", None)
            with call_deadline(self._timeout_s(http)) as deadline:
                response = http.send(request, stream=True, follow_redirects=True)
                try:
                    if not response.is_success:
                        detail = f"download answered {response.status_code}"
                        raise TransientError(detail, response.status_code)
                    return self._read_capped(response, deadline)
                finally:
                    response.close()
        except _HTTPX_ERRORS as exc:
            raise TransientError(self._redact(f"download failed: {_describe(exc)}")) from exc

    def close(self) -> None:
        self._close_http()

    def _request_path(self, request_id: str) -> str:
        if not is_request_id(request_id):
            raise RequestExpired(f"{request_id!r} is not a request id Segmind could have issued")
        return "/v2/requests/" + quote(request_id, safe="")

    def _call(
        self,
        call: Call,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One request to ``base_url + path`` with the key; no redirect is followed."""
        http = self._http
        request = http.build_request(
            "POST" if call == "submit" else "GET",
            self.base_url + path,
            content=content,
            headers={**self._key_headers, **(headers or {})},
        )
        with call_deadline(self._timeout_s(http)) as deadline:
            try:
                response = http.send(request, stream=True, follow_redirects=False)
            except _HTTPX_ERRORS as exc:
                self._observe(call, None)
                raise self._transient(exc) from exc
            # Counted once its status line is in, also when its body then fails to arrive
            # whole: a 200 that trickles past the deadline is still an answer to count.
            self._observe(call, response.status_code)
            try:
                content = self._read_capped(response, deadline)
            except _HTTPX_ERRORS as exc:
                raise self._transient(exc, response.status_code) from exc
            finally:
                response.close()
        return Reply(
            http_status=response.status_code,
            content=self._redact_bytes(content),
            headers={name: self._redact(value) for name, value in response.headers.items()},
            received_at=time.time(),
        )

    @staticmethod
    def _timeout_s(http: httpx.Client) -> float:
        """The whole call's budget: httpx's timeouts bound each read, so an answer that
        trickles in a byte at a time would otherwise hold a task (and a submit's lease) for
        as long as the server likes. ``from_settings``'s transport keeps every network step
        to it, the status line's included (``shared.http_deadline``); the body is checked
        between chunks on any transport (a test's ``MockTransport`` too)."""
        return http.timeout.read or DEFAULT_CALL_TIMEOUT_S

    def _observe(self, call: Call, http_status: int | None) -> None:
        if self._on_answer is not None:
            self._on_answer(call, http_status)

    def _read_capped(self, response: httpx.Response, deadline: float) -> bytes:
        """The body, up to ``MAX_BODY_BYTES``, read before ``deadline`` (monotonic)."""
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise TransientError(
                    f"answer larger than {MAX_BODY_BYTES} bytes, not read", response.status_code
                )
            if time.monotonic() > deadline:
                raise TransientError(
                    "answer still arriving when the call's time was up", response.status_code
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _transient(self, exc: Exception, http_status: int | None = None) -> TransientError:
        return TransientError(self._redact(_describe(exc)), http_status)

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, REDACTED) if self._secret else text

    def _redact_bytes(self, content: bytes) -> bytes:
        if not self._secret:
            return content
        if b"\\" in content or b"\x00" in content:
            content = _unescaped_json(content)
        for form in self._secret_forms:
            content = content.replace(form, REDACTED.encode())
        return content


def _encoded_forms(secret: str) -> list[bytes]:
    """The key as an answer may hold it: as is, JSON-escaped (a key with ``"`` or ``\\``), and
    in UTF-16 or UTF-32 text that is not JSON (``_text`` shows its zero bytes, which a
    terminal hides)."""
    escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
    return [
        secret.encode(),
        escaped.encode(),
        secret.encode("utf-16-le"),
        secret.encode("utf-16-be"),
        secret.encode("utf-32-le"),
        secret.encode("utf-32-be"),
    ]


def _unescaped_json(content: bytes) -> bytes:
    """A JSON answer encoded again as UTF-8 with only the escapes JSON requires, so that a key
    it echoes escaped (``"\\u0053G_..."``, ``\\/``) or in UTF-16/32 (which ``json.loads``
    reads, and whose ASCII characters hold a zero byte) is found by the replace: its details
    are read decoded. Only answers holding a backslash or a zero byte pay for this; other
    bodies are returned as is."""
    try:  # a lone surrogate (JSON may escape one) stays escaped, the rest is unescaped
        return json.dumps(json.loads(content), ensure_ascii=False).encode(
            "utf-8", errors="backslashreplace"
        )
    except (ValueError, RecursionError):  # nested too deep: json_object refuses it as well
        return content


_ANSWER_LOST = (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError)
"""Failures after the request went out: Segmind may have acted on it."""
GATEWAY_STATUSES = (502, 504)
"""A gateway's answer for an origin that did not answer it in time, or at all."""


def _may_have_been_accepted(exc: TransientError) -> bool:
    """A transient submit failure after which Segmind may hold (and bill) the job: the answer
    was lost on the way back, cut off, a gateway's, or a 2xx without a usable request id."""
    status = exc.http_status
    if status is None:
        return isinstance(exc.__cause__, _ANSWER_LOST)
    return status in GATEWAY_STATUSES or 200 <= status < 300


def _describe(exc: Exception) -> str:
    """``ConnectError: [Errno 111] Connection refused``: the class says what kind of failure."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__

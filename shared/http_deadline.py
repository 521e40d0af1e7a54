"""A whole-call deadline under httpx, whose timeouts bound each network step on its own.

httpx times out a connect, a write or a read that waits too long, but not a call: a server
that sends its status line a byte every few seconds, each within the read timeout, holds the
call for as long as it likes (a helper's webhook target held a draining worker 178 s). A
client from ``deadline_client()`` clamps every step's timeout to what is left of the call's
budget, which the caller sets around the call with ``call_deadline``; outside one, the
transport is httpx's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

_deadline = threading.local()
"""``at``: when the calling thread's call must be done (``time.monotonic()``), or None."""


@contextmanager
def call_deadline(seconds: float) -> Iterator[float]:
    """Every network step this thread takes inside must end within ``seconds`` from now;
    gives that moment (``time.monotonic()``), for checks of the caller's own."""
    outer = getattr(_deadline, "at", None)
    _deadline.at = at = time.monotonic() + seconds
    try:
        yield at
    finally:
        _deadline.at = outer


def deadline_client(**options: Any) -> httpx.Client:
    """``httpx.Client(**options)`` whose network steps keep to ``call_deadline``, through a
    proxy too. The client makes its transports itself: one given as ``transport`` would make
    it ignore ``HTTPS_PROXY`` and the like, and a host whose only way out is a proxy would
    reach nothing."""
    client = httpx.Client(**options)
    for transport in [client._transport, *client._mounts.values()]:
        if isinstance(transport, httpx.HTTPTransport):
            pool = transport._pool  # httpx 0.28 takes no network backend; the pool it makes does
            pool._network_backend = _DeadlineBackend(pool._network_backend)
    return client


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    at = getattr(_deadline, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the call's time was up")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)

"""A whole-call deadline over real sockets: a server that trickles its status line within
every read timeout is given up on when the call's time is up, and only then; the Segmind
client and the webhook client both keep to it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from producer.output_download import keyless_fetch
from shared.errors import AnswerLost, TransientError
from shared.http_deadline import call_deadline, deadline_client
from shared.request_model import GenerationRequest
from shared.segmind_client import SegmindClient
from shared.settings import load_settings

ANSWER = b"HTTP/1.1 200 " + b"O" * 120 + b"K\r\nContent-Length: 2\r\n\r\nok"
"""Its long reason phrase makes the trickle last about 3 s: a call held by it for good (no
deadline) takes ten times a 0.3 s budget, far past what a loaded machine adds to one."""


@pytest.fixture
def trickling_server() -> Iterator[str]:
    """Answers each request a byte every 20 ms (about 3 s in all), on a free port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                for n in range(len(ANSWER)):
                    if stop.is_set():
                        return
                    time.sleep(0.02)
                    try:
                        conn.sendall(ANSWER[n : n + 1])
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_trickled_answer_ends_the_call_when_its_deadline_passes(trickling_server):
    with deadline_client(timeout=5.0) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout), call_deadline(0.3):
            client.get(trickling_server)
        assert time.monotonic() - started < 1.5  # 0.3 s, not the trickle's 3 s
        # outside a deadline, only httpx's own per-step timeouts apply: the answer arrives
        assert client.get(trickling_server).text == "ok"


def test_the_segmind_client_gives_up_on_a_trickled_status_line_at_its_budget(trickling_server):
    """Its own body check cannot see the header phase: the transport's deadline does. A submit
    cut so may have been accepted upstream, so it is counted as a lost answer."""
    settings = load_settings(
        {"SEGMIND_API_KEY": "SG_test_0123456789abcdef"},
        segmind_base_url=trickling_server.rstrip("/"),
        http_timeout_s=0.3,
    )
    client = SegmindClient.from_settings(settings)
    try:
        started = time.monotonic()
        with pytest.raises(TransientError, match="ReadTimeout"):
            client.status("req-1")
        with pytest.raises(AnswerLost, match="ReadTimeout"):
            client.submit(GenerationRequest(prompt="a panda").upstream_body())
        assert time.monotonic() - started < 2.5  # two calls of 0.3 s, not of 3 s each
    finally:
        client.close()


def test_output_downloads_give_up_on_a_trickled_status_line_at_their_budget(trickling_server):
    """A worker's (SEGQ_DOWNLOAD_OUTPUTS) and ``segq wait --download``'s: an output host that
    never finishes its headers must not hold a task thread, or a wait, for good."""
    settings = load_settings({}, http_timeout_s=0.3)
    client = SegmindClient.from_settings(settings)
    try:
        started = time.monotonic()
        with pytest.raises(TransientError, match="ReadTimeout"):
            client.download(trickling_server + "1.png")
        with keyless_fetch(settings) as fetch, pytest.raises(TransientError, match="ReadTimeout"):
            fetch(trickling_server + "1.png")
        assert time.monotonic() - started < 2.5  # two calls of 0.3 s, not of 3 s each
    finally:
        client.close()


def test_calls_and_downloads_go_through_the_environment_s_proxy_within_their_budget(
    trickling_server, monkeypatch
):
    """A client given its own transport ignores HTTP(S)_PROXY: a host whose only way out is a
    proxy reached neither Segmind nor its CDN (the trickling server stands for the proxy)."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", trickling_server)
    unreachable = "http://127.0.0.1:9"  # nothing listens: reached only through the proxy
    settings = load_settings({"SEGMIND_API_KEY": "SG_test_0123456789abcdef"},
                             segmind_base_url=unreachable, http_timeout_s=0.3)  # fmt: skip
    client = SegmindClient.from_settings(settings)
    try:
        with pytest.raises(TransientError, match="ReadTimeout"):
            client.status("req-1")
        with keyless_fetch(settings) as fetch, pytest.raises(TransientError, match="ReadTimeout"):
            fetch(unreachable + "/1.png")
    finally:
        client.close()

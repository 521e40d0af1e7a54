"""A webhook receiver on loopback for tests: it keeps every POST and answers as scripted."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ReceivedPost:
    """One delivery as it arrived: the raw body (what the signature covers) and headers."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def job(self) -> dict[str, Any]:
        return json.loads(self.body)


TRICKLED_BYTES = 20


@dataclass
class WebhookReceiver:
    """Answers the first POSTs with ``script``'s status codes in order, then ``then_status``."""

    script: list[int]
    then_status: int
    trickle_s: float = 0.0
    """Above 0: every answer promises a body of ``TRICKLED_BYTES`` and sends it a byte per
    ``trickle_s`` (a slow or stuck receiver behind a prompt status line); with
    ``trickle_status``, the status line and headers come a byte per ``trickle_s`` too."""
    trickle_status: bool = False
    url: str = ""
    posts: list[ReceivedPost] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            status = self.script.pop(0) if self.script else self.then_status
            self.posts.append(ReceivedPost(path, headers, body, status))
        return status

    def posts_for(self, job_id: str) -> list[ReceivedPost]:
        with self.lock:
            return [post for post in self.posts if post.job["job_id"] == job_id]


@contextmanager
def run_webhook_receiver(
    script: Sequence[int] = (),
    then_status: int = 200,
    trickle_s: float = 0.0,
    trickle_status: bool = False,
) -> Iterator[WebhookReceiver]:
    """A receiver on 127.0.0.1 and a free port, stopped on exit (also when the test fails)."""
    receiver = WebhookReceiver(list(script), then_status, trickle_s, trickle_status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = receiver.answer(self.path, dict(self.headers.items()), body)
            if trickle_status:
                head = f"HTTP/1.1 {status} OK\r\nContent-Length: 0\r\n\r\n".encode()
                self.trickle([head[n : n + 1] for n in range(len(head))])
                return
            self.send_response(status)
            self.send_header("Content-Length", str(TRICKLED_BYTES if trickle_s else 0))
            self.end_headers()
            self.wfile.flush()
            self.trickle([b" "] * (TRICKLED_BYTES if trickle_s else 0))

        def trickle(self, pieces: list[bytes]) -> None:
            for piece in pieces:
                time.sleep(trickle_s)
                try:
                    self.wfile.write(piece)
                    self.wfile.flush()
                except OSError:  # the client stopped listening: what a good one does
                    return

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test asserts on ``posts``, not on stderr."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/segq"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

"""Where the API key may travel, over real sockets: only to ``SEGMIND_BASE_URL``'s origin.

Two servers on loopback: the sandbox (the configured origin) and a recording server on another
port (another origin: same host, different port). The sandbox is told to name the recorder in
its ``status_url``, ``response_url`` and output URLs; a third server answers every v2 call with
a redirect to the recorder. The recorder must never see the key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from shared.errors import TransientError
from shared.request_model import MODEL_SLUG, GenerationRequest
from shared.sandbox import RunningSandbox, SandboxConfig, start_sandbox
from shared.segmind_client import SegmindClient
from shared.settings import load_settings

API_KEY = "SG_origin_test_key_0123456789abcdef"
POLL_S = 0.05
FAST = {"time_scale": 0.01, "min_queue_s": 0.0, "random_seed": 1}
Answer = Callable[[str], tuple[int, dict[str, str], bytes]]


@dataclass
class Recorder:
    """A loopback HTTP server that answers with ``answer(path)`` and keeps every request's
    path and headers."""

    answer: Answer
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def keys_seen(self) -> list[str | None]:
        return [headers.get("x-api-key") for _, headers in self.seen]

    def start(self) -> None:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                code, headers, body = recorder.answer(self.path)
                self.send_response(code)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                """Quiet: the test reads ``seen`` instead."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def make_recorder() -> Iterator[Callable[[Answer], Recorder]]:
    started: list[Recorder] = []

    def make(answer: Answer) -> Recorder:
        started.append(Recorder(answer))
        started[-1].start()
        return started[-1]

    yield make
    for recorder in started:
        recorder.stop()


@pytest.fixture
def elsewhere(make_recorder) -> Recorder:
    """The other origin: answers anything with a small JPEG-looking body."""
    return make_recorder(lambda path: (200, {"Content-Type": "image/jpeg"}, b"\xff\xd8\xff jpeg"))


@pytest.fixture
def make_client() -> Iterator[Callable[[str], SegmindClient]]:
    clients: list[SegmindClient] = []

    def make(base_url: str) -> SegmindClient:
        settings = load_settings({"SEGMIND_API_KEY": API_KEY, "SEGMIND_BASE_URL": base_url})
        clients.append(SegmindClient.from_settings(settings))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def sandbox_naming(elsewhere: Recorder) -> Iterator[RunningSandbox]:
    """A sandbox whose answers name the other origin in every URL they carry."""
    with start_sandbox(SandboxConfig.model_validate({**FAST, "public_url": elsewhere.url})) as sb:
        yield sb


def run_to_completion(client: SegmindClient, timeout_s: float = 10.0) -> list[str]:
    """Submit, poll until COMPLETED, fetch the result: the output URLs."""
    accepted = client.submit(GenerationRequest(prompt="a quiet harbour").upstream_body())
    for _ in range(int(timeout_s / POLL_S)):
        if client.status(accepted.request_id).status == "COMPLETED":
            return client.result(accepted.request_id).output_urls
        time.sleep(POLL_S)
    pytest.fail("the sandbox job did not complete")


def test_status_and_response_urls_at_another_origin_are_never_followed(
    sandbox_naming, elsewhere, make_client
):
    # Given a sandbox whose submit answer points status_url and response_url at another origin
    client = make_client(sandbox_naming.url)
    submitted = httpx.post(f"{sandbox_naming.url}/v2/{MODEL_SLUG}", json={"prompt": "probe"},
                           headers={"x-api-key": "probe-key"})  # fmt: skip
    assert submitted.json()["status_url"].startswith(elsewhere.url)
    # When the client runs a job through it
    outputs = run_to_completion(client)
    # Then every call went to the configured origin and the other origin saw nothing
    assert outputs and all(url.startswith(elsewhere.url) for url in outputs)
    assert elsewhere.seen == []
    truth = sandbox_naming.truth(with_requests=False)["totals"]
    assert truth["status_polls"] >= 1 and truth["result_fetches"] == 1


def test_an_output_at_another_origin_is_downloaded_without_the_key(
    sandbox_naming, elsewhere, make_client
):
    client = make_client(sandbox_naming.url)
    [url] = run_to_completion(client)
    assert client.download(url) == b"\xff\xd8\xff jpeg"
    assert elsewhere.keys_seen() == [None]


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_origin_is_not_followed_and_the_key_stays_home(
    make_recorder, elsewhere, make_client, code
):
    # Given a configured origin that redirects every v2 call to another origin
    home = make_recorder(lambda path: (code, {"Location": f"{elsewhere.url}{path}"}, b""))
    client = make_client(home.url)
    # When the client submits, polls and fetches: each is a transient error naming the target
    for call in (lambda: client.submit({"prompt": "x"}), lambda: client.status("r-1"),
                 lambda: client.result("r-1")):  # fmt: skip
        with pytest.raises(TransientError) as refused:
            call()
        assert refused.value.http_status == code and elsewhere.url in refused.value.detail
    # Then only the configured origin got the key, and the other origin got nothing at all
    assert home.keys_seen() == [API_KEY] * 3
    assert elsewhere.seen == []


def test_a_download_redirected_to_another_origin_still_carries_no_key(
    make_recorder, elsewhere, make_client
):
    home = make_recorder(lambda path: (302, {"Location": f"{elsewhere.url}/signed{path}"}, b""))
    client = make_client(home.url)
    assert client.download(f"{home.url}/media/r-1/0.jpeg") == b"\xff\xd8\xff jpeg"
    assert home.keys_seen() == [None] and elsewhere.keys_seen() == [None]
    assert elsewhere.seen[0][0] == "/signed/media/r-1/0.jpeg"

"""The sandbox is never the bottleneck: status polls per second it serves on one core.

Run:  .venv/bin/python -m tests.benchmarks.bench_sandbox [--seconds 5] [--connections 32]

The sandbox runs as ``segq sandbox`` in a subprocess pinned to core 0 (``taskset -c 0``); the
load generator runs in another process pinned to core 1: raw HTTP/1.1 over keep-alive asyncio
connections, one request in flight per connection, so almost all of its core goes to the
server's answers. The same generator then measures a minimal aiohttp hello-world server
started the same way, as this run's baseline (the machine is shared, so absolute figures
wander; the ratio does less). Ground truth must count exactly the polls the generator got.
Everything is on 127.0.0.1 and every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

from shared.request_model import MODEL_SLUG
from tests.benchmarks.support import command_line

TARGET_POLLS_PER_S = 2000
JOBS = 64
START_TIMEOUT_S = 20.0
CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)
SANDBOX_ARGS = ("sandbox", "--port", "0", "--gpus", "1000", "--time-scale", "0.001",
                "--min-queue-s", "0", "--random-seed", "1")  # fmt: skip


def pinned(core: int) -> list[str]:
    """``taskset -c CORE`` when there is a core to pin to, else nothing (figures then mixed)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core)]
    return []


@contextmanager
def server_process(argv: list[str]) -> Iterator[str]:
    """Start a server that prints ``... listening on URL``; yield the URL; always stop it."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        line = ""
        while "listening on" not in line and time.monotonic() < deadline:
            line = process.stdout.readline() if process.stdout else ""
            if not line and process.poll() is not None:
                raise RuntimeError(f"{argv} exited with {process.returncode}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


async def _poll_loop(host: str, port: int, requests: list[bytes], warm_until: float,
                     end_at: float, counts: Counter[int]) -> None:  # fmt: skip
    reader, writer = await asyncio.open_connection(host, port)
    sent = 0
    try:
        while time.monotonic() < end_at:
            writer.write(requests[sent % len(requests)])
            sent += 1
            head = await reader.readuntil(b"\r\n\r\n")
            length = CONTENT_LENGTH.search(head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            status = int(head[9:12])
            counts[status if time.monotonic() >= warm_until else -1] += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def generate_load(url: str, paths: list[str], seconds: float, connections: int) -> dict:
    """GET ``paths`` round robin over keep-alive connections; counts after a 1 s warm-up."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nx-api-key: bench\r\n\r\n".encode()
        for path in paths
    ]
    counts: Counter[int] = Counter()
    warm_until = time.monotonic() + 1.0
    end_at = warm_until + seconds
    loops = [
        _poll_loop(host, port, requests[n:] + requests[:n], warm_until, end_at, counts)
        for n in range(connections)
    ]
    await asyncio.gather(*loops)
    measured = sum(n for status, n in counts.items() if status != -1)
    return {
        "per_s": measured / seconds,
        "statuses": {str(k): v for k, v in counts.items() if k != -1},
        "total": sum(counts.values()),
    }


def run_load(url: str, paths: list[str], seconds: float, connections: int) -> dict:
    """The load generator in its own process on core 1; its JSON report."""
    argv = [*pinned(1), sys.executable, "-m", "tests.benchmarks.bench_sandbox", "--load", url,
            "--seconds", str(seconds), "--connections", str(connections), *paths]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return json.loads(done.stdout)


def completed_jobs(url: str) -> list[str]:
    """Submit JOBS jobs and wait until the sandbox has completed them all; their ids."""
    with httpx.Client(base_url=url, headers={"x-api-key": "bench"}, timeout=10) as client:
        ids = [
            client.post(f"/v2/{MODEL_SLUG}", json={"prompt": f"bench {n}"}).json()["request_id"]
            for n in range(JOBS)
        ]
        deadline = time.monotonic() + 30
        while client.get("/_sandbox/truth?requests=0").json()["totals"]["jobs"]["COMPLETED"] < JOBS:
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not complete the benchmark's jobs")
            time.sleep(0.05)
    return ids


def polls_counted(url: str) -> int:
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.get("/_sandbox/truth?requests=0").json()["totals"]["status_polls"]


def hello_server() -> None:
    """The baseline: aiohttp's hello world, bound and run the way the sandbox is."""
    from aiohttp import web

    from shared.sandbox.runner import LISTEN_BACKLOG

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, world")

    app = web.Application()
    app.router.add_get("/{tail:.*}", hello)
    sock = socket.create_server(("127.0.0.1", 0), backlog=LISTEN_BACKLOG)
    print(f"hello listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    web.run_app(app, sock=sock, access_log=None, print=None, backlog=LISTEN_BACKLOG)


def benchmark(seconds: float, connections: int) -> None:
    sandbox_argv = [*pinned(0), sys.executable, "-m", "producer", *SANDBOX_ARGS]
    with server_process(sandbox_argv) as url:
        paths = [f"/v2/requests/{request_id}/status" for request_id in completed_jobs(url)]
        before = polls_counted(url)
        sandbox = run_load(url, paths, seconds, connections)
        counted = polls_counted(url) - before
    hello_argv = [*pinned(0), sys.executable, "-m", "tests.benchmarks.bench_sandbox", "--hello"]
    with server_process(hello_argv) as url:
        hello = run_load(url, paths, seconds, connections)
    ratio = sandbox["per_s"] / hello["per_s"]
    print("command:", command_line())
    print(f"sandbox:      {' '.join(sandbox_argv)}")
    print(
        f"load:         {' '.join(pinned(1))} raw HTTP/1.1 keep-alive, {connections} "
        f"connections, {len(paths)} COMPLETED jobs' status URLs, {seconds:g} s after 1 s warm-up"
    )
    print(f"sandbox status polls/s: {sandbox['per_s']:,.0f}  statuses {sandbox['statuses']}")
    print(f"hello-world requests/s: {hello['per_s']:,.0f}  statuses {hello['statuses']}")
    print(f"ratio sandbox / hello-world: {ratio:.2f}")
    print(f"ground truth status_polls: {counted} (generator got {sandbox['total']} answers)")
    verdict = "met" if sandbox["per_s"] >= TARGET_POLLS_PER_S else "NOT met"
    print(f"target >= {TARGET_POLLS_PER_S:,} polls/s on one core: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--hello", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hello:
        hello_server()
    elif args.load:
        report = asyncio.run(generate_load(args.load, args.paths, args.seconds, args.connections))
        print(json.dumps(report))
    else:
        benchmark(args.seconds, args.connections)


if __name__ == "__main__":
    main()

"""What one upstream call costs a worker in CPU: segq's client (httpx) against the standard
library's ``http.client`` making the same request, in the same run.

Run:  .venv/bin/python -m tests.benchmarks.bench_http_client [--calls 600] [--rounds 5]

Why: a job makes three upstream calls (submit, status, result), and ``bench_pipeline`` shows
segq's own steps costing a worker more CPU per job than Celery's no-op task. This measures
how much of that is the HTTP client itself. The sandbox runs as ``segq sandbox`` in a
subprocess pinned to core 0, this process on core 1. Each round calls every way in turn, on
keep-alive connections, ``--calls`` status calls then as many result calls of COMPLETED jobs;
each figure is the median over the rounds of this process's CPU time (user + system) per
call. The ways: ``SegmindClient`` as workers make it (``from_settings``: a pool per thread,
key redaction, answer parsing); a bare ``httpx.Client`` GET with the same headers, reading
the body and decoding its JSON; and ``http.client.HTTPConnection`` doing the same, the
baseline. Everything is on 127.0.0.1 and the sandbox is stopped here.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from itertools import cycle
from urllib.parse import urlsplit

import httpx

from shared.segmind_client import SegmindClient
from shared.settings import load_settings
from tests.benchmarks.bench_sandbox import SANDBOX_ARGS, completed_jobs, pinned, server_process
from tests.benchmarks.support import command_line

API_KEY = "bench-http-client-key"
CALLS_PER_JOB = 3
"""submit, status, result."""
KINDS = ("status", "result")
OURS = "segq's SegmindClient (httpx)"
BASELINE = "http.client GET + json.loads (baseline)"

Call = Callable[[str], object]


def segq_client(url: str) -> tuple[Call, Call, Callable[[], None]]:
    settings = load_settings({"SEGMIND_API_KEY": API_KEY, "SEGMIND_BASE_URL": url})
    client = SegmindClient.from_settings(settings)
    return client.status, client.result, client.close


def by_path(get: Callable[[str], object]) -> tuple[Call, Call]:
    """The status and result calls of a client that GETs a path of the sandbox's origin."""
    return (lambda rid: get(f"/v2/requests/{rid}/status")), (lambda rid: get(f"/v2/requests/{rid}"))


def bare_httpx(url: str) -> tuple[Call, Call, Callable[[], None]]:
    http = httpx.Client(base_url=url, headers={"x-api-key": API_KEY}, timeout=10)

    def get(path: str) -> object:
        return http.get(path).raise_for_status().json()

    return (*by_path(get), http.close)


def standard_library(url: str) -> tuple[Call, Call, Callable[[], None]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    headers = {"x-api-key": API_KEY}

    def get(path: str) -> object:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
        return json.loads(body)

    return (*by_path(get), conn.close)


WAYS = {
    OURS: segq_client,
    "bare httpx.Client GET + .json()": bare_httpx,
    BASELINE: standard_library,
}


def cpu_ms_per_call(call: Call, request_ids: list[str], calls: int) -> float:
    ids = cycle(request_ids)
    call(next(ids))  # the connection is made outside the timed span
    start = time.process_time()
    for _ in range(calls):
        call(next(ids))
    return (time.process_time() - start) * 1000 / calls


def benchmark(calls: int, rounds: int) -> None:
    sandbox_argv = [*pinned(0), sys.executable, "-m", "producer", *SANDBOX_ARGS]
    if pinned(1):
        os.sched_setaffinity(0, {1})
    samples: dict[str, dict[str, list[float]]] = {way: {k: [] for k in KINDS} for way in WAYS}
    with server_process(sandbox_argv) as url:
        request_ids = completed_jobs(url)
        for _ in range(rounds):
            for way, make in WAYS.items():
                *kind_calls, close = make(url)
                try:
                    for kind, call in zip(KINDS, kind_calls, strict=True):
                        samples[way][kind].append(cpu_ms_per_call(call, request_ids, calls))
                finally:
                    close()
    report(samples, calls, rounds, sandbox_argv)


def report(samples: dict[str, dict[str, list[float]]], calls: int, rounds: int,
           sandbox_argv: list[str]) -> None:  # fmt: skip
    median = {way: {kind: statistics.median(v) for kind, v in by_kind.items()}
              for way, by_kind in samples.items()}  # fmt: skip
    baseline = median[BASELINE]
    print("command:", command_line())
    print(f"sandbox: {' '.join(sandbox_argv)}; {rounds} rounds of {calls} calls of each kind")
    width = max(map(len, WAYS))
    print(f"{'CPU ms per call (median of rounds)':<{width}}  status           result")
    for way, figures in median.items():
        cells = [f"{figures[kind]:.3f} (x{figures[kind] / baseline[kind]:.2f})"
                 for kind in KINDS]  # fmt: skip
        print(f"{way:<{width}}  {cells[0]:<15}  {cells[1]}")
    ours = median[OURS]
    per_job = ours["status"] * (CALLS_PER_JOB - 1) + ours["result"]
    saved = per_job - (baseline["status"] * (CALLS_PER_JOB - 1) + baseline["result"])
    print(f"a job's {CALLS_PER_JOB} calls through segq's client (a submit costed as a status "
          f"call): {per_job:.2f} ms, {saved:.2f} ms more than the baseline")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=600, help="calls of each kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    benchmark(args.calls, args.rounds)


if __name__ == "__main__":
    main()

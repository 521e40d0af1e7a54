"""Redis or RabbitMQ as the Celery broker: the same workload on each, side by side in one run
(issue 11).

Run:  .venv/bin/python -m tests.benchmarks.bench_brokers [--quick]

For each broker, from scratch: a private redis-server as the job store (``start_local_redis``),
the sandbox on a thread of this process, real `segq worker` processes; the broker is a second
private redis-server (so its memory is its own), or a new virtual host on the RabbitMQ at
127.0.0.1:5672 (removed afterwards). Figures:

1. jobs per second end to end: N jobs on a fast sandbox (``FAST_SANDBOX``: about 0.25 s
   upstream, as many GPUs as jobs), from the enqueue to the last one completed in the job
   store, two workers of 16 threads.
2. jobs in flight per worker: jobs that take 30 s upstream on one worker; the most jobs
   submitted upstream and not yet finished at once (the job store's ``segq:inflight``).
3. broker memory for a full window: a worker that consumes none of segq's queues (only
   ``celery``) while its dispatcher fills them, so the broker holds exactly the window of
   ``SEGQ_BROKER_WINDOW`` submit messages. Redis: ``used_memory`` above its idle value and
   ``MEMORY USAGE`` of the queue's list; RabbitMQ: the ``memory`` of the vhost's queues from
   ``rabbitmqctl list_queues`` above their idle value, and of the submit queue alone.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from shared import redis_keys
from shared.job_store import JobStore
from shared.local_redis import start_local_redis
from shared.sandbox import SandboxConfig, start_sandbox
from shared.settings import Settings
from tests.benchmarks.support import command_line
from tests.support.brokers import (
    RABBITMQ_ADDRESS,
    RABBITMQCTL_TIMEOUT_S,
    BrokerQueues,
    rabbitmq_missing,
    rabbitmq_vhost,
    rabbitmqctl,
)
from tests.support.fleet import FAST_SANDBOX, Fleet, wait_until
from workers.celery_app import SUBMIT_QUEUE

SIZES = {"full": {"jobs": 2000, "in_flight": 2000}, "quick": {"jobs": 400, "in_flight": 500}}
FAST = {**FAST_SANDBOX, "gpus": 100_000}
SLOW = {"inference_mean_s": 30.0, "inference_sigma": 0.0, "min_queue_s": 0.0, "gpus": 100_000}
WORKERS = 2
CONCURRENCY = 16
IN_FLIGHT_WATCH_S = 40.0
SAMPLE_S = 0.25
WINDOW = Settings.model_fields["broker_window"].default
NOT_SEGQ_QUEUES = ("--queues=celery",)
"""A worker that consumes only Celery's default queue: its dispatcher fills segq's queues."""


@dataclass
class Broker:
    """One broker under test: its URL and how to read what its queues take in memory."""

    name: str
    url: str

    def memory_bytes(self) -> dict[str, int]:
        """Bytes the broker spends on queues: total (all of it) and the submit queue's."""
        if self.name == "redis":
            client = redis.Redis.from_url(self.url)
            try:
                memory = client.info("memory")
                total = memory["used_memory"] - memory["mem_clients_normal"]
                return {"total": total, "queue": client.memory_usage(SUBMIT_QUEUE) or 0}
            finally:
                client.close()
        rows = _rabbitmq_queue_rows(rabbitmq_vhost(self.url))
        submit_queue = sum(memory for name, _, memory in rows if name == SUBMIT_QUEUE)
        return {"total": sum(memory for _, _, memory in rows), "queue": submit_queue}


def _rabbitmq_queue_rows(vhost: str) -> list[tuple[str, int, int]]:
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages", "memory",
         "--no-table-headers"],
        check=True, capture_output=True, text=True, timeout=RABBITMQCTL_TIMEOUT_S,
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in listing.splitlines() if line.count("\t") == 2]
    return [(name, int(messages), int(memory)) for name, messages, memory in rows]


@contextmanager
def broker(name: str) -> Iterator[Broker]:
    if name == "redis":
        with start_local_redis() as server:
            yield Broker(name, server.url)
        return
    vhost = f"segq-bench-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        host, port = RABBITMQ_ADDRESS
        yield Broker(name, f"amqp://guest:guest@{host}:{port}/{vhost}")
    finally:
        rabbitmqctl("delete_vhost", vhost)


@contextmanager
def fleet_on(broker_under_test: Broker, sandbox: dict, tmp: Path) -> Iterator[Fleet]:
    """A fresh job store and sandbox, and a fleet whose workers use ``broker_under_test``."""
    with ExitStack() as stack:
        store = stack.enter_context(start_local_redis())
        running = stack.enter_context(start_sandbox(SandboxConfig.model_validate(sandbox)))
        client = redis.Redis.from_url(store.url, decode_responses=True)
        stack.callback(client.close)
        folder = tmp / uuid.uuid4().hex[:8]
        folder.mkdir()
        fleet = Fleet(store.url, running, folder, {}, JobStore(client, retention_s=3600),
                      broker_under_test.url)  # fmt: skip
        stack.callback(fleet.stop)
        yield fleet


def prompts(label: str, count: int) -> list[dict[str, str]]:
    return [{"prompt": f"{label} {uuid.uuid4().hex[:8]} {n}"} for n in range(count)]


def jobs_per_s(target: Broker, tmp: Path, jobs: int) -> float:
    with fleet_on(target, FAST, tmp) as fleet:
        for _ in range(WORKERS):
            fleet.start_worker(concurrency=CONCURRENCY)
        fleet.wait_all(fleet.add(prompts("warm", 20)), timeout_s=60)
        start = time.perf_counter()
        fleet.wait_all(fleet.add(prompts("throughput", jobs)), timeout_s=120 + jobs / 5)
        return jobs / (time.perf_counter() - start)


def in_flight_on_one_worker(target: Broker, tmp: Path, jobs: int) -> int:
    with fleet_on(target, SLOW, tmp) as fleet:
        fleet.start_worker(concurrency=CONCURRENCY * WORKERS)
        fleet.add(prompts("slow", jobs))
        peak = 0
        deadline = time.monotonic() + IN_FLIGHT_WATCH_S
        while time.monotonic() < deadline and peak < jobs:
            peak = max(peak, fleet.store.redis.zcard(redis_keys.INFLIGHT))
            time.sleep(SAMPLE_S)
        return peak


def window_memory(target: Broker, tmp: Path) -> dict[str, int]:
    with fleet_on(target, FAST, tmp) as fleet:
        fleet.start_worker(concurrency=4, celery_options=NOT_SEGQ_QUEUES)
        time.sleep(2)  # the worker has declared its queues; nothing is published yet
        idle = target.memory_bytes()
        fleet.add(prompts("window", WINDOW * 2))
        queues = BrokerQueues(target.url)
        try:
            wait_until(lambda: queues.length(SUBMIT_QUEUE) >= WINDOW, "the window filled", 60,
                       fleet.workers)  # fmt: skip
            held = queues.length(SUBMIT_QUEUE)
        finally:
            queues.close()
        time.sleep(2)  # RabbitMQ reports queue memory from periodic stats
        full = target.memory_bytes()
    return {"messages": held, "total": full["total"] - idle["total"], "queue": full["queue"]}


def measure(name: str, sizes: dict[str, int], tmp: Path) -> dict[str, float]:
    with broker(name) as target:
        figures: dict[str, float] = {"jobs_per_s": jobs_per_s(target, tmp, sizes["jobs"])}
    with broker(name) as target:
        figures["in_flight"] = in_flight_on_one_worker(target, tmp, sizes["in_flight"])
    with broker(name) as target:
        window = window_memory(target, tmp)
    figures.update({f"window_{key}": value for key, value in window.items()})
    print(f"  {name}: done", flush=True)
    return figures


def report(sizes: dict[str, int], results: dict[str, dict[str, float]]) -> None:
    rows = [
        (f"jobs/s end to end ({sizes['jobs']:,} jobs, {WORKERS} workers x {CONCURRENCY})",
         lambda f: f"{f['jobs_per_s']:.1f}"),
        (f"most jobs in flight on one worker (30 s jobs, {sizes['in_flight']:,} enqueued)",
         lambda f: f"{f['in_flight']:,.0f}"),
        ("messages in the submit queue, window full", lambda f: f"{f['window_messages']:.0f}"),
        ("broker memory for them, all queues (KiB)", lambda f: f"{f['window_total'] / 1024:,.0f}"),
        ("  the submit queue alone (KiB)", lambda f: f"{f['window_queue'] / 1024:,.0f}"),
        ("  per message (bytes)",
         lambda f: f"{f['window_total'] / max(f['window_messages'], 1):,.0f}"),
    ]  # fmt: skip
    names = list(results)
    width = max(len(label) for label, _ in rows)
    print(f"{'':<{width}}  " + "".join(f"{name:>12}" for name in names))
    for label, show in rows:
        print(f"{label:<{width}}  " + "".join(f"{show(results[n]):>12}" for n in names))
    if len(names) == 2:
        ratio = results["rabbitmq"]["jobs_per_s"] / results["redis"]["jobs_per_s"]
        print(f"RabbitMQ / Redis jobs per second: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, about 3 minutes")
    args = parser.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    print("command:", command_line(), flush=True)
    print(f"sizes: {sizes}; SEGQ_BROKER_WINDOW={WINDOW}; sandbox {FAST} (throughput)", flush=True)
    missing = rabbitmq_missing()
    names = ["redis"] if missing else ["redis", "rabbitmq"]
    if missing:
        print(f"RabbitMQ left out: {missing}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: measure(name, sizes, Path(tmp)) for name in names}
    report(sizes, results)


if __name__ == "__main__":
    main()

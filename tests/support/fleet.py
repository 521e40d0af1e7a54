"""Real segq processes for integration tests: workers (and Flower) as `python -m producer ...`
children, the sandbox on a thread, and the job store the tests read.

Every process started here is stopped when its fixture ends, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from shared.job_model import TERMINAL_STATES, Job
from shared.job_store import JobOptions, JobStore, NewJob
from shared.sandbox import RunningSandbox, SandboxConfig, start_sandbox

REPO = Path(__file__).resolve().parents[2]
API_KEY = "SG_integration_test_key_0123456789"
FAST_SANDBOX = {"time_scale": 0.1, "random_seed": 11}
"""Jobs take about 0.25 s upstream instead of 2.5 s; fault draws repeat from run to run."""
STARTUP_S = 90.0
"""Bounds the wait for a `python -m producer ...` child to say it is up. A bound, not an
expectation: idle, a worker is ready in about 2 s; beside other test sessions on 2 cores its
imports alone took 26 s, and 30 s failed a third of a loaded integration run."""


def segq_env(**settings: str) -> dict[str, str]:
    """The test runner's environment without its segq settings, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGQ_", "SEGMIND_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return {**env, **settings}


class Process:
    """A `python -m producer ...` child with its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self._out = log.open("ab")
        command = [sys.executable, "-m", "producer", *args]
        self.popen = subprocess.Popen(command, env=env, cwd=REPO, stdout=self._out,
                                      stderr=subprocess.STDOUT)  # fmt: skip

    def output(self, tail: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when the machine or the OOM killer stops it."""
        if self.running():
            self.popen.kill()
            self.popen.wait(10)

    def stop(self, grace_s: float = 20.0) -> None:
        if self.running():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._out.close()


def wait_until(
    check: Callable[[], Any], what: str, timeout_s: float, processes: Iterable[Process] = ()
) -> Any:
    """Calls ``check`` until it returns something truthy; fails with the processes' output."""
    processes = list(processes)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for process in processes:
            if not process.running():
                pytest.fail(f"{what}: {process.args[0]} exited:\n{process.output()}")
        try:
            result = check()
        except (httpx.TransportError, redis.ConnectionError):
            result = None
        if result:
            return result
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.args[0]} ---\n{p.output()}" for p in processes)
    pytest.fail(f"{what}: not within {timeout_s}s\n{logs}")


@dataclass
class Fleet:
    """Workers on one Redis and one sandbox, and the store to put jobs in and read them back."""

    redis_url: str
    sandbox: RunningSandbox
    tmp_path: Path
    settings: dict[str, str]
    store: JobStore
    broker_url: str | None = None
    workers: list[Process] = field(default_factory=list)

    def env(self, **overrides: str) -> dict[str, str]:
        broker = {"SEGQ_BROKER_URL": self.broker_url} if self.broker_url else {}
        return segq_env(
            **broker,
            SEGQ_REDIS_URL=self.redis_url,
            SEGMIND_API_KEY=API_KEY,
            SEGQ_RESULTS_DIR=str(self.tmp_path / "results"),
            **{"SEGMIND_BASE_URL": self.sandbox.url, **self.settings, **overrides},
        )

    def start_worker(
        self, concurrency: int = 8, celery_options: Sequence[str] = (), **overrides: str
    ) -> Process:
        """Starts one worker process and returns once it consumes (Celery says ready).

        ``celery_options`` go to `celery worker` (e.g. ``--include=...``, ``--queues=...``)."""
        name = f"w{len(self.workers)}-{uuid.uuid4().hex[:6]}@127.0.0.1"
        args = ["worker", f"--concurrency={concurrency}", f"--hostname={name}", *celery_options]
        worker = Process(args, self.env(**overrides), self.tmp_path / f"{name}.log")
        self.workers.append(worker)
        wait_until(lambda: "ready." in worker.output(100_000), "worker ready",
                   STARTUP_S, [worker])  # fmt: skip
        return worker

    def add(self, params: Iterable[dict[str, Any]], options: JobOptions | None = None) -> list[str]:
        """Enqueues interactive-free bulk jobs with fresh ids; returns the ids in order."""
        jobs = [NewJob(f"t{uuid.uuid4().hex[:12]}", dict(p)) for p in params]
        self.store.add_jobs(jobs, batch_id=None, options=options or JobOptions())
        return [job.job_id for job in jobs]

    def wait_all(self, job_ids: list[str], timeout_s: float) -> list[Job]:
        """Every job, once all are terminal; fails with the workers' logs otherwise."""

        def all_terminal() -> list[Job] | None:
            jobs = [job for job in self.store.get_jobs(job_ids) if job is not None]
            done = len(jobs) == len(job_ids) and all(j.state in TERMINAL_STATES for j in jobs)
            return jobs if done else None

        live = [w for w in self.workers if w.running()]
        return wait_until(all_terminal, f"{len(job_ids)} jobs terminal", timeout_s, live)

    def submits_per_request(self) -> dict[str, int]:
        """How many times the sandbox accepted each prompt (our prompts are unique per job)."""
        requests = self.sandbox.truth()["requests"].values()
        counts: dict[str, int] = {}
        for request in requests:
            counts[request["prompt"]] = counts.get(request["prompt"], 0) + 1
        return counts

    def stop(self) -> None:
        """Stops every worker; when that is cut short (the test's timeout fires during
        teardown), kills the rest, so that no worker outlives its test."""
        try:
            for worker in self.workers:
                worker.stop()
        finally:
            for worker in self.workers:
                worker.kill()


@pytest.fixture
def make_fleet(
    redis_url: str, broker_url: str | None, tmp_path: Path
) -> Iterator[Callable[..., Fleet]]:
    """``make_fleet(sandbox={knobs}, **SEGQ_settings)``: a fleet with no workers yet.

    Every test that uses it runs once per broker (see ``tests/support/brokers.py``)."""
    fleets: list[Fleet] = []
    sandboxes: list[RunningSandbox] = []
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    clients = [client]

    def make(
        sandbox: dict[str, Any] | None = None, on_redis: str | None = None, **settings: str
    ) -> Fleet:
        """``on_redis``: another Redis than the test's own (one the test restarts, say)."""
        config = SandboxConfig.model_validate({**FAST_SANDBOX, **(sandbox or {})})
        sandboxes.append(start_sandbox(config))
        store_client = client
        if on_redis:
            store_client = redis.Redis.from_url(on_redis, decode_responses=True)
            clients.append(store_client)
        store = JobStore(store_client, retention_s=3600)
        fleets.append(
            Fleet(on_redis or redis_url, sandboxes[-1], tmp_path, settings, store, broker_url)
        )
        return fleets[-1]

    yield make
    with ExitStack() as cleanup:  # every step runs, also after one that raised
        for each in clients:
            cleanup.callback(each.close)
        for running in sandboxes:
            cleanup.callback(running.stop)
        for fleet in fleets:
            cleanup.callback(fleet.stop)

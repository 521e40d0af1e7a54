"""Workers stop gracefully and say how they are: SIGTERM mid-batch, `segq health` (issue 6).

A worker sent SIGTERM finishes the calls it has under way, gives back unstarted the jobs of
the messages it reserved, and exits within the grace period the deploy files give it; every
job still completes, each submitted upstream exactly once, and none waits for a lease to run
out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from celery import Celery

from shared.job_model import JobState
from shared.local_redis import start_local_redis
from shared.worker_health import read_report
from tests.support.fleet import REPO, Fleet, Process, wait_until

pytestmark = pytest.mark.integration

HTTP_TIMEOUT_S = 30
GRACE_S = 3 * HTTP_TIMEOUT_S
"""The deploy files' rule (grace >= 3 x SEGQ_HTTP_TIMEOUT_S), at this test's timeout."""
LEASE_S = 300
"""Far longer than the test may take: a job that waited on a lease would time it out."""
HOLD_S = 25.0
"""The sandbox lets a held call go by itself after this, before the client's timeout: a test
that fails before lifting its hold leaves no interrupted submits behind."""
SLOW_SANDBOX = {"time_scale": 1.0, "gpus": 6, "random_seed": 5}
"""Jobs take about 2.5 s upstream, so a batch is well under way when SIGTERM arrives."""
CONCURRENCY = 4
STATE_S = 60
"""Bounds each wait for the state SIGTERM must find (loaded CI takes seconds to reach it)."""


def segq_health(fleet: Fleet, health_file: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "producer", "health", *options],
        env=fleet.env(SEGQ_HEALTH_FILE=str(health_file)),
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def completed(fleet: Fleet, ids: list[str]) -> int:
    return sum(1 for job in fleet.store.get_jobs(ids) if job and job.state is JobState.COMPLETED)


def hostname(worker: Process) -> str:
    return next(arg.split("=", 1)[1] for arg in worker.args if arg.startswith("--hostname="))


def reserved_unstarted(fleet: Fleet, worker: Process) -> int:
    """Messages the worker has taken from the broker but not started (Celery's inspect)."""
    control = Celery(broker=fleet.broker_url or fleet.redis_url)
    try:
        replies = control.control.inspect([hostname(worker)], timeout=2).reserved() or {}
    finally:
        control.close()
    return len(replies.get(hostname(worker), []))


def hold_every_thread_with_messages_reserved(fleet: Fleet, leaving: Process) -> None:
    """Holds Segmind's answers until every thread of every worker waits on one and ``leaving``
    has messages it has not started: until the hold is lifted, none of them can start, however
    slowly a loaded machine gets to the SIGTERM."""
    fleet.sandbox.set_faults(hold_s=HOLD_S)
    threads = CONCURRENCY * len(fleet.workers)
    wait_until(lambda: fleet.sandbox.truth(with_requests=False)["held"] == threads,
               "every worker thread in a held call", STATE_S, fleet.workers)  # fmt: skip
    wait_until(lambda: reserved_unstarted(fleet, leaving), "messages reserved, not started",
               STATE_S, fleet.workers)  # fmt: skip


def lift_hold_once_draining(fleet: Fleet, worker: Process, health_file: Path) -> None:
    """Once the worker says it is draining (its health file), what it reserved can only be
    handed back: its held calls may end."""
    wait_until(lambda: read_report(health_file).shutting_down, "worker draining", STATE_S,
               [worker])  # fmt: skip
    fleet.sandbox.set_faults(hold_s=None)


def terminate(worker: Process, while_draining: Callable[[], None] = lambda: None) -> float:
    """Sends SIGTERM, then runs ``while_draining``; returns the seconds the worker took to
    exit (fails past the grace)."""
    started = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    while_draining()
    try:
        worker.popen.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running {GRACE_S}s after SIGTERM:\n{worker.output()}")
    return time.monotonic() - started


@pytest.mark.timeout(360)  # its own waits bound it; on a loaded box they outlast the suite's 120 s
@pytest.mark.parametrize("in_flight", [False, True], ids=["prompt-answers", "calls-in-flight"])
def test_a_worker_sent_sigterm_mid_batch_exits_in_time_and_no_job_is_lost(
    make_fleet, tmp_path, in_flight
):
    # Given two workers sharing a batch of slow jobs, leases far too long to wait for
    fleet = make_fleet(sandbox=SLOW_SANDBOX, SEGQ_LEASE_S=str(LEASE_S),
                       SEGQ_HTTP_TIMEOUT_S=str(HTTP_TIMEOUT_S))  # fmt: skip
    health_file = tmp_path / "leaving.json"
    leaving = fleet.start_worker(concurrency=CONCURRENCY, SEGQ_HEALTH_FILE=str(health_file))
    fleet.start_worker(concurrency=CONCURRENCY, SEGQ_HEALTH_FILE=str(tmp_path / "staying.json"))
    ids = fleet.add({"prompt": f"a windmill {n}"} for n in range(40))
    wait_until(lambda: completed(fleet, ids) >= 6, "a few jobs done", 60, fleet.workers)
    # When one worker is sent SIGTERM in the middle of it
    if in_flight:  # with calls in flight, and messages it has reserved and not started
        hold_every_thread_with_messages_reserved(fleet, leaving)
        exit_s = terminate(leaving, lambda: lift_hold_once_draining(fleet, leaving, health_file))
    else:
        exit_s = terminate(leaving)
    # Then it exited cleanly within the grace period, having drained what it held
    assert leaving.popen.returncode == 0, leaving.output()
    assert "Warm shutdown" in leaving.output(1_000_000)
    assert exit_s < GRACE_S
    if in_flight:
        assert "handed back unstarted" in leaving.output(1_000_000)
    # And the other worker finishes the batch without waiting for any lease
    jobs = fleet.wait_all(ids, timeout_s=LEASE_S / 3)
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert sorted(fleet.submits_per_request().values()) == [1] * 40
    assert sum(job.interrupted_submits for job in jobs) == 0
    # And the worker that left took its health file with it
    assert not (tmp_path / "leaving.json").exists()


def test_segq_health_says_alive_and_ready_while_the_worker_runs_and_not_after(make_fleet, tmp_path):
    # Given a running worker with its own health file
    fleet = make_fleet()
    health_file = tmp_path / "health.json"
    worker = fleet.start_worker(concurrency=2, SEGQ_HEALTH_FILE=str(health_file))
    # Then it is alive at once, and ready once its consumer and dispatcher have stamped
    assert segq_health(fleet, health_file).returncode == 0
    ready = wait_until(lambda: segq_health(fleet, health_file, "--ready").returncode == 0,
                       "segq health --ready", 30, [worker])  # fmt: skip
    assert ready
    # When it is stopped
    worker.stop()
    # Then both checks fail with the reason on stderr
    for options in ((), ("--ready",)):
        answer = segq_health(fleet, health_file, *options)
        assert answer.returncode == 1
        assert "no worker health file" in answer.stderr


FROZEN_MAX_AGE_S = "10"
"""The stamps' max age the frozen-broker test asks for (the default, 60 s, would cost a minute)."""


@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)  # a broker Redis of its own
def test_segq_health_says_unready_while_the_broker_answers_nothing_and_ready_again_after(
    make_fleet, broker_url, tmp_path
):
    # Given a ready worker whose broker is a Redis of its own
    with start_local_redis() as broker:
        fleet = make_fleet(SEGQ_BROKER_URL=broker.url)
        health_file = tmp_path / "health.json"
        worker = fleet.start_worker(concurrency=2, SEGQ_HEALTH_FILE=str(health_file))

        def health(*options: str) -> subprocess.CompletedProcess:
            return segq_health(fleet, health_file, "--max-age-s", FROZEN_MAX_AGE_S, *options)

        wait_until(lambda: health("--ready").returncode == 0, "ready", 30, [worker])
        # When the broker stops answering with its connections open (SIGSTOP: a frozen host,
        # no reset for the worker to notice) while jobs wait to be published
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGSTOP)
        try:
            ids = fleet.add({"prompt": f"a frozen pond {n}"} for n in range(10))
            # Then readiness fails, naming the broker, once the stamps are older than the max
            # age, while liveness holds
            unready = wait_until(lambda: (answer := health("--ready")).returncode == 1 and answer,
                                 "unready", 40, [worker])  # fmt: skip
            assert "consumer loop (broker)" in unready.stderr
            assert health().returncode == 0
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        # And once the broker answers again the worker is ready again and runs every job
        wait_until(lambda: health("--ready").returncode == 0, "ready again", 30, [worker])
        jobs = fleet.wait_all(ids, timeout_s=60)
        fleet.stop()
    assert {job.state for job in jobs} == {JobState.COMPLETED}

"""Workers stop gracefully and say how they are: SIGTERM mid-batch, `segq health` (issue 6).

A worker sent SIGTERM finishes the calls it has under way, gives back unstarted the jobs of
the messages it reserved, and exits within the grace period the deploy files give it; every
job still completes, each submitted upstream exactly once, and none waits for a lease to run
out.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.job_model import JobState
from tests.support.fleet import REPO, Fleet, Process, wait_until

pytestmark = pytest.mark.integration

HTTP_TIMEOUT_S = 10
GRACE_S = 3 * HTTP_TIMEOUT_S
"""The deploy files' rule (grace >= 3 x SEGQ_HTTP_TIMEOUT_S), at this test's timeout."""
LEASE_S = 300
"""Far longer than the test may take: a job that waited on a lease would time it out."""
SLOW_SANDBOX = {"time_scale": 1.0, "gpus": 6, "random_seed": 5}
"""Jobs take about 2.5 s upstream, so a batch is well under way when SIGTERM arrives."""
SLOW_ANSWERS = {"slow_probability": 0.3, "slow_s": 4.0}
"""A third of Segmind's answers take 4 s: SIGTERM finds calls in flight, to be finished."""


def segq_health(fleet: Fleet, health_file: Path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "producer", "health", *options],
        env=fleet.env(SEGQ_HEALTH_FILE=str(health_file)),
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def completed(fleet: Fleet, ids: list[str]) -> int:
    return sum(1 for job in fleet.store.get_jobs(ids) if job and job.state is JobState.COMPLETED)


def terminate(worker: Process) -> float:
    """Sends SIGTERM; returns the seconds the worker took to exit (fails past the grace)."""
    started = time.monotonic()
    worker.popen.send_signal(signal.SIGTERM)
    try:
        worker.popen.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running {GRACE_S}s after SIGTERM:\n{worker.output()}")
    return time.monotonic() - started


@pytest.mark.parametrize("answers", [{}, SLOW_ANSWERS], ids=["prompt-answers", "slow-answers"])
def test_a_worker_sent_sigterm_mid_batch_exits_in_time_and_no_job_is_lost(
    make_fleet, tmp_path, answers
):
    # Given two workers sharing a batch of slow jobs, leases far too long to wait for
    fleet = make_fleet(sandbox={**SLOW_SANDBOX, **answers}, SEGQ_LEASE_S=str(LEASE_S),
                       SEGQ_HTTP_TIMEOUT_S=str(HTTP_TIMEOUT_S))  # fmt: skip
    leaving = fleet.start_worker(concurrency=4, SEGQ_HEALTH_FILE=str(tmp_path / "leaving.json"))
    fleet.start_worker(concurrency=4, SEGQ_HEALTH_FILE=str(tmp_path / "staying.json"))
    ids = fleet.add({"prompt": f"a windmill {n}"} for n in range(40))
    wait_until(lambda: completed(fleet, ids) >= 6, "a few jobs done", 60, fleet.workers)
    # When one worker is sent SIGTERM in the middle of it
    exit_s = terminate(leaving)
    # Then it exited cleanly within the grace period, having drained what it held
    assert leaving.popen.returncode == 0, leaving.output()
    assert "Warm shutdown" in leaving.output(1_000_000)
    assert exit_s < GRACE_S
    if answers:  # calls held 4 s keep its reserved messages waiting when SIGTERM comes
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

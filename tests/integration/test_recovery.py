"""Recovery with real processes: a worker SIGKILLed mid-batch, Redis restarted mid-batch.

Ground truth is the sandbox's ledger of submits per prompt: a job submitted twice would be paid
twice. The only double the design cannot rule out is a submit cut off between Segmind's answer
and the store's write; the job store counts those (``interrupted_submits``), and every double
must be one of them.
"""

from __future__ import annotations

import pytest

from shared.job_model import Job, JobState
from shared.local_redis import start_local_redis
from tests.support.fleet import Fleet, wait_until

pytestmark = pytest.mark.integration

RECOVERY = {"SEGQ_LEASE_S": "5"}
"""Leases of 5 s: a dead worker's jobs are published again after 5 s (the default is 60)."""
SLOW_SANDBOX = {"time_scale": 0.4, "gpus": 16}
"""About 1 s per job upstream, so a batch is still under way when the test strikes."""


def assert_paid_once(fleet: Fleet, jobs: list[Job]) -> None:
    submits = fleet.submits_per_request()
    doubles = {p for p, n in submits.items() if n > 1}
    interrupted = {job.params["prompt"] for job in jobs if job.interrupted_submits}
    assert len(submits) == len(jobs)
    assert doubles <= interrupted, f"paid twice without a recorded interruption: {doubles}"


def test_a_worker_killed_mid_batch_loses_nothing_and_pays_nothing_twice(make_fleet):
    # Given two workers on a batch of 150 jobs
    fleet = make_fleet(sandbox=SLOW_SANDBOX, **RECOVERY)
    victim = fleet.start_worker(concurrency=16)
    fleet.start_worker(concurrency=16)
    ids = fleet.add({"prompt": f"a harbour {n}"} for n in range(150))
    # When one worker is SIGKILLed once a third of the jobs have ended
    wait_until(lambda: fleet.store.state_counts().get("completed", 0) >= 50, "50 done", 60,
               fleet.workers)  # fmt: skip
    victim.kill()
    # Then the other finishes every job, and no prompt was paid twice unnoticed
    jobs = fleet.wait_all(ids, timeout_s=100)
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 150
    assert_paid_once(fleet, jobs)


def test_redis_restarted_mid_batch_with_aof_loses_no_job(make_fleet, tmp_path):
    # Given workers on a Redis of their own that keeps an append-only file
    with start_local_redis(appendonly=True, data_dir=tmp_path) as server:
        fleet = make_fleet(sandbox=SLOW_SANDBOX, on_redis=server.url, **RECOVERY)
        fleet.start_worker(concurrency=16)
        fleet.start_worker(concurrency=16)
        ids = fleet.add({"prompt": f"a glacier {n}"} for n in range(100))
        # When Redis restarts once a fifth of the jobs have ended
        wait_until(lambda: fleet.store.state_counts().get("completed", 0) >= 20, "20 done", 60,
                   fleet.workers)  # fmt: skip
        server.restart()
        # Then every job still completes, each paid once
        jobs = fleet.wait_all(ids, timeout_s=110)
        assert [job.state for job in jobs] == [JobState.COMPLETED] * 100
        assert_paid_once(fleet, jobs)
        fleet.stop()

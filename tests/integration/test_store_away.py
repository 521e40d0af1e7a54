"""Redis away at the one moment it costs money: between Segmind accepting a submit and the job
store recording its request id.

Found by the chaos suite: a Redis restart answers "loading the dataset" for a moment after it
accepts connections again, redis-py does not retry that, and the lost write let a second task
submit the job again once its claim ran out (paid twice).
"""

from __future__ import annotations

import time

import pytest

from shared.job_model import JobState
from shared.local_redis import start_local_redis
from tests.support.fleet import wait_until

pytestmark = pytest.mark.integration

HELD_ANSWERS = {"slow_probability": 1.0, "slow_s": 2.0}
"""Every answer is held back 2 s: Redis refuses writes while submits are upstream."""
HOLD_S = 20.0
"""A held call goes by itself after this (well within the HTTP timeout), were a test to fail
before lifting its hold."""
REDIS_AWAY_S = 6.0
"""Longer than redis-py's own retries last (10 tries, at most about 4 s)."""


def test_a_submit_answered_while_redis_is_away_is_recorded_once_redis_is_back(make_fleet, tmp_path):
    # Given a worker whose three submits Segmind holds (accepted, not yet answered)
    with start_local_redis(appendonly=True, data_dir=tmp_path) as server:
        fleet = make_fleet(on_redis=server.url, SEGQ_LEASE_S="20")
        fleet.start_worker()
        fleet.sandbox.set_faults(hold_s=HOLD_S)
        ids = fleet.add({"prompt": f"a quarry {n}"} for n in range(3))
        wait_until(lambda: fleet.sandbox.truth(with_requests=False)["held"] == 3,
                   "three submits upstream", 30, fleet.workers)  # fmt: skip
        # When Redis is away while the answers come back
        server.stop()
        fleet.sandbox.set_faults(hold_s=None)
        time.sleep(REDIS_AWAY_S)
        server.start()
        # Then every job completes, each submitted once, none counted as interrupted
        jobs = fleet.wait_all(ids, timeout_s=90)
        fleet.stop()
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 3
    assert sorted(fleet.submits_per_request().values()) == [1, 1, 1]
    assert [job.interrupted_submits for job in jobs] == [0, 0, 0]


@pytest.mark.timeout(240)  # its own wait (150 s) must end it first, not the suite's 120 s
def test_workers_outlive_redis_refusing_writes_and_then_finish_every_job(make_fleet):
    # Given a worker of 4 threads, 20 submits in its broker queue, the first held upstream, on a
    # Redis of its own: the tests after it on this xdist worker must not meet its maxmemory
    with start_local_redis() as server:
        fleet = make_fleet(sandbox=HELD_ANSWERS, on_redis=server.url)
        fleet.start_worker(concurrency=4)
        ids = fleet.add({"prompt": f"a full cellar {n}"} for n in range(20))
        wait_until(lambda: fleet.sandbox.truth(with_requests=False)["totals"]["slowed"] >= 2,
                   "submits upstream", 30, fleet.workers)  # fmt: skip
        # When Redis refuses every write for 12 s (maxmemory reached under noeviction), while
        # the next submits start and fail on the job store
        fleet.store.redis.config_set("maxmemory", "1")
        time.sleep(12)
        # Then the worker is still there
        assert all(worker.running() for worker in fleet.workers)
        fleet.store.redis.config_set("maxmemory", "0")
        # And once Redis takes writes again, every job completes, each submitted once
        jobs = fleet.wait_all(ids, timeout_s=150)
        fleet.stop()
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 20
    assert sorted(fleet.submits_per_request().values()) == [1] * 20

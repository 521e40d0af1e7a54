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
from tests.support.fleet import Fleet, wait_until

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
        # Then the worker is still there, and once Redis takes writes again every job
        # completes, each submitted once
        assert_every_job_done_once_writes_are_taken(fleet, ids, "maxmemory", "0")


WRITES_REFUSED = {
    "no replicas": ("min-replicas-to-write", "1", "0"),
    "out of memory": ("maxmemory", "1", "0"),
}
"""How a master comes to refuse writes, as (setting, refusing value, value after): for want of
the replica ``min-replicas-to-write`` asks for (NOREPLICAS: every write, acks too; the guard
against writes a Sentinel failover loses), or full under noeviction (OOM: writes that add,
such as the unacked entry of a message the consumer takes; deletes, acks among them, go on)."""


@pytest.mark.timeout(240)  # its own wait (150 s) must end it first, not the suite's 120 s
@pytest.mark.parametrize("broker_url", ["redis"], indirect=True)  # the broker's Redis refuses
@pytest.mark.parametrize("refusal", list(WRITES_REFUSED))
def test_a_worker_consuming_while_its_broker_refuses_writes_consumes_again_afterwards(
    make_fleet, broker_url, refusal
):
    setting, refusing, taking = WRITES_REFUSED[refusal]
    # Given a worker of 2 threads, on a Redis of its own (broker and job store), whose 20 jobs
    # are upstream for 5 s, with its prefetch full of polls (two held upstream, two waiting)
    with start_local_redis() as server:
        fleet = make_fleet(sandbox={"time_scale": 2.0}, on_redis=server.url, SEGQ_LEASE_S="20")
        fleet.start_worker(concurrency=2)
        ids = fleet.add({"prompt": f"a dry well {n}"} for n in range(20))
        wait_until(lambda: fleet.store.state_counts().get("queued", 0) == 0,
                   "every job submitted", 30, fleet.workers)  # fmt: skip
        fleet.sandbox.set_faults(hold_s=HOLD_S)
        wait_until(lambda: fleet.sandbox.truth(with_requests=False)["held"] == 2
                   and fleet.store.redis.hlen("unacked") == 4,
                   "two polls held and four messages reserved", 30, fleet.workers)  # fmt: skip
        # When Redis refuses writes while those four polls fail on the job store, their acks
        # are sent (refused for want of replicas) and the consumer takes the next messages
        # (their unacked entries refused when Redis is full)
        fleet.store.redis.config_set(setting, refusing)
        fleet.sandbox.set_faults(hold_s=None)
        time.sleep(REDIS_AWAY_S)
        # Then the worker is still there (kombu took either refusal for a fatal error and the
        # worker exited), and once Redis takes writes again it consumes again (refused acks
        # had kept its prefetch full for good): every job completes, each submitted once
        assert_every_job_done_once_writes_are_taken(fleet, ids, setting, taking)


def assert_every_job_done_once_writes_are_taken(
    fleet: Fleet, ids: list[str], setting: str, taking: str
) -> None:
    """The workers outlived Redis refusing writes; then ``setting`` goes back to ``taking``
    and every job completes, each submitted upstream once."""
    assert all(worker.running() for worker in fleet.workers)
    fleet.store.redis.config_set(setting, taking)
    jobs = fleet.wait_all(ids, timeout_s=150)
    fleet.stop()
    assert [job.state for job in jobs] == [JobState.COMPLETED] * len(ids)
    assert sorted(fleet.submits_per_request().values()) == [1] * len(ids)

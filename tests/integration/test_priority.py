"""Interactive priority with real workers, Redis and the sandbox: a user's single job goes ahead
of a 10,000-job bulk backlog while the fleet runs at its rate limit, and bulk keeps a share."""

from __future__ import annotations

import statistics
import time

import pytest

from shared import redis_keys
from tests.support.backlog import (
    INTERACTIVE,
    enqueue_bulk_backlog,
    interactive_latency_s,
    is_bulk,
    submitted_at_of,
    upstream_submits,
    wait_for_bulk_at_the_limit,
)
from tests.support.fleet import wait_until

pytestmark = pytest.mark.integration

RATE_PER_MIN = 600
BACKLOG_JOBS = 10_000
BULK_SHARE_WHEN_BOTH_WAIT = 1 / 4
"""dispatch.lua: every 4th submit slot goes to bulk while interactive jobs wait."""


@pytest.fixture
def fleet_behind_backlog(make_fleet):
    """A fleet at its submit rate limit working through a 10,000-job bulk batch; the batch is
    cancelled at the end so the workers stop at once."""
    # The sandbox refuses more than the account's rate; the fleet knows that rate
    fleet = make_fleet(
        sandbox={"submit_rpm": RATE_PER_MIN}, SEGQ_SUBMIT_RATE_LIMIT=str(RATE_PER_MIN)
    )
    fleet.start_worker(8)
    batch_id = enqueue_bulk_backlog(fleet.store, BACKLOG_JOBS)
    try:
        wait_for_bulk_at_the_limit(fleet, submits=20, timeout_s=30)
        yield fleet
    finally:
        fleet.store.cancel_batch(batch_id)


def submit_rate_per_min(fleet, since: float) -> float:
    """Submits per minute the sandbox accepted since ``since``: the fleet's pace."""
    times = [at for at, _ in upstream_submits(fleet) if at >= since]
    return 60 * len(times) / (time.time() - since)


def assert_never_refused(fleet) -> None:
    assert fleet.sandbox.truth(with_requests=False)["totals"]["rate_limited"]["submit"] == 0


def test_an_interactive_job_reaches_the_upstream_within_2s_behind_a_10000_job_backlog(
    fleet_behind_backlog,
):
    fleet = fleet_behind_backlog
    # When interactive jobs arrive one at a time behind the backlog
    started_at = time.time()
    latencies = []
    for n in range(5):
        latencies.append(interactive_latency_s(fleet, f"interactive {n}", timeout_s=10))
        time.sleep(0.3)
    # Then each reached Segmind within a couple of seconds, long before the backlog could drain
    assert max(latencies) < 2.0, latencies
    assert statistics.median(latencies) < 1.0, latencies
    bulk_submitted = sum(is_bulk(prompt) for _, prompt in upstream_submits(fleet))
    assert bulk_submitted < BACKLOG_JOBS / 10
    # And the fleet was at its rate limit all along, without one 429
    assert submit_rate_per_min(fleet, started_at) > 0.8 * RATE_PER_MIN
    assert_never_refused(fleet)


def test_bulk_keeps_every_fourth_slot_while_interactive_jobs_keep_arriving(fleet_behind_backlog):
    fleet = fleet_behind_backlog
    # When interactive jobs keep arriving faster than the budget admits (20/s against ~10/s)
    prompts = []
    for burst in range(20):
        batch = [f"interactive {burst}.{n}" for n in range(4)]
        fleet.add([{"prompt": p} for p in batch], INTERACTIVE)
        prompts += batch
        time.sleep(0.2)
    arrivals_ended_at = time.time()
    # Then every interactive job gets through
    wait_until(lambda: len(submitted_at_of(fleet, prompts)) == len(prompts),
               "interactive jobs upstream", 30, fleet.workers)  # fmt: skip
    # And while interactive jobs were waiting, bulk still got about every 4th submit
    first_interactive_at = min(submitted_at_of(fleet, prompts).values())
    window = [
        p for at, p in upstream_submits(fleet) if first_interactive_at <= at <= arrivals_ended_at
    ]
    bulk_share = sum(is_bulk(p) for p in window) / len(window)
    assert len(window) >= 20, window
    assert bulk_share == pytest.approx(BULK_SHARE_WHEN_BOTH_WAIT, abs=0.08), window
    assert_never_refused(fleet)


def test_an_interactive_job_skips_a_broker_window_full_of_bulk_submits(make_fleet):
    # Given no known rate limit and submits Segmind answers in 0.5 s: the dispatcher fills the
    # broker window (500) with bulk submits, half a minute of work for 8 threads
    fleet = make_fleet(sandbox={"slow_probability": 1.0, "slow_s": 0.5})
    fleet.start_worker(8)
    batch_id = enqueue_bulk_backlog(fleet.store, 3000)
    try:
        wait_until(lambda: fleet.store.redis.zcard(redis_keys.DISPATCHED) >= 400,
                   "a window of bulk submits", 30, fleet.workers)  # fmt: skip
        # When a person's job is enqueued
        latency_s = interactive_latency_s(fleet, "a portrait, now", timeout_s=90)
    finally:
        fleet.store.cancel_batch(batch_id)
    # Then it reaches Segmind in seconds, from a queue of its own, not after the window's
    assert latency_s < 10, f"{latency_s:.1f} s"

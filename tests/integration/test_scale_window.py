"""The broker holds a window, not the batch: real workers, a real Redis job store, the broker of
the run (the same Redis, or a RabbitMQ virtual host) and the sandbox over sockets (issue 9).

What the broker holds that no worker has taken yet is each queue's message count
(``BrokerQueues``), sampled every few milliseconds while a batch runs, next to the window in use
(the job store's dispatched set). On RabbitMQ the workers' prefetch takes a small window at once,
so its queues mostly read 0 while the dispatched set shows the window full.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from shared import redis_keys
from shared.job_model import JobState
from shared.job_store import JobOptions, JobStore, NewJob, batch_job_id
from tests.support.brokers import BrokerQueues
from tests.support.fleet import Fleet
from workers.celery_app import POLL_QUEUE, SUBMIT_QUEUE

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = 20
BROKER_QUEUES = (SUBMIT_QUEUE, POLL_QUEUE)
SAMPLE_EVERY_S = 0.005
DISPATCHED = "dispatched"


def enqueue_batch(store: JobStore, batch_id: str, lines: int) -> list[str]:
    """A batch of ``lines`` distinct prompts, as `segq batch` would add them; returns the ids."""
    store.open_batch(batch_id, defaults={"width": 512, "height": 512}, options=JobOptions(),
                     source=f"{batch_id}.txt")  # fmt: skip
    jobs = [NewJob(batch_job_id(batch_id, n), {"prompt": f"{batch_id} {n}"}, n)
            for n in range(1, lines + 1)]  # fmt: skip
    store.add_jobs(jobs, batch_id=batch_id, options=JobOptions())
    return [job.job_id for job in jobs]


@pytest.fixture
def broker_queues(broker_url: str | None, redis_url: str) -> Iterator[BrokerQueues]:
    """Counts what the broker of this run holds: the test's Redis, or its RabbitMQ vhost."""
    queues = BrokerQueues(broker_url or redis_url)
    yield queues
    queues.close()


def watch_broker_until_done(
    fleet: Fleet, broker: BrokerQueues, batch_id: str, timeout_s: float
) -> tuple[dict[str, int], int]:
    """The longest each broker queue (and the dispatched set) got while the batch ran, and how
    many samples were taken."""
    store = fleet.store
    peaks = dict.fromkeys([*BROKER_QUEUES, DISPATCHED], 0)
    samples = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lengths = broker.lengths(BROKER_QUEUES)
        lengths[DISPATCHED] = store.redis.zcard(redis_keys.DISPATCHED)
        for queue, length in lengths.items():
            peaks[queue] = max(peaks[queue], length)
        samples += 1
        if samples % 20 == 0 and store.get_batch(batch_id).is_terminal:
            return peaks, samples
        time.sleep(SAMPLE_EVERY_S)
    summary = store.get_batch(batch_id)
    pytest.fail(f"batch {batch_id} not done within {timeout_s}s: {summary.counts}")


def test_the_broker_never_holds_more_than_the_window_and_every_job_still_runs(
    make_fleet, broker_queues
):
    # Given a window of 20, workers, and a sandbox where 300 jobs take about 10 s on 8 GPUs
    fleet = make_fleet(SEGQ_BROKER_WINDOW=str(WINDOW))
    fleet.start_worker(concurrency=8)
    fleet.start_worker(concurrency=8)
    # When a batch of 300 jobs is enqueued at once
    ids = enqueue_batch(fleet.store, "wide", 300)
    peaks, samples = watch_broker_until_done(fleet, broker_queues, "wide", timeout_s=100)
    # Then the broker held no more than the window of submits or polls at any sample
    assert samples > 200
    assert all(peak <= WINDOW for peak in peaks.values()), peaks
    assert peaks[DISPATCHED] == WINDOW  # the sampler did see the window full
    # And every job ran, once
    jobs = fleet.wait_all(ids, timeout_s=10)
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 300
    assert sorted(fleet.submits_per_request().values()) == [1] * 300
    assert fleet.store.redis.zcard(redis_keys.DISPATCHED) == 0


def test_cancelling_a_queued_batch_empties_the_window_and_ends_every_job_cancelled(
    make_fleet, broker_queues
):
    # Given a window of 20 filled by a big batch that the sandbox answers slowly (each submit
    # is held 3 s), two worker threads each stuck in one submit
    fleet = make_fleet(sandbox={"slow_probability": 1.0, "slow_s": 3.0},
                       SEGQ_BROKER_WINDOW=str(WINDOW))  # fmt: skip
    concurrency = 2
    fleet.start_worker(concurrency=concurrency)
    ids = enqueue_batch(fleet.store, "huge", 500)
    store, client = fleet.store, fleet.store.redis

    def window_full() -> bool:
        return client.zcard(redis_keys.DISPATCHED) == WINDOW

    _wait_for(window_full, "the window filled", timeout_s=30)
    # When the batch is cancelled
    started = time.perf_counter()
    summary = store.cancel_batch("huge")
    cancel_s = time.perf_counter() - started
    # Then at once: nothing of it is left to dispatch, the window is empty, the counters agree
    assert cancel_s < 1.0
    assert client.zcard(redis_keys.DISPATCHED) == 0
    assert not client.exists(redis_keys.bulk_lane("huge"))
    assert summary.counts[JobState.QUEUED.value] == 0
    assert summary.counts[JobState.CANCELLED.value] == 500
    # And a job enqueued after it runs as soon as the upstream answers again, past the
    # cancelled batch's messages still in the broker (they are skipped, not submitted)
    fleet.sandbox.set_faults(slow_probability=0.0)
    [after] = fleet.add([{"prompt": "after the cancel"}])
    assert fleet.wait_all([after], timeout_s=30)[0].state is JobState.COMPLETED
    # And every job of the batch ends cancelled; only the submits already under way reached
    # Segmind, and the broker drains
    jobs = fleet.wait_all(ids, timeout_s=30)
    assert {job.state for job in jobs} == {JobState.CANCELLED}
    submitted = fleet.submits_per_request()
    assert sum(count for prompt, count in submitted.items() if prompt.startswith("huge")) <= (
        concurrency
    )
    _wait_for(lambda: sum(broker_queues.lengths(BROKER_QUEUES).values()) == 0, "the broker drained",
              30)  # fmt: skip
    assert store.get_batch("huge").finished_at is not None


def _wait_for(check, what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s}s")
        time.sleep(0.02)

"""The dispatcher thread against a real Redis: besides its steps, it gives back the next poll
of in-flight jobs that lost it (segq:due evicted), as it starts and every REPAIR_EVERY_S."""

from __future__ import annotations

import threading

import pytest
import redis

from shared import redis_keys
from shared.dispatch_queue import DispatchPlan, DispatchQueue
from shared.job_store import JobOptions, JobStore, NewJob, batch_job_id
from shared.settings import load_settings
from workers import dispatcher as dispatcher_module
from workers.dispatcher import Dispatcher

SEEN_WAIT_S = 10.0


@pytest.fixture
def queue(redis_url: str):
    settings = load_settings({"SEGQ_REDIS_URL": redis_url, "SEGMIND_API_KEY": "test-key"})
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield DispatchQueue(JobStore(client, retention_s=3600), settings)
    client.close()


def in_flight_without_a_next_poll(queue: DispatchQueue, lines: int) -> list[str]:
    """Jobs accepted upstream whose segq:due entries were evicted."""
    store = queue.store
    store.open_batch("b", defaults={}, options=JobOptions(), source=None)
    jobs = [NewJob(batch_job_id("b", n), {"prompt": f"p{n}"}, n) for n in range(1, lines + 1)]
    store.add_jobs(jobs, batch_id="b", options=JobOptions())
    for job_id in queue.dispatch().submits:
        assert queue.begin_submit(job_id).outcome == "go"
        queue.record_submitted(job_id, f"req-{job_id}", 3600.0)
    store.redis.delete(redis_keys.DUE)
    return [job.job_id for job in jobs]


def test_a_dispatcher_polls_in_flight_jobs_whose_due_entries_were_evicted(queue, monkeypatch):
    monkeypatch.setattr(dispatcher_module, "REPAIR_EVERY_S", 0.5)
    job_ids = in_flight_without_a_next_poll(queue, 3)
    polled: list[str] = []
    seen = threading.Event()

    def publish(plan: DispatchPlan) -> None:
        polled.extend(job_id for job_id, _ in plan.polls)
        if len(polled) >= len(job_ids):
            seen.set()

    dispatcher = Dispatcher(queue, publish, idle_s=0.05)
    dispatcher.start()
    try:
        # As it starts: the evicted entries are put back and polled
        assert seen.wait(SEEN_WAIT_S) and sorted(polled) == job_ids
        # And later again: a second eviction is repaired by the next pass
        seen.clear()
        polled.clear()
        queue.store.redis.delete(redis_keys.DUE, redis_keys.POLLING)
        assert seen.wait(SEEN_WAIT_S) and sorted(polled) == job_ids
    finally:
        dispatcher.stop()

"""RabbitMQ drops every connection mid-batch (as a broker restart or a network cut does): real
workers reconnect, and the batch ends with nothing lost and nothing paid twice.

Only the test's own virtual host loses its connections (``rabbitmqctl close_all_connections
--vhost``), so runs sharing the RabbitMQ server do not feel it. Ground truth is the sandbox's
ledger of submits per prompt, as in ``test_recovery.py``.
"""

from __future__ import annotations

import pytest

from shared.job_model import JobState
from tests.integration.test_recovery import RECOVERY, SLOW_SANDBOX, assert_paid_once
from tests.support.brokers import close_rabbitmq_connections, rabbitmq_consumers
from tests.support.fleet import Process, wait_until
from workers.celery_app import ALL_QUEUES

pytestmark = [
    pytest.mark.integration,
    pytest.mark.parametrize("broker_url", ["rabbitmq"], indirect=True),
    pytest.mark.timeout(300),
]

JOBS = 150
WORKERS = 2
CUTS_AT_COMPLETED = (30, 60)
"""The broker cuts every connection twice, once 30 and once 60 jobs have completed."""
LATER_JOBS = 40
"""Enqueued once both workers are back after the last cut, so each has work to take then: the
batch's own jobs may all be done by the time a loaded machine's rabbitmqctl acts (4 runs
side by side finished all 150 before their last cut was over)."""
SOMETIMES_SLOW = {**SLOW_SANDBOX, "slow_probability": 0.2, "slow_s": 1.5}
"""One upstream call in five takes 1.5 s, so tasks are running when the connections go (the
case that once took a worker down), yet every answer comes well within the 5 s lease."""


def tasks_received(worker: Process) -> int:
    """Task messages the worker's consumer took (a stalled one takes none; a task it took
    before a cut may still succeed after it, so successes would not tell)."""
    return worker.output(tail=10_000_000).count("] received")


def every_queue_consumed(broker_url: str) -> bool:
    consumers = rabbitmq_consumers(broker_url)
    return all(consumers.get(queue, 0) == WORKERS for queue in ALL_QUEUES)


def test_workers_reconnect_after_rabbitmq_drops_every_connection_and_lose_nothing(
    make_fleet, broker_url
):
    # Given two workers on RabbitMQ working through a batch of 150 jobs (about 1 s each upstream,
    # some calls slow)
    fleet = make_fleet(sandbox=SOMETIMES_SLOW, **RECOVERY)
    for _ in range(WORKERS):
        fleet.start_worker(concurrency=16)
    ids = fleet.add({"prompt": f"a tide pool {n}"} for n in range(JOBS))
    for completed in CUTS_AT_COMPLETED:
        # When RabbitMQ closes every connection of the host while jobs are under way
        wait_until(lambda n=completed: fleet.store.state_counts().get("completed", 0) >= n,
                   f"{completed} done", 90, fleet.workers)  # fmt: skip
        close_rabbitmq_connections(broker_url, "segq broker restart test")
        # Then both workers come back and consume every queue again
        wait_until(lambda: every_queue_consumed(broker_url), "workers reconnected", 60,
                   fleet.workers)  # fmt: skip
    # And each keeps taking tasks after the last cut (a worker whose consumer stalled after
    # reconnecting once went unnoticed): the jobs enqueued now reach both
    received_before = [tasks_received(worker) for worker in fleet.workers]
    ids += fleet.add({"prompt": f"a tide pool later {n}"} for n in range(LATER_JOBS))
    # And every job completes, none submitted twice unless the store recorded the interruption
    jobs = fleet.wait_all(ids, timeout_s=120)
    assert [job.state for job in jobs] == [JobState.COMPLETED] * (JOBS + LATER_JOBS)
    assert_paid_once(fleet, jobs)
    # And the workers survived it (a reconnect, not a restart)
    assert all(worker.running() for worker in fleet.workers)
    received_after = [tasks_received(worker) for worker in fleet.workers]
    grew = zip(received_after, received_before, strict=True)
    assert all(after > before for after, before in grew), (received_before, received_after)

"""A callback the broker refuses is a failed try like any other: recorded, tried again later."""

from __future__ import annotations

import random
from types import SimpleNamespace

from amqp.exceptions import PreconditionFailed

from shared.job_model import Job, JobState
from workers.notifications import deliver_notifications

REFUSAL = "Queue.declare: (406) PRECONDITION_FAILED - inequivalent arg 'x-queue-type'"


def test_a_callback_whose_queue_rabbitmq_refuses_to_declare_is_a_recorded_failed_try():
    # Given an app whose `celery` queue is a quorum queue: Celery's classic declare is refused
    job = Job(job_id="j1", state=JobState.COMPLETED, created_at=1.0, finished_at=2.0)
    deliveries: list[dict] = []
    settled: list[tuple] = []
    store = SimpleNamespace(
        get_job=lambda _: job,
        notification_targets=lambda _: ("app.image_ready", None),
        record_delivery=lambda _, delivery: deliveries.append(delivery),
    )
    queue = SimpleNamespace(settle_notice=lambda *args: settled.append(args))
    rt = SimpleNamespace(store=store, queue=queue, rng=random.Random(7),
                         settings=SimpleNamespace(webhook_max_attempts=6))  # fmt: skip

    def send_task(*_: object, **__: object) -> None:
        raise PreconditionFailed(REFUSAL)

    # When the notify task runs, then the refusal is a try on the record, and the notice is
    # put back with a backoff (it used to escape the task: republished every lease, unrecorded)
    deliver_notifications(rt, "j1", send_task)  # type: ignore[arg-type]
    [delivery] = deliveries
    assert delivery["ok"] is False and "PRECONDITION_FAILED" in delivery["detail"]
    [(job_id, told, again_in_s)] = settled
    assert (job_id, told) == ("j1", 2.0) and again_in_s > 0

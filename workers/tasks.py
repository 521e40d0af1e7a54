"""segq's Celery tasks. Messages carry job ids (and a poll token), never prompts or keys."""

from __future__ import annotations

import logging

from shared.dispatch_queue import DispatchPlan
from workers.celery_app import INTERACTIVE_SUBMIT_QUEUE, SUBMIT_QUEUE, app
from workers.draining import is_draining
from workers.job_steps import poll_job, submit_job
from workers.notifications import deliver_notifications
from workers.runtime import runtime

log = logging.getLogger("segq.jobs")


@app.task(name="segq.submit", ignore_result=True)
def submit(job_id: str) -> None:
    """Submits a job to Segmind once (the job store's claim makes a redelivery harmless)."""
    if is_draining():
        hand_back(job_id)
    else:
        submit_job(runtime(), job_id)


@app.task(name="segq.poll", ignore_result=True)
def poll(job_id: str, token: str) -> None:
    """Asks Segmind about a job once; only the holder of the job's current token does."""
    if is_draining():
        hand_back(job_id, token)
    else:
        poll_job(runtime(), job_id, token)


def hand_back(job_id: str, token: str = "") -> None:
    """The worker is draining (``workers.draining``): the job goes back unstarted."""
    if runtime().queue.hand_back(job_id, token):
        log.info("job %s: worker shutting down, %s handed back unstarted",
                 job_id, "poll" if token else "submit")  # fmt: skip


@app.task(name="segq.notify", ignore_result=True)
def notify(job_id: str) -> None:
    """Tells a job's callback task and webhook that it ended. Targets that fail are tried again
    with backoff, not by a countdown message but by the job store's ``segq:notify`` schedule,
    which also survives this worker dying mid-delivery."""
    if is_draining():  # due again at once, for a worker that is not stopping
        runtime().queue.notice_later(job_id, 0.0)
    else:
        deliver_notifications(runtime(), job_id, app.send_task)


def publish_plan(plan: DispatchPlan) -> None:
    """Publishes one dispatcher step's tasks; a failed publish is covered by the job's lease.

    One batch per step (kombu 5.7: a single pipelined round trip on Redis; immediate publishes
    on RabbitMQ): publishing one by one made the dispatcher thread the pipeline's bottleneck,
    each ``apply_async`` a round trip of its own while 30 task threads compete for the GIL."""
    with app.producer_or_acquire() as producer, producer.batch():
        for job_id in plan.submits:
            queue = INTERACTIVE_SUBMIT_QUEUE if job_id in plan.interactive else SUBMIT_QUEUE
            submit.apply_async((job_id,), producer=producer, queue=queue)
        for job_id, token in plan.polls:
            poll.apply_async((job_id, token), producer=producer)
        for job_id in plan.notices:
            notify.apply_async((job_id,), producer=producer)

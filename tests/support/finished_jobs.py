"""Jobs taken through every step a worker takes, without a worker or an upstream: for tests and
benchmarks that need many finished jobs quickly (memory per job, retention).

Each job is claimed, submitted (a request id recorded), polled once while PROCESSING and once
more to its end, through the same ``DispatchQueue`` calls the tasks make, so its record holds
what a real finished job holds: Segmind-shaped outputs and metrics, or an upstream failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from shared.dispatch_queue import DispatchQueue
from shared.job_model import JobFailure, JobState

OUTPUT_URL = "https://segmind-sd-models.s3.amazonaws.com/outputs/{request_id}.jpeg"
METRICS = {"inference_time": 2.41, "queue_time": 0.12, "total_time": 2.53}
FAILURE = JobFailure(
    kind="inference_failed",
    http_status=422,
    detail="NSFW content detected. Try running it again, or try a different prompt.",
)
STEP_ITEMS = 1000


def run_dispatched_jobs(
    queue: DispatchQueue, expected: int, fails: Callable[[str], bool] = lambda _: False
) -> int:
    """Dispatches and runs jobs until ``expected`` of them ended; returns how many ended.

    Every poll is due at once, so a step that hands out nothing means nothing is left to run:
    the loop stops there (or after ``expected`` steps) even if fewer ended, and the caller's
    assertion says so."""
    ended = 0
    for _ in range(expected + 3):
        plan = queue.dispatch(max_items=STEP_ITEMS)
        if not (plan.submits or plan.polls):
            break
        for job_id in plan.submits:
            if queue.begin_submit(job_id).outcome == "go":
                queue.record_submitted(job_id, str(uuid.uuid4()), 0.0)
        for job_id, token in plan.polls:
            ticket = queue.begin_poll(job_id, token)
            if ticket is None:
                continue
            if ticket.polls == 1:
                queue.record_progress(job_id, token, "PROCESSING", 0.0)
            else:
                ended += _finish(queue, job_id, ticket.request_id, fails(job_id))
        if ended >= expected:
            break
    return ended


def _finish(queue: DispatchQueue, job_id: str, request_id: str, failed: bool) -> int:
    if failed:
        ending = queue.finish(job_id, JobState.FAILED, metrics=METRICS, failure=FAILURE)
    else:
        outputs = [OUTPUT_URL.format(request_id=request_id)]
        ending = queue.finish(job_id, JobState.COMPLETED, outputs=outputs, metrics=METRICS)
    return int(ending.ended)

"""What a job's transitions leave behind: one log line each, and the fleet's job metrics.

Operators grep one line per transition (submitted, running, completed, failed, cancelled) with
the job id, Segmind's request id, the state and how long it took (``log_job_transition``), and
scrape the numbers ``segq metrics`` serves (``shared.metrics``). Timings come from the job
record's own timestamps (the Redis server's clock), so they are the same whichever worker
logs them; the script that recorded the transition returns them (``Submitted``, ``Ending``),
so no line costs a read of its own. A lost metric sample never fails the job.
"""

from __future__ import annotations

import logging

from shared.dispatch_queue import Ending, Submitted
from shared.job_model import JobFailure, JobState
from shared.logging_setup import log_job_transition
from shared.metrics import FleetMetrics

log = logging.getLogger("segq.jobs")


def submitted(job_id: str, request_id: str, stored: Submitted, prompt: str | None) -> None:
    """The submit was accepted (state submitted), or the job was cancelled meanwhile.

    Timing: seconds the job waited from being accepted by segq to being accepted upstream."""
    log_job_transition(log, job_id=job_id, request_id=request_id, state=stored.state.value,
                       elapsed_s=stored.waited_s, prompt=prompt)  # fmt: skip


def running(job_id: str, request_id: str, since_submit_s: float) -> None:
    """Segmind started the job (its status turned PROCESSING)."""
    log_job_transition(log, job_id=job_id, request_id=request_id, state=JobState.RUNNING.value,
                       elapsed_s=since_submit_s)  # fmt: skip


def ended(
    metrics: FleetMetrics,
    job_id: str,
    state: JobState,
    ending: Ending,
    *,
    failure: JobFailure | None = None,
    inference_s: float | None = None,
) -> None:
    """The job ended (this worker's call ended it): its line, and its end-to-end time, polls
    and Segmind's inference time in the fleet's histograms (buffered by ``FleetMetrics``)."""
    detail = f"{failure.kind}: {failure.detail}" if failure else None
    log_job_transition(log, job_id=job_id, request_id=ending.request_id, state=state.value,
                       elapsed_s=ending.e2e_s, detail=detail)  # fmt: skip
    if ending.e2e_s is not None:
        metrics.end_to_end_seconds(ending.e2e_s)
    if ending.request_id:
        metrics.polls_per_job(ending.polls)
    if inference_s is not None:
        metrics.inference_seconds(inference_s)

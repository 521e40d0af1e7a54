"""The two steps of a job's run upstream: submit it once, poll it until it ends.

Each step is one task run; neither sleeps waiting on Segmind: between polls the job waits in
the job store (``segq:due``), holding no worker slot. Tasks branch on the error tree's classes:
transient -> retry with backoff, 429 -> the fleet holds off and the job keeps its place,
account -> the fleet pauses and the job stays queued, job-level -> the job fails with the
upstream's own detail.
"""

from __future__ import annotations

import logging
import time

from pydantic import ValidationError

from shared.dispatch_queue import PollHold, PollTicket, Submitted
from shared.errors import (
    AccountError,
    AnswerLost,
    JobRejected,
    RateLimited,
    StoreError,
    TransientError,
)
from shared.job_model import JobFailure, JobState
from shared.request_model import GenerationRequest
from shared.upstream_answers import ResultAnswer
from shared.upstream_timing import compute_backoff_s
from workers import job_events
from workers.outputs import collect_outputs
from workers.runtime import Runtime

log = logging.getLogger("segq.jobs")

BACKOFF_BASE_S = 1.0
SUBMIT_BACKOFF_CAP_S = 60.0
"""A poll's backoff is capped by ``SEGQ_POLL_MAX_INTERVAL_S`` instead: a job Segmind accepted
is polled through an outage, and should be seen soon after it ends."""
RECORD_RETRY_PAUSE_S = 0.5
"""Between two tries to store a submit's request id while Redis is away."""
MAX_INLINE_WAIT_S = 2.0
"""A result fetch waits this long at most for a poll slot inside the task; longer, and the
job goes back to the job store to be polled again when the budget allows."""


def submit_job(rt: Runtime, job_id: str) -> bool:
    """Submits a claimed job once; True if it reached Segmind's queue (a poll must follow)."""
    claim_ends_at = time.monotonic() + rt.settings.lease_s  # taken before the claim: no later
    claim = rt.queue.begin_submit(job_id)
    if claim.outcome == "hold":
        rt.metrics.budget_wait("submit", claim.wait_s)
    if claim.outcome != "go":
        log.debug("job %s: submit skipped (%s)", job_id, claim.outcome)
        return False
    try:
        request = GenerationRequest.model_validate(claim.params)
    except ValidationError as exc:
        failure = JobFailure(kind="invalid_params", detail=str(exc))
        rt.queue.finish(job_id, JobState.FAILED, failure=failure)
        return False
    try:
        accepted = rt.client.submit(request.upstream_body())
    except RateLimited as exc:
        hold_s = rt.limiter.rate_limited("submit", exc.retry_after_s)
        rt.metrics.rate_limited("submit")
        rt.queue.requeue_front(job_id)
        log.info("job %s: rate limited on submit; fleet holds %.1fs", job_id, hold_s)
        return False
    except AccountError as exc:
        rt.queue.pause_fleet(f"{exc.http_status}: {exc.detail}")
        rt.queue.requeue_front(job_id)
        log.warning("job %s: account error, fleet paused: %s", job_id, exc.detail)
        return False
    except JobRejected as exc:  # a FAILED answer may say how long the model ran: kept, as a poll's
        _fail(rt, job_id, JobFailure.from_error(exc), exc.metrics)
        return False
    except TransientError as exc:
        _retry(rt, job_id, claim.attempts, exc, SUBMIT_BACKOFF_CAP_S)
        return False
    first_poll_in_s = _next_poll_in(rt, elapsed_s=0.0, polls=0)
    stored = _record_submitted(rt, job_id, accepted.request_id, first_poll_in_s, claim_ends_at)
    job_events.submitted(job_id, accepted.request_id, stored, request.prompt)
    return stored.state is JobState.SUBMITTED


def _record_submitted(
    rt: Runtime, job_id: str, request_id: str, first_poll_in_s: float, claim_ends_at: float
) -> Submitted:
    """Stores the request id Segmind just issued, trying again while the store is briefly away.

    Segmind has accepted this submit and will bill it: if the write is lost, the job's claim
    runs out and another task submits it again (counted in ``interrupted_submits``). A Redis
    restart or failover refuses connections, then answers "loading the dataset" for a while,
    longer than redis-py's own retries last; so this one write keeps trying for as long as the
    claim protects the job (``lease_s`` from the claim, not from Segmind's answer: past the
    claim, another task may submit the job again, and this write would overwrite its request
    id). The write is idempotent, so a retry after a reply that was lost on the way does no
    harm."""
    while True:
        try:
            return rt.queue.record_submitted(job_id, request_id, first_poll_in_s)
        except StoreError as exc:
            if time.monotonic() + RECORD_RETRY_PAUSE_S >= claim_ends_at:
                raise
            log.warning("job %s: request_id=%s not stored yet (%s); trying again",
                        job_id, request_id, exc)  # fmt: skip
            time.sleep(RECORD_RETRY_PAUSE_S)


def poll_job(rt: Runtime, job_id: str, token: str) -> None:
    """Asks Segmind about a job once; stores the outcome, or when to ask again."""
    ticket = rt.queue.begin_poll(job_id, token)
    if isinstance(ticket, PollHold):
        rt.metrics.budget_wait("poll", ticket.wait_s)
        return
    if ticket is None:
        return
    try:
        status = rt.client.status(ticket.request_id)
        if status.status in ("QUEUED", "PROCESSING"):
            _note_progress(rt, job_id, token, ticket, status.status)
            return
        wait_s = rt.limiter.take_slot("poll")
        if wait_s > 0:
            rt.metrics.budget_wait("poll", wait_s)
        if wait_s > MAX_INLINE_WAIT_S:
            rt.queue.defer(job_id, wait_s)
            return
        time.sleep(wait_s)
        _complete(rt, job_id, rt.client.result(ticket.request_id), ticket.elapsed_s)
    except RateLimited as exc:
        rt.metrics.rate_limited("poll")
        rt.queue.defer(job_id, rt.limiter.rate_limited("poll", exc.retry_after_s))
    except AccountError as exc:
        rt.queue.pause_fleet(f"{exc.http_status}: {exc.detail}")
        rt.queue.defer(job_id, rt.settings.account_pause_seconds)
    except JobRejected as exc:
        _fail(rt, job_id, JobFailure.from_error(exc), exc.metrics)
    except TransientError as exc:
        _retry(rt, job_id, ticket.attempts, exc, rt.settings.poll_max_interval_s)


def _note_progress(
    rt: Runtime, job_id: str, token: str, ticket: PollTicket, upstream_status: str
) -> None:
    """Still QUEUED or PROCESSING upstream: when to ask again; a line when it started running."""
    next_in = _next_poll_in(rt, ticket.elapsed_s, ticket.polls)
    state = rt.queue.record_progress(job_id, token, upstream_status, next_in)
    if ticket.state is JobState.SUBMITTED and state == JobState.RUNNING.value:
        job_events.running(job_id, ticket.request_id, ticket.elapsed_s)


def _complete(rt: Runtime, job_id: str, result: ResultAnswer, elapsed_s: float) -> None:
    outputs = collect_outputs(rt, job_id, result)
    ending = rt.queue.finish(
        job_id, JobState.COMPLETED, outputs=outputs, metrics=dict(result.metrics)
    )
    if not ending.ended:
        return
    rt.durations.observe(_upstream_seconds(result.metrics, elapsed_s))
    job_events.ended(rt.metrics, job_id, JobState.COMPLETED, ending,
                     inference_s=result.metrics.get("inference_time"))  # fmt: skip


def _fail(rt: Runtime, job_id: str, failure: JobFailure, metrics: dict | None = None) -> None:
    ending = rt.queue.finish(job_id, JobState.FAILED, failure=failure, metrics=metrics)
    if ending.ended:
        job_events.ended(rt.metrics, job_id, JobState.FAILED, ending, failure=failure)


def _retry(rt: Runtime, job_id: str, attempts: int, exc: TransientError, cap_s: float) -> None:
    delay_s = compute_backoff_s(attempts + 1, BACKOFF_BASE_S, cap_s, rt.rng)
    retried = rt.queue.retry_later(job_id, delay_s, JobFailure.from_error(exc),
                                   answer_lost=isinstance(exc, AnswerLost))  # fmt: skip
    if retried.fleet_paused:
        log.warning("Segmind looks down (%s): the fleet holds new submits and probes it",
                    exc)  # fmt: skip
    if retried.exhausted is not None:
        job_events.ended(rt.metrics, job_id, JobState.FAILED, retried.ending,
                         failure=retried.exhausted)  # fmt: skip
    elif retried.back_in_lane:
        log.info("job %s: transient %s; submits paused, back in its lane", job_id, exc)
    else:
        log.info("job %s: transient %s; retry in %.1fs", job_id, exc, delay_s)


def _next_poll_in(rt: Runtime, elapsed_s: float, polls: int) -> float:
    return rt.durations.next_poll_delay_s(
        elapsed_s, polls, min_s=0.1, max_s=rt.settings.poll_max_interval_s
    )


def _upstream_seconds(metrics: dict[str, float], elapsed_s: float) -> float:
    """How long the job took upstream: Segmind's own total when it says, else what we saw."""
    if "total_time" in metrics:
        return float(metrics["total_time"])
    return float(metrics.get("queue_time", 0.0)) + float(metrics.get("inference_time", elapsed_s))

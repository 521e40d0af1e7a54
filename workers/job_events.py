"""What a job's transitions leave behind: one log line each, and the fleet's job metrics.

Operators grep one line per transition (submitted, running, completed, failed, cancelled) with
the job id, Segmind's request id, the state and how long it took (``log_job_transition``), and
scrape the numbers ``segq metrics`` serves (``shared.metrics``). Timings come from the job
record's own timestamps (the Redis server's clock), so they are the same whichever worker
logs them. A lost metric sample or an unreadable record never fails the job: this runs after
the job store has recorded the transition.
"""

from __future__ import annotations

import logging

import redis

from shared import redis_keys
from shared.job_model import JobFailure, JobState
from shared.logging_setup import log_job_transition
from shared.metrics import FleetMetrics

log = logging.getLogger("segq.jobs")

_TIMES = ("created_at", "submitted_at", "finished_at", "request_id", "polls")


def submitted(
    client: redis.Redis, job_id: str, request_id: str, state: JobState, prompt: str | None
) -> None:
    """The submit was accepted (``state`` submitted), or the job was cancelled meanwhile.

    Timing: seconds the job waited from being accepted by segq to being accepted upstream."""
    record = _times(client, job_id)
    waited_s = _between(record, "created_at", "submitted_at")
    log_job_transition(log, job_id=job_id, request_id=request_id, state=state.value,
                       elapsed_s=waited_s, prompt=prompt)  # fmt: skip


def running(job_id: str, request_id: str, since_submit_s: float) -> None:
    """Segmind started the job (its status turned PROCESSING)."""
    log_job_transition(log, job_id=job_id, request_id=request_id, state=JobState.RUNNING.value,
                       elapsed_s=since_submit_s)  # fmt: skip


def ended(
    client: redis.Redis,
    metrics: FleetMetrics,
    job_id: str,
    state: JobState,
    *,
    failure: JobFailure | None = None,
    inference_s: float | None = None,
) -> None:
    """The job ended (this worker's call ended it): its line, and its end-to-end time, polls
    and Segmind's inference time in the fleet's histograms (one round trip for all three)."""
    record = _times(client, job_id)
    e2e_s = _between(record, "created_at", "finished_at")
    detail = f"{failure.kind}: {failure.detail}" if failure else None
    log_job_transition(log, job_id=job_id, request_id=record.get("request_id"),
                       state=state.value, elapsed_s=e2e_s, detail=detail)  # fmt: skip
    pipe = client.pipeline(transaction=False)
    if e2e_s is not None:
        metrics.end_to_end_seconds(e2e_s, pipe)
    if record.get("request_id"):
        metrics.polls_per_job(int(record.get("polls") or 0), pipe)
    if inference_s is not None:
        metrics.inference_seconds(inference_s, pipe)
    try:
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("job %s: metrics sample lost: %s", job_id, exc)


def _times(client: redis.Redis, job_id: str) -> dict[str, str]:
    try:
        values = client.hmget(redis_keys.job(job_id), _TIMES)
    except redis.RedisError as exc:
        log.warning("job %s: record unreadable for its log line: %s", job_id, exc)
        return {}
    return {
        name: value.decode() if isinstance(value, bytes) else value
        for name, value in zip(_TIMES, values, strict=True)
        if value is not None
    }


def _between(record: dict[str, str], start: str, end: str) -> float | None:
    if start not in record or end not in record:
        return None
    return max(0.0, float(record[end]) - float(record[start]))

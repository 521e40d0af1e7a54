"""The job store as producers and readers see it: jobs and batches in Redis.

Creating, reading, cancelling and retrying jobs, batch summaries from counters (never a scan of
jobs), waiting on a job without polling, and pausing the fleet. Every multi-key change is one
Lua script (``shared/lua/``), so a crash never leaves half a change. The workers' side of the
same records is ``shared.dispatch_queue``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

import redis
from pydantic import BaseModel

from shared import redis_keys
from shared.errors import InputError, JobNotFound, StoreError
from shared.fleet_state import FleetState, Resumed, decode_fleet_state, decode_resumed
from shared.job_codec import compact_json, decode_job
from shared.job_model import TERMINAL_STATES, Job, JobState
from shared.lua_scripts import Scripts
from shared.redis_connection import redis_client
from shared.settings import Settings

SCRIPT_CHUNK = 200
"""Jobs per add_jobs script call: long enough to amortise the call, short enough that Redis
never blocks other clients for more than a millisecond or so."""
READ_CHUNK = 500
EXPIRED_IN_QUEUE = "expired_in_queue"
"""The failure kind a batch counts for a job whose record expired before a worker took it
(``end_expired_queued`` in ``shared/lua/job.lua``)."""
BATCH_CANCELLED = "batch_cancelled"
"""``retry_job.lua``'s answer for a failed job of a cancelled batch, which does not run again."""
EVENTS_DRAINED = 10_000
"""Most end events taken off a batch subscription before the batch is read again."""


@dataclass(frozen=True)
class NewJob:
    """A job to create: its id, the parameters it does not share with its batch, its line."""

    job_id: str
    params: dict[str, Any]
    line: int | None = None


class Added(IntEnum):
    """What ``add_jobs`` did with one job (the add_jobs script's reply)."""

    EXISTED = 0
    """Already there with the same parameters: a re-run, which idempotency makes harmless."""
    CREATED = 1
    DIFFERS = 2
    """Already there with other parameters, left as it was: a job's id is its line (or its
    idempotency key), so a moved or edited line cannot replace the job that holds that id."""


@dataclass(frozen=True)
class JobOptions:
    """How a job (or every job of a batch) is run and who is told when it ends."""

    priority: Literal["bulk", "interactive"] = "bulk"
    callback_task: str | None = None
    webhook_url: str | None = None


class BatchSummary(BaseModel):
    """A batch's state, from counters kept as its jobs change state."""

    batch_id: str
    total: int
    counts: dict[str, int]
    failures_by_kind: dict[str, int]
    created_at: float
    started_at: float | None
    finished_at: float | None
    cancelled_at: float | None
    defaults: dict[str, Any]
    source: str | None
    priority: str
    callback_task: str | None
    webhook_url: str | None

    @property
    def done(self) -> int:
        return sum(self.counts[state.value] for state in TERMINAL_STATES)

    @property
    def is_terminal(self) -> bool:
        return self.done >= self.total

    def throughput_per_s(self, now: float) -> float | None:
        """Jobs run to an end (completed or failed) per second since the first one was handed
        to a worker; cancelled jobs, and jobs that expired in the queue, are not counted, or
        cancelling a big batch would show a pace no worker ever kept."""
        end = self.finished_at or now
        ran = self.counts[JobState.COMPLETED.value] + self.counts[JobState.FAILED.value]
        ran -= self.failures_by_kind.get(EXPIRED_IN_QUEUE, 0)
        if self.started_at is None or end <= self.started_at or not ran:
            return None
        return ran / (end - self.started_at)

    def past_retention(self, found: int, state: JobState | None = None) -> int:
        """How many of the jobs the batch counts (in ``state``, or all) a read did not find,
        ``found`` being what it found: their records expired (``SEGQ_JOB_RETENTION_S``) while
        the batch went on, since a batch's counters outlive the records of its jobs."""
        counted = self.total if state is None else self.counts[state.value]
        return max(0, counted - found)

    def eta_s(self, now: float) -> float | None:
        rate = self.throughput_per_s(now)
        return (self.total - self.done) / rate if rate else None


class JobStore:
    """Jobs and batches in one Redis; the client must decode responses (``decode_responses``)."""

    def __init__(self, client: redis.Redis, *, retention_s: int) -> None:
        self.redis = client
        self.retention_s = retention_s
        self.scripts = Scripts(client)

    @classmethod
    def from_settings(cls, settings: Settings) -> JobStore:
        return cls(redis_client(settings), retention_s=settings.job_retention_s)

    def run_script(self, name: str, *args: object, client: Any = None) -> Any:
        """Runs a job script with the key layout in front of its own arguments."""
        layout = redis_keys.script_layout(self.retention_s)
        return self.scripts[name](keys=[], args=[*layout, *args], client=client or self.redis)

    def open_batch(
        self, batch_id: str, *, defaults: dict[str, Any], options: JobOptions, source: str | None
    ) -> bool:
        """Creates the batch once; True if it was new. A cancelled batch takes no new jobs."""
        with store_errors():
            outcome = self.run_script(
                "open_batch", batch_id, compact_json(defaults), source or "", options.priority,
                options.callback_task or "", options.webhook_url or "",
            )  # fmt: skip
        if outcome == "cancelled":
            raise InputError(f"batch {batch_id} was cancelled; give the new run another batch id")
        return bool(outcome == "created")

    def add_jobs(
        self, jobs: Sequence[NewJob], *, batch_id: str | None, options: JobOptions
    ) -> list[Added]:
        """Creates the jobs that do not exist yet, in one round trip."""
        with store_errors():
            pipe = self.redis.pipeline(transaction=False)
            for args in add_jobs_args(jobs, batch_id, options):
                self.run_script("add_jobs", *args, client=pipe)
            replies = pipe.execute()
        return [Added(flag) for reply in replies for flag in reply]

    def get_job(self, job_id: str) -> Job:
        job = self.get_jobs([job_id])[0]
        if job is None:
            raise JobNotFound(f"no job {job_id} (mistyped, or past its retention)")
        return job

    def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        """Jobs in one round trip (None where missing), with their batches' defaults merged."""
        with store_errors():
            pipe = self.redis.pipeline(transaction=False)
            queue_job_reads(pipe, job_ids)
            return decode_job_reads(job_ids, pipe.execute())

    def get_batch(self, batch_id: str) -> BatchSummary:
        with store_errors():
            fields = self.redis.hgetall(redis_keys.batch(batch_id))
        return summary_of(batch_id, fields)

    def state_counts(self) -> dict[str, int]:
        """Jobs per state across the fleet, from the counters the job scripts keep."""
        with store_errors():
            counts = self.redis.hgetall(redis_keys.STATS)
        return {state: int(n) for state, n in counts.items()}

    def iter_batch_jobs(self, batch_id: str) -> Iterator[Job]:
        """The batch's jobs in line order, read a chunk at a time (flat memory)."""
        with store_errors():
            last_line = int(self.redis.hget(redis_keys.batch(batch_id), "max_line") or 0)
        for ids in batch_id_chunks(batch_id, last_line):
            yield from (job for job in self.get_jobs(ids) if job is not None)

    def cancel_job(self, job_id: str) -> Job:
        """Ends the job as cancelled unless it already ended; a running one is not polled again."""
        with store_errors():
            self.run_script("finish", job_id, JobState.CANCELLED.value, "")
        return self.get_job(job_id)

    def cancel_batch(self, batch_id: str) -> BatchSummary:
        """Cancels every job of the batch not yet ended, in one step whatever the batch's size."""
        with store_errors():
            if self.run_script("cancel_batch", batch_id) == -1:
                raise JobNotFound(f"no batch {batch_id} (mistyped, or past its retention)")
        return self.get_batch(batch_id)

    def retry_job(self, job_id: str) -> bool:
        """Brings a failed job back (see ``retry_job.lua``); False if it had not failed."""
        with store_errors():
            return job_retried(job_id, self.run_script("retry_job", call_token(), job_id))

    def retry_batch(self, batch_id: str) -> int:
        """Brings back every failed job of the batch; returns how many."""
        summary = self.get_batch(batch_id)
        if summary.cancelled_at is not None:
            raise cancelled_batch_error(batch_id)
        retried, token = 0, call_token()
        with store_errors():
            failed = list(self.redis.sscan_iter(redis_keys.batch_failed(batch_id), count=1000))
            for start in range(0, len(failed), READ_CHUNK):
                pipe = self.redis.pipeline(transaction=False)
                for job_id in failed[start : start + READ_CHUNK]:
                    self.run_script("retry_job", token, job_id, client=pipe)
                retried += sum(1 for state in pipe.execute() if state not in NOT_RETRIED)
        return retried

    def wait_job(self, job_id: str, timeout_s: float) -> Job:
        """The job once it has ended, or as it is when ``timeout_s`` runs out.

        Subscribes before reading, so an end that happens in between is not missed."""
        deadline = time.monotonic() + timeout_s
        with store_errors(), self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            pubsub.subscribe(redis_keys.events(job_id))
            job = self.get_job(job_id)
            while not job.is_terminal and (left := deadline - time.monotonic()) > 0:
                # re-read each second too: a batch cancel ends queued jobs silently, and an end
                # published while a cut subscription was being restored is never heard
                pubsub.get_message(timeout=min(left, 1.0))
                job = self.get_job(job_id)
            return job

    def wait_batch(self, batch_id: str, timeout_s: float) -> BatchSummary:
        """The batch once every job has ended, or as it is when ``timeout_s`` runs out; woken by
        its jobs' end events (a batch cancel ends queued jobs silently: re-read each second)."""
        deadline = time.monotonic() + timeout_s
        with store_errors(), self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
            pubsub.psubscribe(redis_keys.batch_events_pattern(batch_id))
            summary = self.get_batch(batch_id)
            while not summary.is_terminal and (left := deadline - time.monotonic()) > 0:
                if pubsub.get_message(timeout=min(left, 1.0)) is not None:
                    for _ in range(EVENTS_DRAINED):  # one read answers a burst of ends
                        if pubsub.get_message(timeout=0) is None:
                            break
                summary = self.get_batch(batch_id)
            return summary

    def failed_job_ids(self, batch_id: str, limit: int) -> list[str]:
        """Up to ``limit`` ids of the batch's failed jobs (any order), to group their reasons."""
        with store_errors():
            ids = self.redis.sscan_iter(redis_keys.batch_failed(batch_id), count=limit)
            return list(itertools.islice(ids, limit))

    def fleet_state(self) -> FleetState:
        with store_errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.hgetall(redis_keys.FLEET)
            self.run_script("rate_limits", client=pipe)
            return decode_fleet_state(*pipe.execute())

    def notification_targets(self, job_id: str) -> tuple[str | None, str | None]:
        """(callback task, webhook URL) to tell when the job ends: its own, else its batch's."""
        with store_errors():
            callback_task, webhook_url = self.redis.hmget(
                redis_keys.job(job_id), "callback_task", "webhook_url"
            )
            batch_id = batch_of(job_id)
            if batch_id and not (callback_task or webhook_url):
                callback_task, webhook_url = self.redis.hmget(
                    redis_keys.batch(batch_id), "callback_task", "webhook_url"
                )
        return callback_task, webhook_url

    def record_delivery(self, job_id: str, delivery: dict[str, Any]) -> None:
        """Appends a callback or webhook delivery attempt to the job's record."""
        with store_errors():
            self.run_script("record_delivery", job_id, compact_json(delivery))

    def pause_fleet(self, reason: str, *, manual: bool = True, probe_after_s: float = 60) -> None:
        """Stops new submits fleet-wide; a manual pause lasts until ``resume_fleet``."""
        with store_errors():
            self.run_script("pause", "pause", reason, "1" if manual else "0", probe_after_s)

    def resume_fleet(self) -> Resumed:
        """Ends the pause and lifts the holds 429s put on the budgets; see ``Resumed``."""
        with store_errors():
            return decode_resumed(self.run_script("pause", "resume", "", "0", 0))


def add_jobs_args(
    jobs: Sequence[NewJob], batch_id: str | None, options: JobOptions
) -> Iterator[list[object]]:
    """Arguments of the add_jobs script calls that create ``jobs``, a chunk per call."""
    head = [
        call_token(),
        batch_id or "",
        options.priority,
        options.callback_task or "",
        options.webhook_url or "",
    ]
    for start in range(0, len(jobs), SCRIPT_CHUNK):
        triples: list[object] = []
        for job in jobs[start : start + SCRIPT_CHUNK]:
            triples += [job.job_id, job.line or "", compact_json(job.params)]
        yield head + triples


def call_token() -> str:
    """Names one producer call in the scripts that remember their reply (``segq:reply:``), so
    a call redis-py sends again after a lost reply is answered as its first run was."""
    return uuid.uuid4().hex


def queue_job_reads(pipe: Any, job_ids: Sequence[str]) -> None:
    """Queues on a pipeline (sync or asyncio) what ``decode_job_reads`` needs."""
    for job_id in job_ids:
        pipe.hgetall(redis_keys.job(job_id))
    for batch_id in sorted({b for b in map(batch_of, job_ids) if b}):
        pipe.hmget(redis_keys.batch(batch_id), "defaults", "cancelled_at")


def decode_job_reads(job_ids: Sequence[str], replies: Sequence[Any]) -> list[Job | None]:
    """Jobs (None where missing) from the replies to ``queue_job_reads``."""
    batch_ids = sorted({b for b in map(batch_of, job_ids) if b})
    batches = {
        b: (json.loads(d) if d else {}, float(c) if c else None)
        for b, (d, c) in zip(batch_ids, replies[len(job_ids) :], strict=True)
    }
    jobs: list[Job | None] = []
    for job_id, fields in zip(job_ids, replies, strict=False):
        defaults, cancelled_at = batches.get(batch_of(job_id) or "", (None, None))
        jobs.append(decode_job(job_id, fields, defaults, cancelled_at) if fields else None)
    return jobs


def batch_id_chunks(batch_id: str, last_line: int) -> Iterator[list[str]]:
    """The ids a batch's lines can have, ``READ_CHUNK`` at a time (lines may have gaps)."""
    for first in range(1, last_line + 1, READ_CHUNK):
        yield [
            batch_job_id(batch_id, n) for n in range(first, min(first + READ_CHUNK, last_line + 1))
        ]


NOT_RETRIED = ("", BATCH_CANCELLED)


def job_retried(job_id: str, reply: str) -> bool:
    """Whether ``retry_job.lua`` brought the job back; a job of a cancelled batch is an error
    (the batch was cancelled between ``retry_batch``'s check and its scripts, or one job of it
    was named)."""
    if reply == BATCH_CANCELLED:
        raise cancelled_batch_error(batch_of(job_id) or job_id)
    return bool(reply)


def cancelled_batch_error(batch_id: str) -> InputError:
    return InputError(f"batch {batch_id} was cancelled; nothing of it runs again")


def batch_job_id(batch_id: str, line: int) -> str:
    """A batch job's id: the batch and the line, so membership costs no key per job."""
    return f"{batch_id}.{line}"


def batch_of(job_id: str) -> str | None:
    """The batch a job id belongs to (batch ids never contain a dot), or None."""
    batch_id, dot, _ = job_id.rpartition(".")
    return batch_id if dot else None


def summary_of(batch_id: str, fields: dict[str, str]) -> BatchSummary:
    """The summary from the batch hash's fields; JobNotFound when there are none."""
    if not fields:
        raise JobNotFound(f"no batch {batch_id} (mistyped, or past its retention)")

    def when(name: str) -> float | None:
        return float(fields[name]) if name in fields else None

    return BatchSummary(
        batch_id=batch_id,
        total=int(fields.get("total", 0)),
        counts={state.value: max(0, int(fields.get(state.value, 0))) for state in JobState},
        failures_by_kind={
            name.removeprefix("fail:"): int(count)
            for name, count in fields.items()
            if name.startswith("fail:") and int(count) > 0
        },
        created_at=float(fields["created_at"]),
        started_at=when("started_at"),
        finished_at=when("finished_at"),
        cancelled_at=when("cancelled_at"),
        defaults=json.loads(fields.get("defaults") or "{}"),
        source=fields.get("source"),
        priority=fields.get("priority", "bulk"),
        callback_task=fields.get("callback_task"),
        webhook_url=fields.get("webhook_url"),
    )


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Redis failures become ``StoreError``: callers handle one class, with the cause kept."""
    try:
        yield
    except redis.exceptions.MaxConnectionsError as exc:  # Redis is fine: this process is busy
        raise StoreError(f"every connection of this process's Redis pool is in use ({exc}); "
                         "each wait in progress holds one") from exc  # fmt: skip
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StoreError(f"Redis did not answer: {exc}") from exc
    except redis.ResponseError as exc:
        raise StoreError(f"Redis refused a command: {exc}") from exc

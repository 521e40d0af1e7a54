"""The producer API for ordinary (blocking) Python code: ``Producer`` and its ``JobHandle``.

Everything this module decides is decided in ``producer.enqueueing`` (shared with the asyncio
flavour, ``producer.api_async``); here are only the calls to the job store. ::

    with Producer() as producer:                      # SEGQ_REDIS_URL, or Producer(redis_url)
        job = producer.enqueue({"prompt": "a red fox in snow"}, idempotency_key="order-17")
        done = job.result(timeout_s=120)              # the completed Job, or raises
        receipt = producer.enqueue_many({"prompt": p} for p in prompts)
        summary = producer.wait_batch(receipt.batch_id, timeout_s=3600)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import redis.retry

from producer.enqueueing import (
    BatchLine,
    BatchPlan,
    BatchReceipt,
    RequestLike,
    completed_or_raise,
    created_single,
    job_options,
    single_job,
)
from producer.failures import FAILURES_SAMPLED, FailureReason, group_failures
from shared.fleet_state import FleetState, Resumed
from shared.job_model import Job, JobState
from shared.job_store import BatchSummary, JobStore, NewJob
from shared.redis_connection import PRODUCER_POOL_CONNECTIONS, reconnects, redis_client
from shared.settings import Settings, get_settings

DEFAULT_RESULT_TIMEOUT_S = 600.0


class Producer:
    """Enqueues jobs and batches, reads, waits for, cancels and retries them, pauses the fleet.

    ``redis_url`` defaults to ``SEGQ_REDIS_URL``; ``settings`` to the process's settings (job
    retention, batch size limit). Thread-safe: threads share its pool of connections, where each
    wait in progress holds one for its subscription (``PRODUCER_POOL_CONNECTIONS``)."""

    def __init__(self, redis_url: str | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        client = redis_client(self.settings, redis_url, max_connections=PRODUCER_POOL_CONNECTIONS,
                              retry=reconnects(redis.retry.Retry))  # fmt: skip
        self.store = JobStore(client, retention_s=self.settings.job_retention_s)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.store.redis.close()

    def enqueue(
        self,
        request: RequestLike,
        *,
        idempotency_key: str | None = None,
        priority: str = "bulk",
        callback: Any = None,
        webhook_url: str | None = None,
    ) -> JobHandle:
        """Enqueues one job. The same ``idempotency_key`` always names the same job: a second
        enqueue returns it (``handle.created`` is False) and spends nothing."""
        new_job = single_job(request, idempotency_key)
        options = job_options(priority, callback, webhook_url)
        [outcome] = self.store.add_jobs([new_job], batch_id=None, options=options)
        return JobHandle(new_job.job_id, self, created=created_single(new_job, outcome))

    def enqueue_many(
        self,
        requests: Iterable[RequestLike | BatchLine],
        *,
        batch_id: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        source: str | None = None,
        priority: str = "bulk",
        callback: Any = None,
        webhook_url: str | None = None,
    ) -> BatchReceipt:
        """Enqueues a stream of requests as one batch, ``ENQUEUE_CHUNK`` per round trip, never
        holding the stream whole. Job ids are ``{batch_id}.{line}`` (line = position from 1, or
        a ``BatchLine``'s own number), so re-running with the same ``batch_id`` enqueues only
        the lines that are missing. ``defaults`` apply to every request of the batch."""
        plan = BatchPlan(batch_id, defaults, job_options(priority, callback, webhook_url),
                         self.settings.max_batch_lines, source)  # fmt: skip
        for item in requests:
            if chunk := plan.take(item):
                self._add(plan, chunk)
        self._add(plan, plan.rest())
        return plan.receipt()

    def _add(self, plan: BatchPlan, chunk: list[NewJob]) -> None:
        """Sends a chunk, opening the batch with the first one (see ``BatchPlan.opened``)."""
        if not plan.opened:
            self.store.open_batch(plan.batch_id, defaults=plan.defaults, options=plan.options,
                                  source=plan.source)  # fmt: skip
            plan.check_stored(self.store.get_batch(plan.batch_id))
            plan.opened = True
        if chunk:
            plan.count(self.store.add_jobs(chunk, batch_id=plan.batch_id, options=plan.options))

    def job(self, job_id: str) -> JobHandle:
        """A handle on a job enqueued earlier (nothing is read until asked)."""
        return JobHandle(job_id, self)

    def get_job(self, job_id: str) -> Job:
        return self.store.get_job(job_id)

    def get_batch(self, batch_id: str) -> BatchSummary:
        return self.store.get_batch(batch_id)

    def iter_batch_jobs(self, batch_id: str) -> Iterator[Job]:
        """The batch's jobs in line order, a chunk of reads at a time (flat memory)."""
        return self.store.iter_batch_jobs(batch_id)

    def failure_reasons(self, batch_id: str, sample: int = FAILURES_SAMPLED) -> list[FailureReason]:
        """Why the batch's jobs failed, grouped, from up to ``sample`` failed jobs."""
        return group_failures(self.store.get_jobs(self.store.failed_job_ids(batch_id, sample)))

    def wait(self, job_id: str, timeout_s: float) -> Job:
        """The job once it has ended, or as it is when ``timeout_s`` runs out (check
        ``job.is_terminal``); woken by the job's end, not by polling."""
        return self.store.wait_job(job_id, timeout_s)

    def wait_batch(self, batch_id: str, timeout_s: float) -> BatchSummary:
        """The batch once every job has ended, or as it is at the timeout (``is_terminal``)."""
        return self.store.wait_batch(batch_id, timeout_s)

    def cancel(self, job_id: str) -> Job:
        """Ends the job as cancelled unless it already ended; one running upstream is not
        polled again."""
        return self.store.cancel_job(job_id)

    def cancel_batch(self, batch_id: str) -> BatchSummary:
        return self.store.cancel_batch(batch_id)

    def retry(self, job_id: str) -> bool:
        """Brings a failed job back; False if it had not failed."""
        return self.store.retry_job(job_id)

    def retry_batch(self, batch_id: str) -> int:
        """Brings back every failed job of the batch; returns how many."""
        return self.store.retry_batch(batch_id)

    def pause(self, reason: str) -> None:
        """Stops new submits fleet-wide until ``resume()``; running jobs finish."""
        self.store.pause_fleet(reason, manual=True)

    def resume(self) -> Resumed:
        """Ends a pause (manual or automatic) and lifts the holds 429s put on the fleet's
        budgets; the rates they taught stay. Returns what it ended."""
        return self.store.resume_fleet()

    def fleet_state(self) -> FleetState:
        return self.store.fleet_state()


class JobHandle:
    """A job's id and the producer to ask about it (arq's ``Job``); holds no record."""

    def __init__(self, job_id: str, producer: Producer, *, created: bool | None = None) -> None:
        self.job_id = job_id
        self.producer = producer
        self.created = created
        """True if ``enqueue`` created the job, False if its idempotency key named one already."""

    def __repr__(self) -> str:
        return f"JobHandle({self.job_id!r})"

    def status(self) -> JobState:
        return self.producer.get_job(self.job_id).state

    def info(self) -> Job:
        return self.producer.get_job(self.job_id)

    def wait(self, timeout_s: float) -> Job:
        return self.producer.wait(self.job_id, timeout_s)

    def result(self, timeout_s: float = DEFAULT_RESULT_TIMEOUT_S) -> Job:
        """The completed job (``outputs``, ``metrics``); raises ``JobNotCompleted`` if it failed
        or was cancelled, ``WaitTimeout`` if it had not ended within ``timeout_s``."""
        return completed_or_raise(self.wait(timeout_s), timeout_s)

    def cancel(self) -> Job:
        return self.producer.cancel(self.job_id)

    def retry(self) -> bool:
        return self.producer.retry(self.job_id)

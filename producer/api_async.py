"""The producer API for asyncio code (``redis.asyncio``): ``AsyncProducer``, ``AsyncJobHandle``.

The same operations as ``producer.api.Producer``, awaited; what they decide is decided in
``producer.enqueueing``. Waiting wakes on the job's (or the batch's jobs') end events, so a web
request waiting for an image costs no polling. ::

    producer = AsyncProducer()                        # one per app; await producer.aclose()
    job = await producer.enqueue({"prompt": "a red fox in snow"}, priority="interactive")
    done = await job.result(timeout_s=60)
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

from producer.api import DEFAULT_RESULT_TIMEOUT_S
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
from shared.job_store import BatchSummary, NewJob
from shared.job_store_async import AsyncJobStore
from shared.redis_connection import async_redis_client
from shared.settings import Settings, get_settings

Requests = Iterable[RequestLike | BatchLine] | AsyncIterable[RequestLike | BatchLine]


class AsyncProducer:
    """``Producer`` for asyncio: create one per app (it pools connections), close with
    ``await producer.aclose()`` or ``async with``. Use it from one event loop only: its
    pooled connections belong to that loop (``asyncio.run`` again, or a forked child, needs a
    new one)."""

    def __init__(self, redis_url: str | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        client = async_redis_client(self.settings, redis_url)
        self.store = AsyncJobStore(client, retention_s=self.settings.job_retention_s)

    async def __aenter__(self) -> AsyncProducer:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.store.aclose()

    async def enqueue(
        self,
        request: RequestLike,
        *,
        idempotency_key: str | None = None,
        priority: str = "bulk",
        callback: Any = None,
        webhook_url: str | None = None,
    ) -> AsyncJobHandle:
        """As ``Producer.enqueue``."""
        new_job = single_job(request, idempotency_key)
        options = job_options(priority, callback, webhook_url)
        [outcome] = await self.store.add_jobs([new_job], batch_id=None, options=options)
        return AsyncJobHandle(new_job.job_id, self, created=created_single(new_job, outcome))

    async def enqueue_many(
        self,
        requests: Requests,
        *,
        batch_id: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        source: str | None = None,
        priority: str = "bulk",
        callback: Any = None,
        webhook_url: str | None = None,
    ) -> BatchReceipt:
        """As ``Producer.enqueue_many``; ``requests`` may also be an async iterable."""
        plan = BatchPlan(batch_id, defaults, job_options(priority, callback, webhook_url),
                         self.settings.max_batch_lines, source)  # fmt: skip
        async for item in _each(requests):
            if chunk := plan.take(item):
                await self._add(plan, chunk)
        await self._add(plan, plan.rest())
        return plan.receipt()

    async def _add(self, plan: BatchPlan, chunk: list[NewJob]) -> None:
        """As ``Producer._add``."""
        if not plan.opened:
            await self.store.open_batch(plan.batch_id, defaults=plan.defaults,
                                        options=plan.options, source=plan.source)  # fmt: skip
            plan.check_stored(await self.store.get_batch(plan.batch_id))
            plan.opened = True
        if chunk:
            plan.count(
                await self.store.add_jobs(chunk, batch_id=plan.batch_id, options=plan.options)
            )

    def job(self, job_id: str) -> AsyncJobHandle:
        return AsyncJobHandle(job_id, self)

    async def get_job(self, job_id: str) -> Job:
        return await self.store.get_job(job_id)

    async def get_batch(self, batch_id: str) -> BatchSummary:
        return await self.store.get_batch(batch_id)

    def iter_batch_jobs(self, batch_id: str) -> AsyncIterator[Job]:
        return self.store.iter_batch_jobs(batch_id)

    async def failure_reasons(
        self, batch_id: str, sample: int = FAILURES_SAMPLED
    ) -> list[FailureReason]:
        failed = await self.store.failed_job_ids(batch_id, sample)
        return group_failures(await self.store.get_jobs(failed))

    async def wait(self, job_id: str, timeout_s: float) -> Job:
        return await self.store.wait_job(job_id, timeout_s)

    async def wait_batch(self, batch_id: str, timeout_s: float) -> BatchSummary:
        return await self.store.wait_batch(batch_id, timeout_s)

    async def cancel(self, job_id: str) -> Job:
        return await self.store.cancel_job(job_id)

    async def cancel_batch(self, batch_id: str) -> BatchSummary:
        return await self.store.cancel_batch(batch_id)

    async def retry(self, job_id: str) -> bool:
        return await self.store.retry_job(job_id)

    async def retry_batch(self, batch_id: str) -> int:
        return await self.store.retry_batch(batch_id)

    async def pause(self, reason: str) -> None:
        await self.store.pause_fleet(reason)

    async def resume(self) -> Resumed:
        return await self.store.resume_fleet()

    async def fleet_state(self) -> FleetState:
        return await self.store.fleet_state()


async def _each(requests: Requests) -> AsyncIterator[RequestLike | BatchLine]:
    if isinstance(requests, AsyncIterable):
        async for item in requests:
            yield item
    else:
        for item in requests:
            yield item


class AsyncJobHandle:
    """``JobHandle`` for asyncio: a job's id and the producer to ask about it."""

    def __init__(
        self, job_id: str, producer: AsyncProducer, *, created: bool | None = None
    ) -> None:
        self.job_id = job_id
        self.producer = producer
        self.created = created

    def __repr__(self) -> str:
        return f"AsyncJobHandle({self.job_id!r})"

    async def status(self) -> JobState:
        return (await self.producer.get_job(self.job_id)).state

    async def info(self) -> Job:
        return await self.producer.get_job(self.job_id)

    async def wait(self, timeout_s: float) -> Job:
        return await self.producer.wait(self.job_id, timeout_s)

    async def result(self, timeout_s: float = DEFAULT_RESULT_TIMEOUT_S) -> Job:
        """As ``JobHandle.result``: the completed job, or JobNotCompleted / WaitTimeout."""
        return completed_or_raise(await self.wait(timeout_s), timeout_s)

    async def cancel(self) -> Job:
        return await self.producer.cancel(self.job_id)

    async def retry(self) -> bool:
        return await self.producer.retry(self.job_id)

"""The job store's producer operations for asyncio code (``redis.asyncio``).

The same scripts, keys and decoding as ``shared.job_store`` (this module only awaits the
calls), so the two cannot drift: enqueue, read, wait on a job's or a batch's end without
polling, cancel, retry, pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import redis.asyncio as aioredis

from shared import redis_keys
from shared.errors import InputError, JobNotFound
from shared.fleet_state import FleetState, Resumed, decode_fleet_state, decode_resumed
from shared.job_codec import compact_json
from shared.job_model import Job, JobState
from shared.job_store import (
    EVENTS_DRAINED,
    NOT_RETRIED,
    Added,
    BatchSummary,
    JobOptions,
    NewJob,
    add_jobs_args,
    batch_id_chunks,
    call_token,
    cancelled_batch_error,
    decode_job_reads,
    job_retried,
    queue_job_reads,
    store_errors,
    summary_of,
)
from shared.lua_scripts import Scripts
from shared.redis_connection import async_redis_client
from shared.settings import Settings


def cancels_requested() -> int:
    """How many cancels the running task has been asked for and not withdrawn (``cancelling``)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


def raise_lost_cancel(before: int) -> None:
    """Re-raises a cancellation that an awaited Redis call swallowed. On Python 3.11,
    ``asyncio.wait_for`` (which redis-py wraps around every send once ``socket_timeout`` is
    set, 5 s by default from redis-py 8) drops a cancel that arrives as the send completes,
    so a cancelled wait would otherwise go on to its timeout (600 s for ``result()``) and
    then return a job that has not ended. The task still counts the cancel (``cancelling``).
    Only cancels asked for since the wait began (``before``) count: a task cleaning up after
    its own cancel may still wait for a job."""
    if cancels_requested() > before:
        raise asyncio.CancelledError


class AsyncJobStore:
    """Jobs in Redis for asyncio callers; the client must decode responses."""

    def __init__(self, client: aioredis.Redis, *, retention_s: int) -> None:
        self.redis = client
        self.retention_s = retention_s
        self.scripts = Scripts(client)

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncJobStore:
        return cls(async_redis_client(settings), retention_s=settings.job_retention_s)

    async def run_script(self, name: str, *args: object, client: Any = None) -> Any:
        layout = redis_keys.script_layout(self.retention_s)
        script = self.scripts[name]
        return await script(keys=[], args=[*layout, *args], client=client or self.redis)

    async def open_batch(
        self, batch_id: str, *, defaults: dict[str, Any], options: JobOptions, source: str | None
    ) -> bool:
        with store_errors():
            outcome = await self.run_script(
                "open_batch", batch_id, compact_json(defaults), source or "", options.priority,
                options.callback_task or "", options.webhook_url or "",
            )  # fmt: skip
        if outcome == "cancelled":
            raise InputError(f"batch {batch_id} was cancelled; give the new run another batch id")
        return bool(outcome == "created")

    async def add_jobs(
        self, jobs: Sequence[NewJob], *, batch_id: str | None, options: JobOptions
    ) -> list[Added]:
        with store_errors():
            pipe = self.redis.pipeline(transaction=False)
            for args in add_jobs_args(jobs, batch_id, options):
                await self.run_script("add_jobs", *args, client=pipe)
            replies = await pipe.execute()
        return [Added(flag) for reply in replies for flag in reply]

    async def get_jobs(self, job_ids: Sequence[str]) -> list[Job | None]:
        with store_errors():
            pipe = self.redis.pipeline(transaction=False)
            queue_job_reads(pipe, job_ids)
            return decode_job_reads(job_ids, await pipe.execute())

    async def get_job(self, job_id: str) -> Job:
        job = (await self.get_jobs([job_id]))[0]
        if job is None:
            raise JobNotFound(f"no job {job_id} (mistyped, or past its retention)")
        return job

    async def cancel_job(self, job_id: str) -> Job:
        with store_errors():
            await self.run_script("finish", job_id, JobState.CANCELLED.value, "")
        return await self.get_job(job_id)

    async def wait_job(self, job_id: str, timeout_s: float) -> Job:
        """The job once it has ended, or as it is at the timeout; woken by the job's end event
        (subscribed before the first read, so an end in between is not missed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        cancels = cancels_requested()
        with store_errors():
            async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(redis_keys.events(job_id))
                job = await self.get_job(job_id)
                while not job.is_terminal and (left := deadline - loop.time()) > 0:
                    raise_lost_cancel(cancels)
                    await pubsub.get_message(timeout=min(left, 1.0))
                    job = await self.get_job(job_id)
                return job

    async def get_batch(self, batch_id: str) -> BatchSummary:
        with store_errors():
            fields = await self.redis.hgetall(redis_keys.batch(batch_id))
        return summary_of(batch_id, fields)

    async def iter_batch_jobs(self, batch_id: str) -> AsyncIterator[Job]:
        """The batch's jobs in line order, read a chunk at a time (flat memory)."""
        with store_errors():
            last_line = int(await self.redis.hget(redis_keys.batch(batch_id), "max_line") or 0)
        for ids in batch_id_chunks(batch_id, last_line):
            for job in await self.get_jobs(ids):
                if job is not None:
                    yield job

    async def cancel_batch(self, batch_id: str) -> BatchSummary:
        with store_errors():
            if await self.run_script("cancel_batch", batch_id) == -1:
                raise JobNotFound(f"no batch {batch_id} (mistyped, or past its retention)")
        return await self.get_batch(batch_id)

    async def retry_job(self, job_id: str) -> bool:
        with store_errors():
            return job_retried(job_id, await self.run_script("retry_job", call_token(), job_id))

    async def retry_batch(self, batch_id: str) -> int:
        summary = await self.get_batch(batch_id)
        if summary.cancelled_at is not None:
            raise cancelled_batch_error(batch_id)
        with store_errors():
            failed_key = redis_keys.batch_failed(batch_id)
            failed = [job_id async for job_id in self.redis.sscan_iter(failed_key, count=1000)]
            pipe, token = self.redis.pipeline(transaction=False), call_token()
            for job_id in failed:
                await self.run_script("retry_job", token, job_id, client=pipe)
            return sum(1 for state in await pipe.execute() if state not in NOT_RETRIED)

    async def failed_job_ids(self, batch_id: str, limit: int) -> list[str]:
        ids: list[str] = []
        with store_errors():
            async for job_id in self.redis.sscan_iter(
                redis_keys.batch_failed(batch_id), count=limit
            ):
                if len(ids) >= limit:
                    break
                ids.append(job_id)
        return ids

    async def wait_batch(self, batch_id: str, timeout_s: float) -> BatchSummary:
        """As ``JobStore.wait_batch``: woken by the batch's end events, re-read each second."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        cancels = cancels_requested()
        with store_errors():
            async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.psubscribe(redis_keys.batch_events_pattern(batch_id))
                summary = await self.get_batch(batch_id)
                while not summary.is_terminal and (left := deadline - loop.time()) > 0:
                    raise_lost_cancel(cancels)
                    if await pubsub.get_message(timeout=min(left, 1.0)) is not None:
                        for _ in range(EVENTS_DRAINED):
                            if await pubsub.get_message(timeout=0) is None:
                                break
                    summary = await self.get_batch(batch_id)
                return summary

    async def fleet_state(self) -> FleetState:
        with store_errors():
            pipe = self.redis.pipeline(transaction=False)
            pipe.hgetall(redis_keys.FLEET)
            await self.run_script("rate_limits", client=pipe)
            return decode_fleet_state(*await pipe.execute())

    async def pause_fleet(self, reason: str) -> None:
        """A manual pause, until ``resume_fleet`` (see ``JobStore.pause_fleet``)."""
        with store_errors():
            await self.run_script("pause", "pause", reason, "1", 60)

    async def resume_fleet(self) -> Resumed:
        with store_errors():
            return decode_resumed(await self.run_script("pause", "resume", "", "0", 0))

    async def aclose(self) -> None:
        await self.redis.aclose()

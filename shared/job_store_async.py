"""The job store's producer operations for asyncio code (``redis.asyncio``).

The same scripts, keys and decoding as ``shared.job_store`` (this module only awaits the
calls), so the two cannot drift: enqueue, read, wait on a job's end without polling, cancel.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from shared import redis_keys
from shared.errors import InputError, JobNotFound
from shared.job_codec import compact_json
from shared.job_model import Job, JobState
from shared.job_store import (
    JobOptions,
    NewJob,
    add_jobs_args,
    decode_job_reads,
    queue_job_reads,
    store_errors,
)
from shared.lua_scripts import Scripts
from shared.settings import Settings


class AsyncJobStore:
    """Jobs in Redis for asyncio callers; the client must decode responses."""

    def __init__(self, client: aioredis.Redis, *, retention_s: int) -> None:
        self.redis = client
        self.retention_s = retention_s
        self.scripts = Scripts(client)

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncJobStore:
        client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
        return cls(client, retention_s=settings.job_retention_s)

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
    ) -> list[bool]:
        with store_errors():
            pipe = self.redis.pipeline(transaction=False)
            for args in add_jobs_args(jobs, batch_id, options):
                await self.run_script("add_jobs", *args, client=pipe)
            replies = await pipe.execute()
        return [bool(flag) for reply in replies for flag in reply]

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
        with store_errors():
            async with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(redis_keys.events(job_id))
                job = await self.get_job(job_id)
                while not job.is_terminal and (left := deadline - loop.time()) > 0:
                    await pubsub.get_message(timeout=min(left, 1.0))
                    job = await self.get_job(job_id)
                return job

    async def aclose(self) -> None:
        await self.redis.aclose()

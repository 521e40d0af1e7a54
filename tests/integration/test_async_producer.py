"""The asyncio producer with a real worker and the sandbox: enqueue, then wait on the job's end
event until the image is ready; a whole batch likewise."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from producer import AsyncProducer
from shared.job_model import JobState
from shared.settings import load_settings

pytestmark = pytest.mark.integration


def test_async_producer_enqueues_and_waits_for_real_images(make_fleet):
    # Given a worker on the sandbox, and an app's AsyncProducer on the same Redis
    fleet = make_fleet()
    fleet.start_worker()
    settings = load_settings({"SEGQ_REDIS_URL": fleet.redis_url})

    async def app() -> tuple:
        async with AsyncProducer(settings=settings) as producer:
            # When it enqueues one interactive job and a small batch, and awaits both
            job = await producer.enqueue({"prompt": "a paper crane", "image_format": "png"},
                                         priority="interactive")  # fmt: skip
            receipt = await producer.enqueue_many({"prompt": f"a pebble {n}"} for n in range(6))
            done, summary = await asyncio.gather(
                job.result(timeout_s=60), producer.wait_batch(receipt.batch_id, timeout_s=90)
            )
            return done, summary, [j async for j in producer.iter_batch_jobs(receipt.batch_id)]

    done, summary, batch_jobs = asyncio.run(app())
    # Then the job completed with an image that downloads, and every batch job completed
    assert done.state is JobState.COMPLETED and done.priority == "interactive"
    assert httpx.get(done.outputs[0]).headers["content-type"] == "image/png"
    assert summary.is_terminal and summary.counts["completed"] == 6
    assert [job.state for job in batch_jobs] == [JobState.COMPLETED] * 6

"""Completion callbacks as an app would write them, for worker processes started by tests.

A worker loads them with ``--include=tests.support.callback_tasks`` and consumes the queue segq
publishes callbacks to (``--queues=celery``), as an app's own worker would. ``record_job``
keeps every job object it receives in a Redis list the test reads; ``refuse_job`` fails, as a
buggy callback would.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from shared.settings import get_settings
from workers.celery_app import app

RECORD_JOB = "tests.record_job"
REFUSE_JOB = "tests.refuse_job"
RECEIVED_PREFIX = "segq-test:callback:"


def received_key(job_id: str) -> str:
    """The list of job objects ``record_job`` received for ``job_id`` (in arrival order)."""
    return RECEIVED_PREFIX + job_id


@app.task(name=RECORD_JOB, ignore_result=True)
def record_job(job: dict[str, Any]) -> None:
    client = redis.Redis.from_url(get_settings().redis_url)
    try:
        client.rpush(received_key(job["job_id"]), json.dumps(job))
    finally:
        client.close()


@app.task(name=REFUSE_JOB, ignore_result=True)
def refuse_job(job: dict[str, Any]) -> None:
    raise RuntimeError(f"the app's callback fails on purpose for job {job['job_id']}")

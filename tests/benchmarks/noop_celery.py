"""The baseline of ``bench_pipeline``: raw Celery, one task that does nothing.

Celery's defaults throughout (early acks, prefetch 4, no task events); the benchmark starts its
worker as ``python -m celery -A tests.benchmarks.noop_celery worker --pool=threads
--concurrency=N`` with ``CELERY_BROKER_URL`` set, the same pool and concurrency as segq's worker.
With early acks a no-op task is done the moment it is acknowledged, so an empty queue and an
empty ``unacked`` hash mean every task ran: the baseline needs no counter or result of its own.
"""

from __future__ import annotations

from celery import Celery

app = Celery("noop")


@app.task(name="noop", ignore_result=True)
def noop() -> None:
    """Nothing: the cost measured is Celery's own (publish, fetch, ack, run)."""

"""A bulk backlog and interactive jobs on a fleet, and when each reached the upstream.

Shared by the priority tests and ``bench_interactive``: the backlog is one batch (so it is
cancelled in one step and workers stop quickly), and "reached the upstream" is the moment the
sandbox accepted the submit (its ``truth()``), on the same clock as ``time.time()`` here.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from shared.job_store import JobOptions, JobStore, NewJob, batch_job_id
from tests.support.fleet import Fleet, wait_until

BULK_PROMPT = "bulk backlog line {n}"
INTERACTIVE = JobOptions(priority="interactive")
ENQUEUE_CHUNK = 2000


def enqueue_bulk_backlog(store: JobStore, jobs: int) -> str:
    """Queues ``jobs`` bulk jobs as one batch, a chunk per round trip; returns the batch id."""
    batch_id = f"backlog{uuid.uuid4().hex[:8]}"
    store.open_batch(batch_id, defaults={"width": 512, "height": 512}, options=JobOptions(),
                     source=None)  # fmt: skip
    for first in range(1, jobs + 1, ENQUEUE_CHUNK):
        lines = range(first, min(first + ENQUEUE_CHUNK, jobs + 1))
        chunk = [NewJob(batch_job_id(batch_id, n), {"prompt": BULK_PROMPT.format(n=n)}, n)
                 for n in lines]  # fmt: skip
        store.add_jobs(chunk, batch_id=batch_id, options=JobOptions())
    return batch_id


def upstream_submits(fleet: Fleet) -> list[tuple[float, str]]:
    """(submitted_at, prompt) of every request the sandbox accepted, oldest first."""
    requests = fleet.sandbox.truth()["requests"].values()
    return sorted((request["submitted_at"], request["prompt"]) for request in requests)


def is_bulk(prompt: str) -> bool:
    return prompt.startswith(BULK_PROMPT.split("{")[0])


def wait_for_bulk_at_the_limit(fleet: Fleet, submits: int, timeout_s: float) -> None:
    """Returns once the backlog has had ``submits`` submits upstream: the budget is in use."""
    wait_until(lambda: sum(is_bulk(p) for _, p in upstream_submits(fleet)) >= submits,
               f"{submits} bulk submits upstream", timeout_s, fleet.workers)  # fmt: skip


def interactive_latency_s(fleet: Fleet, prompt: str, timeout_s: float) -> float:
    """Enqueues one interactive job; seconds from the enqueue call to its upstream submit."""
    enqueued_at = time.time()
    fleet.add([{"prompt": prompt}], INTERACTIVE)
    submitted_at = wait_until(lambda: submitted_at_of(fleet, [prompt]).get(prompt),
                              f"{prompt!r} upstream", timeout_s, fleet.workers)  # fmt: skip
    return submitted_at - enqueued_at


def submitted_at_of(fleet: Fleet, prompts: Iterable[str]) -> dict[str, float]:
    wanted = set(prompts)
    return {p: at for at, p in upstream_submits(fleet) if p in wanted}

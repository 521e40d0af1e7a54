"""Ground truth: what the sandbox really served, so tests can check what clients recorded.

``GET /_sandbox/truth`` answers ``{"now", "held", "totals", "requests"}``; ``held`` counts the
v2 calls waiting on the hold (``hold_s``) now; ``requests`` maps each request id to
:func:`job_truth`. A job's ``completed_at`` stays null until the moment it really
reached its terminal state, although the sandbox computed that moment at submit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.sandbox.jobs import COMPLETED, FAILED, QUEUED, STATES, SimulatedJob

INJECTED = ("500", "502", "503", "504", "outage")


@dataclass
class Totals:
    """Counters over all request ids; a reset zeroes them.

    ``submits`` are jobs created; ``status_polls`` and ``result_fetches`` are GETs that got past
    faults, key and rate limit (whatever the id); ``refused`` counts other error answers by
    status code; ``errors_injected`` counts injected answers by code and ``outage``.
    """

    submits: int = 0
    status_polls: int = 0
    result_fetches: int = 0
    media_fetches: int = 0
    dropped: int = 0
    lost_answers: int = 0
    """Submits accepted, and billed, whose answer was dropped (``lost_answer_probability``)."""
    slowed: int = 0
    rate_limited: Counter[str] = field(default_factory=Counter)
    errors_injected: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "submits": self.submits,
            "status_polls": self.status_polls,
            "result_fetches": self.result_fetches,
            "media_fetches": self.media_fetches,
            "dropped": self.dropped,
            "lost_answers": self.lost_answers,
            "slowed": self.slowed,
            "rate_limited": {"submit": 0, "poll": 0, **self.rate_limited},
            "errors_injected": {**dict.fromkeys(INJECTED, 0), **self.errors_injected},
            "refused": dict(sorted(self.refused.items())),
        }


def job_truth(job: SimulatedJob, now: float, retention_s: float) -> dict[str, Any]:
    """One request id as the sandbox saw it: inputs, counters, timing, outcome."""
    state = job.state_at(now)
    finished = state in (COMPLETED, FAILED)
    return {
        "prompt": job.output.prompt,
        "seed": job.output.seed,
        "batch_size": job.output.batch_size,
        "submits": 1,
        "status_polls": job.status_polls,
        "result_fetches": job.result_fetches,
        "rate_limited": job.rate_limited,
        "state": state,
        "expired": finished and now >= job.finishes_at + retention_s,
        "submitted_at": job.submitted_at,
        "started_at": None if state == QUEUED else job.started_at,
        "completed_at": job.finishes_at if finished else None,
        "outputs": job.media_urls() if state == COMPLETED else [],
        "error": job.error if state == FAILED else None,
        "cost": job.cost if state == COMPLETED else 0.0,
    }


def state_counts(jobs: Iterable[SimulatedJob], now: float) -> dict[str, int]:
    counts = dict.fromkeys(STATES, 0)
    for job in jobs:
        counts[job.state_at(now)] += 1
    return counts

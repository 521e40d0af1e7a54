"""Everything one running sandbox knows, owned by its event loop's thread.

Handlers read and change it without locks: aiohttp runs them all on one thread, and the
in-process runner hands its own calls (truth, faults, reset) to that thread too.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

from shared.sandbox.account import Ledger
from shared.sandbox.config import SandboxConfig
from shared.sandbox.faults import CallHold, FaultDraws
from shared.sandbox.images import ImageCache
from shared.sandbox.jobs import GpuPool, JobTable, Output, SimulatedJob, draw_inference_s
from shared.sandbox.rate_limit import SlidingWindowLimiter
from shared.sandbox.truth import Totals, job_truth, state_counts

SEED_RANGE = 2**32
"""Seeds the sandbox picks for requests that name none, like the real service's."""


class SandboxState:
    """Configuration, jobs, GPUs, limits, balance, counters and the image cache."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.rng = random.Random(config.random_seed)
        self.faults = FaultDraws(self.rng)
        self.faults.start_outage(config, time.time())
        self.hold = CallHold(config)
        self.images = ImageCache()
        self.limiter = SlidingWindowLimiter()
        self.jobs = JobTable()
        self.reset()

    def reset(self) -> int:
        """Forget jobs, counters, rate windows and spend; keep the configuration. Returns how
        many jobs were forgotten."""
        forgotten = len(self.jobs)
        self.jobs.clear()
        self.limiter.clear()
        self.images.clear()
        self.gpus = GpuPool(self.config.gpus)
        self.ledger = Ledger(self.config.credits)
        self.totals = Totals()
        return forgotten

    def current_config(self, now: float) -> SandboxConfig:
        """The configuration in force at ``now`` (a timed outage switches itself off)."""
        if self.faults.outage_over(self.config, now):
            self.config = self.config.model_copy(update={"outage": False})
            self.faults.outage_ends_at = None
        return self.config

    def apply_patch(self, patch: dict[str, Any]) -> SandboxConfig:
        """Change knobs at run time (``POST /_sandbox/faults``); ValidationError if invalid."""
        config = self.config.patched(patch)
        self.config = config
        if "outage" in patch or "outage_s" in patch:
            self.faults.start_outage(config, time.time())
        if "hold_s" in patch:
            self.hold.switch(config)
        if "gpus" in patch:
            self.gpus.resize(config.gpus)
        if "credits" in patch:
            self.ledger.balance = config.credits
        return config

    def pick_seed(self) -> int:
        return self.rng.randrange(SEED_RANGE)

    def create_job(
        self, output: Output, origin: str, now: float, error: str | None = None
    ) -> SimulatedJob:
        """Book a job on the GPUs, decide how it ends, bill it when it will complete."""
        config = self.config
        error = error or self._drawn_failure(output.prompt)
        duration_s = draw_inference_s(self.rng, config, output)
        ready_at = now + config.min_queue_s * config.time_scale
        started_at, finishes_at = self.gpus.book(ready_at, duration_s)
        cost = 0.0 if error else config.cost_per_image * output.batch_size
        self.ledger.charge(cost)
        job = SimulatedJob(
            str(uuid.uuid4()), origin, output, now, started_at, finishes_at, error, cost
        )
        self.jobs.forget_before(now - config.media_retention_s)
        self.jobs.add(job)
        self.totals.submits += 1
        return job

    def _drawn_failure(self, prompt: str) -> str | None:
        config = self.config
        if config.fail_marker and config.fail_marker in prompt:
            return config.fail_error
        if config.fail_probability and self.rng.random() < config.fail_probability:
            return config.fail_error
        return None

    def live_job(self, request_id: str, now: float) -> SimulatedJob | None:
        """The job behind a request id while its record is retained, else None (404)."""
        job = self.jobs.get(request_id)
        if job is None or now >= job.finishes_at + self.config.retention_s:
            return None
        return job

    def truth(
        self, request_ids: list[str] | None = None, with_requests: bool = True
    ) -> dict[str, Any]:
        """``GET /_sandbox/truth``: calls held now, totals, and each (or the named) request
        id's record."""
        now = time.time()
        retention_s = self.config.retention_s
        totals = self.totals.as_dict()
        totals["jobs"] = state_counts(self.jobs, now)
        totals["credits"] = {"balance": self.ledger.balance, "spent": self.ledger.spent}
        answer: dict[str, Any] = {"now": now, "held": self.hold.waiting, "totals": totals}
        if with_requests:
            jobs = self.jobs if request_ids is None else self._named(request_ids)
            answer["requests"] = {job.request_id: job_truth(job, now, retention_s) for job in jobs}
        return answer

    def _named(self, request_ids: list[str]) -> list[SimulatedJob]:
        return [job for job in map(self.jobs.get, request_ids) if job is not None]

    def close(self) -> None:
        self.images.close()

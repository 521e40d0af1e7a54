"""Simulated jobs on simulated GPUs, computed from timestamps instead of run by tasks.

A submit draws the job's inference time and books it on the GPU that frees first, so its
start and finish are known at once; its status at any moment is a comparison of timestamps.
No timer or task exists per job: 100,000 queued jobs cost a dict entry each. Times are wall
clock (``time.time()``) so a test can compare them with what other processes recorded.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

from shared.sandbox.config import SandboxConfig
from shared.sandbox.images import ImageSpec

QUEUED = "QUEUED"
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
STATES = (QUEUED, PROCESSING, COMPLETED, FAILED)

REFERENCE_PIXELS = 1024 * 1024
"""The image size ``inference_mean_s`` describes; other sizes and batches scale linearly."""


@dataclass(frozen=True, slots=True)
class Output:
    """What a job renders: its images' common parameters."""

    prompt: str
    seed: int
    width: int
    height: int
    batch_size: int
    image_format: str
    image_quality: int
    base64: bool

    def spec(self, index: int) -> ImageSpec:
        return ImageSpec(
            self.prompt, self.seed, index, self.width, self.height,
            self.image_format, self.image_quality,
        )  # fmt: skip


@dataclass(slots=True)
class SimulatedJob:
    """One request id: what was asked, when it runs, how it ends, and how often it was polled."""

    request_id: str
    origin: str
    output: Output
    submitted_at: float
    started_at: float
    finishes_at: float
    error: str | None
    cost: float
    status_polls: int = 0
    result_fetches: int = 0
    rate_limited: int = 0

    def state_at(self, now: float) -> str:
        if now < self.started_at:
            return QUEUED
        if now < self.finishes_at:
            return PROCESSING
        return FAILED if self.error is not None else COMPLETED

    def metrics(self) -> dict[str, float]:
        """Segmind's ``metrics``: seconds running, waiting, and both (meaningful once finished)."""
        return {
            "inference_time": round(self.finishes_at - self.started_at, 3),
            "queue_time": round(self.started_at - self.submitted_at, 3),
            "total_time": round(self.finishes_at - self.submitted_at, 3),
        }

    def media_urls(self) -> list[str]:
        """Where each image is served; a base64 job's images are served there too."""
        ext = self.output.spec(0).extension
        base = f"{self.origin}/media/{self.request_id}"
        return [f"{base}/{index}.{ext}" for index in range(self.output.batch_size)]


def draw_inference_s(rng: random.Random, config: SandboxConfig, output: Output) -> float:
    """Lognormal around ``inference_mean_s`` (its mean, not its median), scaled by the work."""
    sigma = config.inference_sigma
    mu = math.log(config.inference_mean_s) - sigma * sigma / 2
    work = output.width * output.height * output.batch_size / REFERENCE_PIXELS
    return rng.lognormvariate(mu, sigma) * work * config.time_scale


class GpuPool:
    """When each simulated GPU is next free; jobs are booked first come, first served."""

    def __init__(self, gpus: int) -> None:
        self._free_at: list[float] = [0.0] * gpus

    def book(self, ready_at: float, duration_s: float) -> tuple[float, float]:
        """Start and finish of a job that may start at ``ready_at`` and runs ``duration_s``."""
        start = max(heapq.heappop(self._free_at), ready_at)
        finish = start + duration_s
        heapq.heappush(self._free_at, finish)
        return start, finish

    def resize(self, gpus: int) -> None:
        """More GPUs are free at once; fewer drop the GPUs that free first (not the busy ones)."""
        while len(self._free_at) < gpus:
            heapq.heappush(self._free_at, 0.0)
        while len(self._free_at) > gpus:
            heapq.heappop(self._free_at)


class JobTable:
    """Every job the sandbox knows, in submit order; old ones leave as new ones arrive."""

    def __init__(self) -> None:
        self._jobs: dict[str, SimulatedJob] = {}

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[SimulatedJob]:
        return iter(self._jobs.values())

    def add(self, job: SimulatedJob) -> None:
        self._jobs[job.request_id] = job

    def get(self, request_id: str) -> SimulatedJob | None:
        return self._jobs.get(request_id)

    def forget_before(self, cutoff: float, limit: int = 4) -> None:
        """Drop up to ``limit`` of the oldest jobs that finished before ``cutoff``.

        Called on each submit, so memory follows the submit rate without a sweeper task; a job
        stuck behind a longer one is dropped a little late, never early.
        """
        for _ in range(limit):
            oldest = next(iter(self._jobs.values()), None)
            if oldest is None or oldest.finishes_at >= cutoff:
                return
            del self._jobs[oldest.request_id]

    def clear(self) -> None:
        self._jobs.clear()

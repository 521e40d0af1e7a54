"""Simulated time: GPUs booked first come first served, states read from timestamps."""

from __future__ import annotations

import random
import statistics

import pytest

from shared.sandbox.config import SandboxConfig
from shared.sandbox.jobs import GpuPool, Output, SimulatedJob, draw_inference_s

OUTPUT = Output("a fox", 1, 1024, 1024, 1, "jpeg", 95, False)


def job(started_at: float, finishes_at: float, error: str | None = None) -> SimulatedJob:
    return SimulatedJob("r1", "http://sandbox", OUTPUT, 0.0, started_at, finishes_at, error, 0.0)


def test_state_follows_the_clock() -> None:
    states = [job(1.0, 3.0).state_at(t) for t in (0.5, 1.0, 2.9, 3.0)]

    assert states == ["QUEUED", "PROCESSING", "PROCESSING", "COMPLETED"]
    assert job(1.0, 3.0, error="boom").state_at(3.0) == "FAILED"


def test_metrics_split_waiting_and_running() -> None:
    assert job(1.0, 3.5).metrics() == {"inference_time": 2.5, "queue_time": 1.0, "total_time": 3.5}


def test_jobs_beyond_the_gpus_wait_for_the_first_free_one() -> None:
    pool = GpuPool(2)

    bookings = [pool.book(0.0, duration) for duration in (3.0, 1.0, 2.0, 2.0)]

    assert bookings == [(0.0, 3.0), (0.0, 1.0), (1.0, 3.0), (3.0, 5.0)]


def test_shrinking_the_pool_keeps_the_busy_gpus() -> None:
    pool = GpuPool(3)
    pool.book(0.0, 10.0)

    pool.resize(1)

    assert pool.book(0.0, 1.0) == (10.0, 11.0)


def test_inference_time_averages_the_configured_mean_scaled_by_work() -> None:
    config = SandboxConfig(inference_mean_s=2.5, inference_sigma=0.25, time_scale=0.5)
    rng = random.Random(3)
    draws = [draw_inference_s(rng, config, OUTPUT) for _ in range(4000)]
    half_size = Output("a fox", 1, 512, 1024, 1, "jpeg", 95, False)

    assert statistics.fmean(draws) == pytest.approx(1.25, rel=0.03)
    assert min(draws) < 1.0 < 1.5 < max(draws)
    assert draw_inference_s(random.Random(3), config, half_size) == pytest.approx(draws[0] / 2)

"""The fleet fixture's own promise: no worker outlives its test, also when stopping is cut short."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


class TimeoutFired(Exception):
    """Stands for pytest-timeout's failure, raised inside a worker's stop during teardown."""


def test_a_fleet_stop_cut_short_still_leaves_no_worker_running(make_fleet, monkeypatch):
    # Given a fleet of two workers
    fleet = make_fleet()
    first, second = fleet.start_worker(concurrency=1), fleet.start_worker(concurrency=1)

    def cut_short(grace_s: float = 0.0) -> None:
        raise TimeoutFired

    monkeypatch.setattr(first, "stop", cut_short)
    # When stopping it is cut short at the first worker
    with pytest.raises(TimeoutFired):
        fleet.stop()
    # Then neither worker is left running
    assert not first.running() and not second.running()

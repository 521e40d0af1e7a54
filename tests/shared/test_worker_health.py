"""The worker health file: what each check asks for, and that a probe never reads half a file."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from producer.commands.health import health
from shared.worker_health import HealthReport, check, read_report, write_report

NOW = 1_800_000_000.0


def report(**stamps: object) -> HealthReport:
    fresh = {"written_at": NOW - 1, "consumer_at": NOW - 2, "dispatcher_at": NOW - 0.5}
    return HealthReport(pid=42, hostname="w1@host", **{**fresh, **stamps})  # type: ignore[arg-type]


def test_a_fresh_worker_is_alive_and_ready():
    assert report().problems(NOW, max_age_s=60, ready=False) == []
    assert report().problems(NOW, max_age_s=60, ready=True) == []


def test_a_lost_broker_or_job_store_makes_it_unready_but_still_alive():
    # Given a worker whose consumer loop and dispatcher stopped stamping two minutes ago
    stale = report(consumer_at=NOW - 120, dispatcher_at=NOW - 120)
    # Then liveness holds (restarting helps nothing) and readiness names both parts
    assert stale.problems(NOW, max_age_s=60, ready=False) == []
    problems = stale.problems(NOW, max_age_s=60, ready=True)
    assert problems == [
        "consumer loop (broker): last seen 120s ago",
        "dispatcher (job store): last seen 120s ago",
    ]


def test_a_worker_draining_after_sigterm_is_alive_but_not_ready():
    draining = report(shutting_down=True)
    assert draining.problems(NOW, max_age_s=60, ready=False) == []
    assert any("shutting down" in p for p in draining.problems(NOW, max_age_s=60, ready=True))


def test_a_stale_heartbeat_fails_liveness():
    assert report(written_at=NOW - 61).problems(NOW, max_age_s=60, ready=False) == [
        "heartbeat: last seen 61s ago"
    ]


def test_parts_that_never_stamped_are_named():
    starting = report(consumer_at=0.0, dispatcher_at=0.0)
    assert "consumer loop (broker): not yet" in starting.problems(NOW, 60, ready=True)


def test_the_file_round_trips_and_is_replaced_whole(tmp_path):
    path = tmp_path / "health.json"
    write_report(path, report())
    write_report(path, report(shutting_down=True))
    assert read_report(path) == report(shutting_down=True)
    assert [p.name for p in tmp_path.iterdir()] == ["health.json"], "no temporary file left"


def test_a_heartbeat_stamped_in_the_future_fails_liveness_instead_of_holding_it_forever():
    assert report(written_at=NOW + 300).problems(NOW, max_age_s=60, ready=False) == [
        "heartbeat: stamped 300s in the future (was the clock changed?)"
    ]


@pytest.mark.parametrize(
    "content",
    [None, "{not json", json.dumps({"pid": 1}), "[]",
     json.dumps({"pid": 1, "hostname": "h", "written_at": "x"}),
     json.dumps({"pid": 1, "hostname": "h", "written_at": NOW, "consumer_at": None})],
)  # fmt: skip
def test_a_missing_or_unreadable_file_is_a_problem_not_a_crash(tmp_path, content):
    path = tmp_path / "health.json"
    if content is not None:
        path.write_text(content)
    (problem,) = check(path, ready=False, max_age_s=60, now=NOW)
    assert str(path) in problem


@pytest.mark.parametrize(("written_at", "max_age_s"), [(1000.0, math.nan), (math.nan, 60.0)])
def test_nan_in_the_stamp_or_the_limit_fails_instead_of_calling_a_dead_worker_fresh(
    written_at, max_age_s
):
    report = HealthReport(pid=1, hostname="w", written_at=written_at)
    assert report.problems(now=2000.0, max_age_s=max_age_s, ready=False)


@pytest.mark.parametrize("limit", ["inf", "1e400", "100000"])
def test_the_probe_refuses_a_limit_that_would_call_any_dead_worker_fresh(tmp_path, limit):
    result = CliRunner().invoke(health, ["--file", str(tmp_path / "h.json"), "--max-age-s", limit])
    assert result.exit_code == 2 and "--max-age-s" in result.output

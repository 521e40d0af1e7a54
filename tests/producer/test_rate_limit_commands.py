"""`segq status` and `segq resume` on what 429s left on the fleet's budgets: a producer
without the API key sees the holds and lowered rates, and a resume lifts the holds."""

from __future__ import annotations

import json
import re

import pytest
import redis

from shared.fleet_limiter import FleetLimiter
from shared.settings import load_settings
from tests.support.fleet import API_KEY, segq_env
from tests.support.segq_cli import enqueue_batch, run_segq

HOLD_LINE = r"submits on hold after a 429 until \S+ \(5\dm\d\ds left\)"
LOWERED_LINE = (  # 58.8 (half the configured rate in use) when learned, growing back since
    r"submits at 5[89]\.\d/min, lowered by 429s \(configured 120/min\); it grows back while "
    r"answers are good\n"
)


@pytest.fixture
def segq(redis_url):
    env = segq_env(SEGQ_REDIS_URL=redis_url)  # no SEGMIND_API_KEY, as on most producers

    def run(*args: str) -> str:
        done = run_segq(env, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    return run


def told_off(redis_url: str, redis_client: redis.Redis) -> None:
    """A worker of a fleet configured for 120 submits a minute meets a 429 naming an hour."""
    settings = load_settings({"SEGQ_REDIS_URL": redis_url, "SEGMIND_API_KEY": API_KEY},
                             submit_rate_limit=120.0)  # fmt: skip
    FleetLimiter(redis_client, settings).rate_limited("submit", 3600.0)


def test_status_shows_a_429s_hold_and_lowered_rate_and_resume_lifts_the_hold(
    segq, redis_url, redis_client
):
    # Given a batch waiting, and a 429 that put the fleet's submits on hold for an hour
    enqueue_batch(redis_url, "held", [{"prompt": "a harbour at dawn"}])
    told_off(redis_url, redis_client)
    # Then status says so, with the rate that 429 lowered
    shown = segq("status", "held")
    assert re.search(HOLD_LINE + "; segq resume lifts it\n", shown)
    assert re.search(LOWERED_LINE, shown)
    assert re.search(HOLD_LINE, segq("status", "held.1"))  # a job of it
    [state] = json.loads(segq("status", "held", "--json"))["fleet"]["rate_limits"]
    assert state["kind"] == "submit" and API_KEY not in json.dumps(state)
    assert 3000 < state["hold_left_s"] <= 3600
    assert state["learned_per_min"] == pytest.approx(58.8, abs=1)
    assert state["configured_per_min"] == 120.0
    # When the fleet is resumed, it says what it lifted and the rate the fleet goes on at
    resumed = segq("resume")
    assert re.search(r"fleet was not paused\nlifted: " + HOLD_LINE + "\n" + LOWERED_LINE, resumed)
    # And the hold is gone from status; the lowered rate is still shown
    shown = segq("status", "held")
    assert "on hold" not in shown and re.search(LOWERED_LINE, shown)


def test_without_a_429_status_says_nothing_of_rates(segq, redis_url):
    enqueue_batch(redis_url, "calm", [{"prompt": "a harbour at noon"}])
    assert "/min" not in segq("status", "calm") and "hold" not in segq("resume")
    assert json.loads(segq("status", "calm", "--json"))["fleet"]["rate_limits"] == []

"""The duration estimate a worker shares with the fleet, and a new worker starts from."""

from __future__ import annotations

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared import redis_keys
from shared.fleet_durations import SEED_RETRY_S, SHARE_EVERY_S, FleetDurations

POLL_LIMITS = {"min_s": 0.1, "max_s": 15.0}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def first_poll_in(durations: FleetDurations) -> float:
    """Seconds from a submit to its first poll."""
    return durations.next_poll_delay_s(0.0, 0, **POLL_LIMITS)


def test_a_new_worker_polls_as_late_as_the_fleet_has_learned():
    # Given a worker that has finished jobs of 30 s
    client = fakeredis.FakeRedis(decode_responses=True)
    clock = Clock()
    veteran = FleetDurations(client, clock=clock)
    for seconds in (29.5, 30.0, 30.5):
        veteran.observe(seconds)
        clock.now += SHARE_EVERY_S
    # When a new worker process starts on the same Redis
    newcomer = FleetDurations(client)
    # Then its first poll of a new job comes near those 30 s (in gaps of at most max_s),
    # where a worker with nothing to start from polls before 2 s
    first_s = first_poll_in(newcomer)
    second_s = newcomer.next_poll_delay_s(first_s, 0, **POLL_LIMITS)
    assert first_s == POLL_LIMITS["max_s"] and 25.0 < first_s + second_s < 30.0
    assert newcomer.estimate.mean_s == pytest.approx(30.0)
    assert first_poll_in(FleetDurations(fakeredis.FakeRedis())) < 2.0


def test_a_worker_shares_its_estimate_at_most_once_a_second():
    client = fakeredis.FakeRedis(decode_responses=True)
    clock = Clock()
    durations = FleetDurations(client, clock=clock)
    durations.observe(4.0)
    durations.observe(8.0)
    assert float(client.hget(redis_keys.DURATIONS, "mean_s")) == 4.0
    clock.now += SHARE_EVERY_S
    durations.observe(6.0)
    assert float(client.hget(redis_keys.DURATIONS, "mean_s")) == pytest.approx(6.0)
    assert client.hget(redis_keys.DURATIONS, "count") == "3"
    assert client.ttl(redis_keys.DURATIONS) > 0


@pytest.mark.parametrize(
    "shared",
    [{"mean_s": "inf", "deviation_s": "1", "count": "5"}, {"mean_s": "30"}],
    ids=["not finite", "incomplete"],
)
def test_a_shared_estimate_that_makes_no_sense_is_ignored(shared):
    client = fakeredis.FakeRedis(decode_responses=True)
    client.hset(redis_keys.DURATIONS, mapping=shared)
    durations = FleetDurations(client)
    assert first_poll_in(durations) < 2.0 and durations.estimate.count == 0


def test_without_redis_a_worker_learns_on_its_own_and_fails_no_job():
    # A client whose every call fails: no server on that port
    client = redis.Redis(port=1, retry=Retry(NoBackoff(), 0))
    durations = FleetDurations(client)
    assert first_poll_in(durations) < 2.0
    durations.observe(10.0)
    assert durations.estimate.mean_s == 10.0


class AwayThenBack(fakeredis.FakeRedis):
    """A Redis that refuses reads while ``away``, counting them."""

    away = True
    reads = 0

    def hmget(self, *args, **kwargs):
        self.reads += 1
        if self.away:
            raise redis.ConnectionError("Connection refused")
        return super().hmget(*args, **kwargs)


def test_while_redis_is_away_the_fleet_estimate_is_asked_for_once_in_a_while():
    client = AwayThenBack(decode_responses=True)
    client.hset(redis_keys.DURATIONS, mapping={"mean_s": 30, "deviation_s": 1, "count": 9})
    clock = Clock()
    durations = FleetDurations(client, clock=clock)
    for _ in range(50):  # many polls scheduled within one retry interval: one read
        assert first_poll_in(durations) < 2.0
    assert client.reads == 1
    client.away = False
    clock.now += SEED_RETRY_S
    assert first_poll_in(durations) == POLL_LIMITS["max_s"] and client.reads == 2
    first_poll_in(durations)
    assert client.reads == 2  # seeded: never read again

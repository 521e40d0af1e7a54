"""The fleet budget against a real Redis: what a 429 teaches, what a task may call, and pauses.

Jobs go through the same scripts the tasks use (dispatch, begin_submit, record_submitted), so
the budget learns from calls the store recorded as accepted, as in a running fleet.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import redis

from shared import redis_keys
from shared.dispatch_queue import DispatchQueue, PollHold, PollTicket
from shared.fleet_limiter import FleetLimiter
from shared.job_store import JobOptions, JobStore, NewJob
from shared.settings import load_settings

API_KEY = "SG_limiter_unit_test_key_0123456789"


@dataclass
class World:
    store: JobStore
    queue: DispatchQueue
    limiter: FleetLimiter

    def add(self, count: int, prefix: str = "j") -> list[str]:
        jobs = [NewJob(f"{prefix}{n}", {"prompt": f"a lamp {prefix}{n}"}) for n in range(count)]
        self.store.add_jobs(jobs, batch_id=None, options=JobOptions())
        return [job.job_id for job in jobs]

    def submit_dispatched(self) -> list[str]:
        """What one dispatcher step hands out, each submit then accepted upstream."""
        submitted = self.queue.dispatch().submits
        for job_id in submitted:
            assert self.queue.begin_submit(job_id).outcome == "go"
            self.queue.record_submitted(job_id, f"req-{job_id}", 5.0)
        return submitted

    def submit_dispatched_due_now(self) -> list[str]:
        """One job handed out, accepted upstream, and due for its first poll at once."""
        [job_id] = self.add(1, prefix="polled")
        assert self.queue.dispatch().submits == [job_id]
        assert self.queue.begin_submit(job_id).outcome == "go"
        self.queue.record_submitted(job_id, f"req-{job_id}", 0.0)
        return [job_id]

    def budget(self, kind: str = "submit") -> dict[str, str]:
        return self.store.redis.hgetall(redis_keys.rate(self.limiter.fingerprint, kind))


@pytest.fixture
def make_world(redis_url: str) -> Iterator[Callable[..., World]]:
    clients: list[redis.Redis] = []

    def build(**overrides: object) -> World:
        settings = load_settings(
            {"SEGQ_REDIS_URL": redis_url, "SEGMIND_API_KEY": API_KEY}, **overrides
        )
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        clients.append(client)
        store = JobStore(client, retention_s=3600)
        return World(store, DispatchQueue(store, settings), FleetLimiter(client, settings))

    yield build
    for client in clients:
        client.close()


def test_a_429_after_a_burst_learns_the_accepted_count_over_the_named_window(make_world):
    # Given an unknown limit, and 40 submits accepted at once
    world = make_world()
    world.add(40)
    assert len(world.submit_dispatched()) == 40
    # When the next one is told to wait 10 s
    hold_s = world.limiter.rate_limited("submit", 10.0)
    # Then the fleet holds 10 s, and the account allows 40 per 10 s: 240 a minute, less safety
    assert hold_s == pytest.approx(10.0, abs=0.2)
    assert world.limiter.status("submit")["learned_per_min"] == pytest.approx(240 * 0.98, rel=0.03)


def test_a_429_without_a_named_window_holds_two_seconds_and_learns_the_last_minute(make_world):
    world = make_world()
    world.add(12)
    world.submit_dispatched()
    assert world.limiter.rate_limited("submit", None) == pytest.approx(2.0, abs=0.2)
    assert world.limiter.status("submit")["learned_per_min"] == pytest.approx(12 * 0.98)


def test_a_429_naming_a_window_past_a_minute_learns_the_last_minute(make_world):
    # Given 30 submits accepted, and a 429 whose reset reads as a day away (a garbled header)
    world = make_world()
    world.add(30)
    world.submit_dispatched()
    assert world.limiter.rate_limited("submit", 86_400.0) == pytest.approx(86_400.0, abs=1)
    # Then, the hold over, the fleet goes on at what the last minute held, not at 5 a minute
    assert world.limiter.status("submit")["learned_per_min"] == pytest.approx(30 * 0.98)


def test_429s_that_arrive_during_the_hold_shrink_the_rate_once(make_world):
    world = make_world()
    world.add(30)
    world.submit_dispatched()
    world.limiter.rate_limited("submit", 6.0)
    first = world.limiter.status("submit")["learned_per_min"]
    for _ in range(20):  # the rest of the burst, sent before the hold was known
        world.limiter.rate_limited("submit", 6.0)
    assert world.limiter.status("submit")["learned_per_min"] == pytest.approx(first, rel=0.01)


def test_429s_naming_a_window_already_over_still_hold_and_shrink_the_rate_once(make_world):
    # Given 30 submits accepted, and a burst of 429s whose reset time is already past
    world = make_world()
    world.add(30)
    world.submit_dispatched()
    first_hold_s = world.limiter.rate_limited("submit", 0.0)
    first = world.limiter.status("submit")["learned_per_min"]
    for _ in range(20):
        world.limiter.rate_limited("submit", 0.0)
    # Then the fleet still holds a moment, and the burst cuts the rate once, not down to 1
    assert first_hold_s == pytest.approx(1.0, abs=0.1)
    assert world.limiter.status("submit")["learned_per_min"] == pytest.approx(first, rel=0.01)


def test_a_429_during_the_hold_counts_accepted_calls_recorded_after_the_first(make_world):
    # Given 40 submits sent at once, of which Segmind accepted all; the first 429 is read
    # while the answers of 10 of them are still on their way (a loaded worker)
    world = make_world()
    world.add(40)
    submits = world.queue.dispatch().submits
    for job_id in submits:
        assert world.queue.begin_submit(job_id).outcome == "go"
    for job_id in submits[:30]:
        world.queue.record_submitted(job_id, f"req-{job_id}", 5.0)
    world.limiter.rate_limited("submit", 10.0)
    first = world.limiter.status("submit")["learned_per_min"]
    # When those answers are recorded, and another call of the burst gets its 429
    for job_id in submits[30:]:
        world.queue.record_submitted(job_id, f"req-{job_id}", 5.0)
    world.limiter.rate_limited("submit", 10.0)
    # Then the fleet learns the 40 the window really held, not the 30 counted at first
    assert first == pytest.approx(180 * 0.98, rel=0.03)
    assert world.limiter.status("submit")["learned_per_min"] == pytest.approx(240 * 0.98, rel=0.03)


def test_the_learned_rate_is_never_above_the_configured_rate_in_use(make_world):
    # Given a configured 60/min, though the store recorded 200 accepted submits just now
    world = make_world(submit_rate_limit=60.0)
    world.store.redis.zadd(
        redis_keys.rate_accepted(world.limiter.fingerprint, "submit"),
        {f"req-{n}": time.time() for n in range(200)},
    )
    # When a 429 comes anyway
    world.limiter.rate_limited("submit", 1.0)
    # Then the rate goes down from the one in use, not up to what the count suggests
    assert world.limiter.status("submit")["learned_per_min"] <= 60 * 0.98 * 0.98 + 1e-9


def test_one_429_on_a_quiet_minute_at_most_halves_the_rate_in_use(make_world):
    # Given a configured 600/min, and a minute in which only 3 calls were counted
    world = make_world(poll_rate_limit=600.0)
    for _ in range(3):
        world.limiter.take_slot("poll")
    # When a 429 comes that names no window (the count then spans the whole minute)
    world.limiter.rate_limited("poll", None)
    # Then the fleet slows to half the rate in use, not to the handful of calls it counted
    assert world.limiter.status("poll")["learned_per_min"] == pytest.approx(600 * 0.98 * 0.5)


def test_result_fetches_count_as_accepted_poll_calls_with_the_status_before_them(make_world):
    world = make_world()
    for _ in range(5):
        world.limiter.take_slot("poll")
    accepted = redis_keys.rate_accepted(world.limiter.fingerprint, "poll")
    assert world.store.redis.zcard(accepted) == 10


def test_without_a_configured_limit_the_learned_rate_grows_back_two_percent_a_minute(make_world):
    world = make_world()
    world.add(20)
    world.submit_dispatched()
    world.limiter.rate_limited("submit", 0.0)
    learned = world.limiter.status("submit")["learned_per_min"]
    # Five minutes of good answers later (the 429 moved back in time) ...
    key = redis_keys.rate(world.limiter.fingerprint, "submit")
    world.store.redis.hincrbyfloat(key, "last_429_at", -300)
    world.store.redis.hincrbyfloat(key, "hold_until", -300)
    world.add(1, prefix="later")
    assert world.submit_dispatched() == ["later0"]
    # ... the dispatcher spends at 10% more than it learned
    assert float(world.budget()["rate_per_min"]) == pytest.approx(learned * 1.10, rel=0.01)


def test_a_rate_learned_under_a_lower_configured_limit_yields_to_a_raised_one(make_world):
    # Given a fleet configured for 20/min that learned about that much from a 429
    world = make_world(submit_rate_limit=20.0)
    world.add(2)
    assert len(world.submit_dispatched()) == 1
    world.limiter.rate_limited("submit", 0.0)
    assert world.limiter.status("submit")["learned_per_min"] <= 20
    key = redis_keys.rate(world.limiter.fingerprint, "submit")
    world.store.redis.hset(key, mapping={"tat": 0, "hold_until": 0})  # a moment later
    # When the account's plan is raised and the workers restart with 120/min
    raised = make_world(submit_rate_limit=120.0)
    assert len(raised.submit_dispatched()) == 1
    # Then they spend at the configured rate, not at the old learned one growing 2% a minute
    assert float(raised.budget()["rate_per_min"]) == pytest.approx(120 * 0.98)


def test_a_task_published_before_a_429_is_held_until_the_window_ends(make_world):
    # Given a job being polled and a job whose submit task waits in the broker
    world = make_world()
    polled, waiting = world.add(2)
    assert world.queue.dispatch().submits == [polled, waiting]
    world.queue.begin_submit(polled)
    world.queue.record_submitted(polled, "req-polled", 0.0)
    # When a 429 puts the submit budget on hold for 4 s
    world.limiter.rate_limited("submit", 4.0)
    # Then the waiting submit is held, and its job is back at the front of its lane, unclaimed
    claim = world.queue.begin_submit(waiting)
    assert claim.outcome == "hold"
    assert claim.wait_s == pytest.approx(4.0, abs=0.2)
    assert world.store.redis.lrange(redis_keys.bulk_lane(None), 0, -1) == [waiting]
    assert world.store.redis.hget(redis_keys.job(waiting), "claim") is None
    # And the poll budget is another budget: polls go on
    [(job_id, token)] = world.queue.dispatch().polls
    assert job_id == polled
    assert isinstance(world.queue.begin_poll(polled, token), PollTicket)


def test_a_poll_held_by_a_429_counts_no_poll_and_comes_back_after_the_window(make_world):
    # Given a job due for a poll
    world = make_world()
    [job_id] = world.submit_dispatched_due_now()
    [(_, token)] = world.queue.dispatch().polls
    # When a 429 on a status call puts the poll budget on hold for 3 s
    world.limiter.rate_limited("poll", 3.0)
    # Then its poll task is told to hold, no poll is counted, and the job is due after the hold
    hold = world.queue.begin_poll(job_id, token)
    assert isinstance(hold, PollHold) and hold.wait_s == pytest.approx(3.0, abs=0.2)
    assert world.store.redis.hget(redis_keys.job(job_id), "polls") is None
    due_in_s = world.store.redis.zscore(redis_keys.DUE, job_id) - time.time()
    assert due_in_s == pytest.approx(3.0, abs=0.3)


def test_only_the_probe_submits_while_an_account_pause_lasts(make_world):
    # Given five submit tasks in the broker when an account pause probed every 0.3 s begins
    world = make_world(account_pause_seconds=0.3)
    ids = world.add(5)
    assert world.queue.dispatch().submits == ids
    world.queue.pause_fleet("406: Insufficient credits. Your balance is $0.0000")
    # Then none of them submits: each job goes back to its lane
    for job_id in ids:
        claim = world.queue.begin_submit(job_id)
        assert (claim.outcome, claim.reason) == (
            "paused",
            "406: Insufficient credits. Your balance is $0.0000",
        )
    assert world.queue.dispatch().submits == []
    # When the probe is due, one job is handed out and only that one may call
    time.sleep(0.35)
    [probe] = world.queue.dispatch().submits
    assert world.queue.begin_submit(probe).outcome == "go"
    assert world.queue.dispatch().submits == []
    # Then its acceptance ends the pause for everyone
    world.queue.record_submitted(probe, "req-probe", 5.0)
    others = world.queue.dispatch().submits
    assert sorted(others) == sorted(j for j in ids if j != probe)
    assert {world.queue.begin_submit(j).outcome for j in others} == {"go"}


def test_a_submit_sent_before_the_pause_does_not_end_it(make_world):
    world = make_world()
    early, later = world.add(2)
    assert world.queue.dispatch().submits == [early, later]
    world.queue.begin_submit(early)
    world.queue.pause_fleet("401: Unauthorized")  # another task's call was refused meanwhile
    world.queue.record_submitted(early, "req-early", 5.0)  # answered after the pause began
    assert world.store.redis.hget(redis_keys.FLEET, "paused") == "1"
    assert world.queue.begin_submit(later).outcome == "paused"


def test_a_manual_pause_stops_even_the_probe_until_resume(make_world):
    world = make_world(account_pause_seconds=0.2)
    [job_id] = world.add(1)
    assert world.queue.dispatch().submits == [job_id]
    world.queue.pause_fleet("403: Forbidden")
    world.store.pause_fleet("maintenance")
    time.sleep(0.25)
    assert world.queue.begin_submit(job_id).reason == "maintenance"
    assert world.queue.dispatch().submits == []
    world.store.resume_fleet()
    assert world.queue.dispatch().submits == [job_id]
    assert world.queue.begin_submit(job_id).outcome == "go"


def test_with_celerys_rate_limit_429s_neither_hold_nor_teach_the_fleet(make_world):
    world = make_world(rate_limiter="celery", submit_rate_limit=30.0)
    [job_id] = world.add(1)
    assert world.limiter.rate_limited("submit", 5.0) == 0.0
    assert world.queue.dispatch().submits == [job_id]
    assert world.queue.begin_submit(job_id).outcome == "go"
    assert world.budget() == {}


def test_result_fetches_take_evenly_spaced_poll_slots(make_world):
    """The spacing is read off the slots themselves (the budget's next arrival time after each
    take), not off waits measured at successive moments, which time passing shrinks."""
    world = make_world(poll_rate_limit=60.0)  # 1 a second, 0.98 with the safety factor
    waits, next_slots = [], []
    for _ in range(4):
        waits.append(world.limiter.take_slot("poll"))
        next_slots.append(float(world.budget("poll")["tat"]))
    assert waits[0] == pytest.approx(0.0, abs=0.01)
    assert waits == sorted(waits)
    assert [b - a for a, b in itertools.pairwise(next_slots)] == pytest.approx(
        [60 / (60 * 0.98)] * 3, abs=1e-6
    )


def test_budgets_are_named_by_a_hash_of_the_api_key_never_the_key(make_world):
    world = make_world(submit_rate_limit=60.0)
    world.add(3)
    world.submit_dispatched()
    world.limiter.rate_limited("submit", 1.0)
    keys = list(world.store.redis.scan_iter("segq:rate:*"))
    assert keys and all(API_KEY not in key for key in keys)
    values = [str(v) for key in keys if key.endswith(":submit") for v in world.budget().values()]
    assert all(API_KEY not in value for value in values)


def learned_before(world: World, learned_per_min: float, minutes_ago: float) -> None:
    """A budget configured for 120/min that learned ``learned_per_min`` from a 429
    ``minutes_ago``, its hold over."""
    key = redis_keys.rate(world.limiter.fingerprint, "submit")
    at = time.time() - minutes_ago * 60
    world.store.redis.hset(key, mapping={"learned": learned_per_min, "last_429_at": at,
                                         "learned_max": 120.0, "hold_until": at + 1})  # fmt: skip


def test_with_a_configured_limit_stray_429s_cost_at_most_ten_minutes(make_world):
    # Given 120/min configured, and 22 stray 429s (another client of the key) that took the
    # rate from 117.6 down to 33.3 a minute
    world = make_world(submit_rate_limit=120.0)
    learned_before(world, 33.3, minutes_ago=10)
    # When ten minutes of good answers have passed since the last one
    world.add(1)
    assert len(world.submit_dispatched()) == 1
    # Then the fleet spends at the configured rate again
    assert float(world.budget()["rate_per_min"]) == pytest.approx(120 * 0.98)


def test_a_key_shared_with_a_busy_client_creeps_back_up_after_its_429(make_world):
    # Given 120/min configured, and a 429 a minute ago that left the rate at the key's room
    # beside another busy client (58.8 a minute)
    world = make_world(submit_rate_limit=120.0)
    learned_before(world, 58.8, minutes_ago=1)
    # Then the rate is only about 2% higher, not 10% of the configured rate (which would be
    # past the room within seconds of every 429)
    world.add(1)
    assert len(world.submit_dispatched()) == 1
    assert float(world.budget()["rate_per_min"]) == pytest.approx(58.8 * 1.02, rel=0.01)


def test_resume_lifts_a_429s_hold_and_keeps_the_rate_it_taught(make_world):
    # Given 30 submits accepted, then a 429 naming a window a day long
    world = make_world()
    world.add(30)
    world.submit_dispatched()
    world.limiter.rate_limited("submit", 86_400.0)
    learned = float(world.budget()["learned"])
    [waiting] = world.add(1, prefix="waiting")
    assert world.queue.dispatch().submits == []
    # When the fleet is resumed
    resumed = world.store.resume_fleet()
    # Then the hold is lifted and said so, the job is handed out, and the learned rate stays
    assert not resumed.was_paused
    [lifted] = resumed.holds_lifted
    assert (lifted.kind, lifted.account) == ("submit", world.limiter.fingerprint)
    assert lifted.hold_left_s == pytest.approx(86_400, abs=5)
    assert world.queue.dispatch().submits == [waiting]
    assert float(world.budget()["rate_per_min"]) == pytest.approx(learned, rel=0.01)
    assert world.store.resume_fleet().holds_lifted == []


def test_resume_brings_the_polls_a_hold_turned_away_forward(make_world):
    # Given a job whose poll was turned away by a poll budget's hold of an hour
    world = make_world()
    [job_id] = world.submit_dispatched_due_now()
    [(_, token)] = world.queue.dispatch().polls
    world.limiter.rate_limited("poll", 3600.0)
    assert isinstance(world.queue.begin_poll(job_id, token), PollHold)
    # When the fleet is resumed, the job is polled at once rather than in an hour
    [lifted] = world.store.resume_fleet().holds_lifted
    assert lifted.kind == "poll"
    assert [polled for polled, _ in world.queue.dispatch().polls] == [job_id]


def test_the_fleet_state_shows_holds_and_lowered_rates_without_the_api_key(make_world):
    # Given a 429 on a fleet configured for 120/min, read by a producer that has no API key
    world = make_world(submit_rate_limit=120.0)
    world.add(1)
    world.submit_dispatched()
    world.limiter.rate_limited("submit", 30.0)
    producer_side = JobStore(world.store.redis, retention_s=3600)
    # Then it sees the hold and the learned rate in use, below the configured rate
    [state] = producer_side.fleet_state().rate_limits
    assert (state.kind, state.account) == ("submit", world.limiter.fingerprint)
    assert state.hold_left_s == pytest.approx(30, abs=1)
    assert state.hold_until == pytest.approx(time.time() + 30, abs=1)
    assert state.learned_per_min == pytest.approx(float(world.budget()["learned"]), rel=0.01)
    assert state.configured_per_min == 120.0
    # And once the rate has grown back to the configured one, nothing is left to show
    learned_before(world, 33.3, minutes_ago=10)
    assert producer_side.fleet_state().rate_limits == []

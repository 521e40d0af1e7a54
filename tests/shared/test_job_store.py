"""The job store against a real Redis: idempotency, the broker window, priority, claims,
leases, tokens, cancel, retry, retention and the fleet budget."""

from __future__ import annotations

import time

import pytest
import redis

from shared import redis_keys
from shared.dispatch_queue import DispatchQueue, Retried
from shared.errors import InputError, JobNotFound
from shared.fleet_limiter import FleetLimiter
from shared.job_model import JobFailure, JobState
from shared.job_store import Added, BatchSummary, JobOptions, JobStore, NewJob, batch_job_id
from shared.settings import load_settings


@pytest.fixture
def make_world(redis_url: str):
    """Builds (store, queue) over the test's Redis with settings overrides."""
    clients: list[redis.Redis] = []

    def build(retention_s: int = 3600, **overrides: object) -> tuple[JobStore, DispatchQueue]:
        settings = load_settings(
            {"SEGQ_REDIS_URL": redis_url, "SEGMIND_API_KEY": "test-key"}, **overrides
        )
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        clients.append(client)
        store = JobStore(client, retention_s=retention_s)
        return store, DispatchQueue(store, settings)

    yield build
    for client in clients:
        client.close()


def add_batch(store: JobStore, batch_id: str, lines: int, **options: object) -> list[str]:
    store.open_batch(batch_id, defaults={"steps": 6}, options=JobOptions(**options), source=None)
    jobs = [NewJob(batch_job_id(batch_id, n), {"prompt": f"p{n}"}, n) for n in range(1, lines + 1)]
    store.add_jobs(jobs, batch_id=batch_id, options=JobOptions(**options))
    return [job.job_id for job in jobs]


def submit_all(queue: DispatchQueue) -> list[str]:
    plan = queue.dispatch()
    for job_id in plan.submits:
        assert queue.begin_submit(job_id).outcome == "go"
        queue.record_submitted(job_id, f"req-{job_id}", 0.0)
    return plan.submits


def test_adding_the_same_jobs_twice_creates_them_once(make_world):
    store, _ = make_world()
    add_batch(store, "b", 5)
    again = store.add_jobs(
        [NewJob(batch_job_id("b", n), {"prompt": "other" if n > 3 else f"p{n}"}, n)
         for n in range(1, 7)],
        batch_id="b",
        options=JobOptions(),
    )  # fmt: skip
    assert again == [Added.EXISTED] * 3 + [Added.DIFFERS] * 2 + [Added.CREATED]
    summary = store.get_batch("b")
    assert summary.total == 6 and summary.counts["queued"] == 6
    assert store.get_job("b.1").params == {"steps": 6, "prompt": "p1"}


def test_unknown_job_and_batch_raise_job_not_found(make_world):
    store, _ = make_world()
    with pytest.raises(JobNotFound):
        store.get_job("nope.1")
    with pytest.raises(JobNotFound):
        store.get_batch("nope")


def test_broker_window_bounds_submits_handed_out(make_world):
    store, queue = make_world(broker_window=3)
    add_batch(store, "b", 10)
    first = queue.dispatch()
    assert len(first.submits) == 3
    assert queue.dispatch().submits == []
    queue.begin_submit(first.submits[0])
    queue.record_submitted(first.submits[0], "req-1", 5.0)
    assert len(queue.dispatch().submits) == 1


def test_interactive_jobs_go_first_but_bulk_gets_every_fourth_slot(make_world):
    store, queue = make_world()
    add_batch(store, "bulk", 10)
    add_batch(store, "now", 10, priority="interactive")
    plan = queue.dispatch(max_items=8)
    order = [job_id.split(".")[0] for job_id in plan.submits]
    assert order == ["now"] * 3 + ["bulk"] + ["now"] * 3 + ["bulk"]
    assert plan.interactive == {job_id for job_id in plan.submits if job_id.startswith("now")}


def test_bulk_batches_share_slots_round_robin(make_world):
    store, queue = make_world()
    add_batch(store, "a", 5)
    add_batch(store, "b", 5)
    order = [job_id.split(".")[0] for job_id in queue.dispatch(max_items=6).submits]
    assert order == ["a", "b", "a", "b", "a", "b"]


def test_a_claimed_submit_cannot_be_claimed_again(make_world):
    store, queue = make_world()
    [job_id] = add_batch(store, "b", 1)
    queue.dispatch()
    assert queue.begin_submit(job_id).outcome == "go"
    assert queue.begin_submit(job_id).outcome == "busy"
    queue.record_submitted(job_id, "req-1", 1.0)
    assert queue.begin_submit(job_id).outcome == "skip"
    assert store.get_job(job_id).request_id == "req-1"


def test_expired_submit_lease_puts_the_job_back_in_front(make_world):
    store, queue = make_world()
    add_batch(store, "b", 3)
    [first] = queue.dispatch(max_items=1).submits
    store.redis.zadd(redis_keys.DISPATCHED, {first: 0})  # the worker holding it died
    assert queue.dispatch(max_items=1).submits == [first]


def test_a_submit_claimed_late_in_its_lease_stays_leased_until_its_claim_runs_out(make_world):
    # Given a submit message that waited in the broker: its task claims the job just as the
    # lease (counted from the dispatch) runs out
    store, queue = make_world()
    claimed, waiting = add_batch(store, "b", 2)
    assert queue.dispatch(max_items=1).submits == [claimed]
    assert queue.begin_submit(claimed).outcome == "go"
    store.redis.zadd(redis_keys.DISPATCHED, {claimed: 0})
    # Then the next step leaves it leased (its call is under way), not back in its lane
    assert queue.dispatch().submits == [waiting]
    assert store.redis.zscore(redis_keys.DISPATCHED, claimed) > time.time()
    assert store.redis.lrange(redis_keys.bulk_lane("b"), 0, -1) == []
    # And a batch cancel meanwhile counts each job once, whenever the submit is recorded
    store.cancel_batch("b")
    queue.record_submitted(claimed, "req-1", 1.0)
    counts = {state: n for state, n in store.get_batch("b").counts.items() if n}
    assert counts == {"cancelled": 2}


def test_a_submit_message_whose_lease_ran_out_claims_nothing(make_world):
    # Given a job whose lease ran out before its message reached a task: the step that put it
    # back in its lane could not hand it out again (the fleet is paused)
    store, queue = make_world()
    [job_id] = add_batch(store, "b", 1)
    assert queue.dispatch().submits == [job_id]
    store.redis.zadd(redis_keys.DISPATCHED, {job_id: 0})
    store.pause_fleet("by hand")
    assert queue.dispatch().submits == []
    # When the late message arrives, it neither claims the job nor puts it in its lane again
    assert queue.begin_submit(job_id).outcome == "skip"
    assert store.redis.lrange(redis_keys.bulk_lane("b"), 0, -1) == [job_id]
    assert store.redis.hget(redis_keys.job(job_id), "claim") is None
    # And the job is handed out once the fleet resumes, and that message claims it
    store.resume_fleet()
    assert queue.dispatch().submits == [job_id]
    assert queue.begin_submit(job_id).outcome == "go"


def test_a_claimed_submit_keeps_its_record_however_long_it_waited_in_its_lane(make_world):
    store, queue = make_world(retention_s=3600)
    [job_id] = add_batch(store, "b", 1)
    queue.dispatch()
    for key in (redis_keys.job(job_id), redis_keys.batch("b")):
        store.redis.expire(key, 1)  # it waited nearly the retention
    assert queue.begin_submit(job_id).outcome == "go"
    claim_s = queue.settings.lease_s
    assert store.redis.ttl(redis_keys.job(job_id)) >= claim_s - 1
    assert store.redis.ttl(redis_keys.batch("b")) >= claim_s - 1


def test_only_the_current_poll_token_may_poll(make_world):
    store, queue = make_world()
    [job_id] = add_batch(store, "b", 1)
    submit_all(queue)
    [(polled, token)] = queue.dispatch().polls
    assert polled == job_id
    store.redis.zadd(redis_keys.DUE, {job_id: 0})  # lease ran out: published again
    [(_, newer)] = queue.dispatch().polls
    assert queue.begin_poll(job_id, token) is None
    ticket = queue.begin_poll(job_id, newer)
    assert ticket is not None and ticket.request_id == "req-b.1" and ticket.polls == 1


def test_a_draining_worker_hands_back_a_published_submit_unless_it_was_claimed(make_world):
    store, queue = make_world()
    first, second = add_batch(store, "b", 2)
    assert queue.dispatch().submits == [first, second]
    assert queue.begin_submit(second).outcome == "go"
    # the first was only published: it goes back to the front of its lane, once
    assert queue.hand_back(first) is True
    assert queue.hand_back(first) is False
    # the second was claimed by a task that is calling Segmind: it stays that task's
    assert queue.hand_back(second) is False
    assert queue.dispatch().submits == [first]


def test_a_draining_worker_hands_back_a_poll_only_with_its_current_token(make_world):
    store, queue = make_world()
    [job_id] = add_batch(store, "b", 1)
    submit_all(queue)
    [(_, token)] = queue.dispatch().polls
    assert queue.hand_back(job_id, token) is True
    [(_, newer)] = queue.dispatch().polls  # due at once, not after the lease
    assert newer != token
    assert queue.hand_back(job_id, token) is False
    ticket = queue.begin_poll(job_id, newer)
    assert ticket is not None and ticket.polls == 1
    assert queue.hand_back(job_id, newer) is False  # begun: no longer in segq:polling


def test_running_and_finishing_moves_counters_once(make_world):
    store, queue = make_world()
    [job_id] = add_batch(store, "b", 1)
    submit_all(queue)
    [(_, token)] = queue.dispatch().polls
    queue.record_progress(job_id, token, "PROCESSING", 10.0)
    assert store.get_job(job_id).state is JobState.RUNNING
    first = queue.finish(job_id, JobState.COMPLETED, outputs=["http://x/0.jpg"], metrics={"a": 1})
    second = queue.finish(job_id, JobState.FAILED, failure=JobFailure(kind="x", detail="y"))
    assert first.ended and not second.ended
    job = store.get_job(job_id)
    assert job.state is JobState.COMPLETED and job.outputs == ["http://x/0.jpg"]
    summary = store.get_batch("b")
    assert summary.counts["completed"] == 1 and summary.is_terminal
    assert store.redis.zcard(redis_keys.INFLIGHT) == 0 and store.redis.zcard(redis_keys.DUE) == 0


def test_transient_failures_end_as_retries_exhausted_with_the_last_error(make_world):
    store, queue = make_world(max_attempts=2)
    [job_id] = add_batch(store, "b", 1)
    failure = JobFailure(kind="transient", http_status=503, detail="<html>busy</html>")
    for _ in range(2):
        store.redis.zadd(redis_keys.DUE, {job_id: 0})
        queue.dispatch()
        queue.dispatch()
        assert queue.begin_submit(job_id).outcome == "go"
        retried = queue.retry_later(job_id, 0.0, failure)
    assert retried.ending.ended
    job = store.get_job(job_id)
    assert job.state is JobState.FAILED and job.error == retried.exhausted
    assert job.error.kind == "retries_exhausted" and "busy" in job.error.detail
    assert store.get_batch("b").failures_by_kind == {"retries_exhausted": 1}


def test_a_job_segmind_accepted_is_polled_through_failures_until_its_result_expires(make_world):
    store, queue = make_world(max_attempts=2, upstream_retention_s=3600)
    [job_id] = add_batch(store, "b", 1)
    submit_all(queue)
    failure = JobFailure(kind="transient", http_status=503, detail="<html>down</html>")
    # Given an outage: more transient failures while polling than max_attempts allows
    for _ in range(5):
        retried = queue.retry_later(job_id, 0.0, failure)
        assert not retried.ending.ended and retried.exhausted is None
    assert store.get_job(job_id).state is JobState.SUBMITTED
    # When Segmind accepted it longer ago than it keeps results
    store.redis.hset(redis_keys.job(job_id), "submitted_at", time.time() - 3601)
    retried = queue.retry_later(job_id, 0.0, failure)
    # Then the next failure ends it, and says why
    exhausted = retried.exhausted
    assert retried.ending.ended and retried.ending.request_id == f"req-{job_id}"
    assert exhausted is not None and exhausted == store.get_job(job_id).error
    assert exhausted.kind == "retries_exhausted" and exhausted.http_status == 503
    assert "since it accepted the job" in exhausted.detail and "down" in exhausted.detail


def fail_submits(queue: DispatchQueue, failure: JobFailure) -> list[Retried]:
    """Claims every submit a dispatch hands out (all on their way at once), then fails each
    with ``failure``."""
    job_ids = queue.dispatch().submits
    assert [queue.begin_submit(job_id).outcome for job_id in job_ids] == ["go"] * len(job_ids)
    return [queue.retry_later(job_id, 0.0, failure) for job_id in job_ids]


def test_an_outage_pauses_submits_without_spending_attempts_until_segmind_answers(make_world):
    # Given a fleet that calls five failures in a row an outage, and probes every 30 s then
    store, queue = make_world(max_attempts=2, outage_failures=5, outage_probe_seconds=30)
    [accepted] = add_batch(store, "a", 1)
    submit_all(queue)
    waiting = add_batch(store, "b", 10)
    # When ten submits fail one after another, with no good answer between them
    outcomes = fail_submits(queue, JobFailure(kind="transient", http_status=None, detail="refused"))
    # Then the fifth pauses the fleet's submits; it and the five after it go back to their lane
    assert [o.fleet_paused for o in outcomes] == [False] * 4 + [True] + [False] * 5
    assert [o.back_in_lane for o in outcomes] == [False] * 4 + [True] * 6
    fleet = store.fleet_state()
    assert fleet.paused and not fleet.manual
    assert fleet.reason == "Segmind unavailable: 5 failures in a row, the last no answer: refused"
    probe_at = float(store.redis.hget(redis_keys.FLEET, "probe_at"))
    assert 25 < probe_at - time.time() <= 30
    jobs = store.get_jobs(waiting)
    assert all(job.state is JobState.QUEUED for job in jobs)
    assert sorted(job.attempts for job in jobs) == [0] * 6 + [1] * 4
    # And no submit goes out until the probe is due, none was spent on the outage
    assert queue.dispatch().submits == []
    # When Segmind answers a poll, the pause ends at once and submits flow again
    queue.record_progress(accepted, "any-token", "PROCESSING", 1.0)
    assert not store.fleet_state().paused
    assert sorted(queue.dispatch().submits) == sorted(waiting)


def test_a_poll_answer_does_not_end_an_account_pause(make_world):
    store, queue = make_world()
    [accepted] = add_batch(store, "a", 1)
    submit_all(queue)
    queue.pause_fleet("401: Unauthorized")
    queue.record_progress(accepted, "any-token", "PROCESSING", 1.0)
    assert store.fleet_state().reason == "401: Unauthorized"


def test_cancel_batch_is_one_step_and_leaves_nothing_to_dispatch(make_world):
    store, queue = make_world()
    add_batch(store, "big", 2000)
    handed_out = queue.dispatch(max_items=5).submits
    summary = store.cancel_batch("big")
    assert summary.counts["cancelled"] == 2000 and summary.counts["queued"] == 0
    assert store.redis.zcard(redis_keys.DISPATCHED) == 0
    assert queue.dispatch().submits == []
    assert store.get_job("big.1999").state is JobState.CANCELLED
    assert store.get_job(handed_out[0]).state is JobState.CANCELLED
    with pytest.raises(InputError):
        store.open_batch("big", defaults={}, options=JobOptions(), source=None)


def test_cancelling_a_job_of_a_cancelled_batch_counts_it_once(make_world):
    store, _ = make_world()
    first, second, _ = add_batch(store, "b", 3)
    store.cancel_batch("b")
    assert store.cancel_job(first).state is JobState.CANCELLED
    store.cancel_job(second)
    summary = store.get_batch("b")
    assert (summary.counts["cancelled"], summary.counts["queued"], summary.done) == (3, 0, 3)
    assert store.state_counts() == {"queued": 0, "cancelled": 3}


def test_jobs_enqueued_after_their_batch_was_cancelled_are_cancelled_too(make_world):
    # Given a batch file being enqueued a chunk at a time, cancelled after its first chunk
    store, queue = make_world()
    [told] = add_batch(store, "b", 1, webhook_url="https://example.test/hook")
    store.cancel_batch("b")
    # When the next chunk arrives
    late = [NewJob(batch_job_id("b", n), {"prompt": f"p{n}"}, n) for n in (2, 3)]
    options = JobOptions(webhook_url="https://example.test/hook")
    assert store.add_jobs(late, batch_id="b", options=options) == [Added.CREATED] * 2
    # Then its jobs are cancelled with the batch: none is submitted, each is told
    plan = queue.dispatch()
    assert plan.submits == [] and plan.notices == [told, "b.2", "b.3"]
    summary = store.get_batch("b")
    assert (summary.total, summary.counts["cancelled"], summary.counts["queued"]) == (3, 3, 0)
    assert summary.is_terminal and store.get_job("b.3").state is JobState.CANCELLED


def test_cancelling_an_interactive_batch_keeps_the_other_interactive_jobs_in_order(make_world):
    store, queue = make_world()
    first = add_batch(store, "ia", 1500, priority="interactive")
    add_batch(store, "ib", 2500, priority="interactive")
    [lone] = add_batch(store, "ic", 1, priority="interactive")
    handed_out = queue.dispatch(max_items=2).submits  # two of ia's jobs are in the broker
    summary = store.cancel_batch("ib")
    assert summary.counts["cancelled"] == 2500 and summary.counts["queued"] == 0
    assert store.redis.lrange(redis_keys.INTERACTIVE_LANE, 0, -1) == [*first[2:], lone]
    assert store.get_job("ib.2500").state is JobState.CANCELLED
    assert [store.get_job(job_id).state for job_id in handed_out] == [JobState.QUEUED] * 2


def test_retry_resubmits_rejected_jobs_and_repolls_exhausted_ones(make_world):
    store, queue = make_world()
    rejected, exhausted = add_batch(store, "b", 2)
    submit_all(queue)
    queue.finish(rejected, JobState.FAILED, failure=JobFailure(kind="rejected", detail="bad"))
    queue.finish(
        exhausted, JobState.FAILED, failure=JobFailure(kind="retries_exhausted", detail="x")
    )
    assert store.retry_batch("b") == 2
    assert store.get_job(rejected).state is JobState.QUEUED
    assert store.get_job(rejected).request_id is None
    resumed = store.get_job(exhausted)
    assert resumed.state is JobState.SUBMITTED and resumed.request_id == f"req-{exhausted}"
    assert store.get_batch("b").failures_by_kind == {}


def test_a_failed_job_of_a_cancelled_batch_does_not_run_again(make_world):
    store, queue = make_world()
    failed, _ = add_batch(store, "b", 2)
    submit_all(queue)
    queue.finish(failed, JobState.FAILED, failure=JobFailure(kind="rejected", detail="bad"))
    store.cancel_batch("b")
    with pytest.raises(InputError, match="batch b was cancelled"):
        store.retry_job(failed)
    assert store.get_job(failed).state is JobState.FAILED
    assert queue.dispatch().submits == []


def test_in_flight_jobs_that_lost_their_next_poll_are_made_due_again(make_world):
    # Given five jobs accepted upstream: one whose poll task waits in the broker, one whose
    # record is gone, and then segq:due evicted
    store, queue = make_world()
    add_batch(store, "b", 5)
    submit_all(queue)
    [(in_broker, _)] = queue.dispatch(max_items=1).polls
    store.redis.delete(redis_keys.job("b.5"), redis_keys.DUE)
    assert queue.dispatch().polls == []  # stranded: nothing would ever poll them again
    # When the in-flight set is repaired, two entries per script call
    assert queue.repair_due(per_call=2) == 3
    # Then the three that lost their poll are polled, the gone one leaves segq:inflight, and
    # the one whose poll waits in the broker is left to that poll
    assert sorted(job_id for job_id, _ in queue.dispatch().polls) == ["b.2", "b.3", "b.4"]
    assert in_broker == "b.1"
    assert store.redis.zrange(redis_keys.INFLIGHT, 0, -1) == ["b.1", "b.2", "b.3", "b.4"]
    assert queue.repair_due() == 0


def test_retention_leaves_no_job_or_index_behind(make_world):
    store, queue = make_world(retention_s=1)
    add_batch(store, "b", 3)
    for job_id in submit_all(queue):
        queue.finish(job_id, JobState.FAILED, failure=JobFailure(kind="rejected", detail="no"))
    time.sleep(1.3)
    left = {key for key in store.redis.scan_iter("segq:*")}
    per_job = {key for key in left if ":job:" in key or ":batch:" in key or ":lane:" in key}
    assert per_job == set()
    assert left <= {redis_keys.STATS, redis_keys.FLEET, redis_keys.LANE_RING} | {
        key for key in left if key.startswith("segq:rate:")
    }
    assert all(store.redis.ttl(key) > 0 for key in left if key.startswith("segq:rate:"))


def test_known_rate_paces_submits_fleet_wide(make_world):
    store, queue = make_world(submit_rate_limit=600)  # 10 a second (9.8 with the safety factor)
    add_batch(store, "b", 100)
    handed_out, start = 0, time.monotonic()
    while time.monotonic() - start < 1.0:
        handed_out += len(queue.dispatch().submits)
        time.sleep(0.01)
    assert 9 <= handed_out <= 12


def test_a_429_holds_the_fleet_and_learns_the_accepted_rate(make_world):
    store, queue = make_world()
    add_batch(store, "b", 30)
    started = time.monotonic()
    assert len(submit_all(queue)) == 30  # unknown limit: no pacing yet
    limiter = FleetLimiter(store.redis, queue.settings)
    assert limiter.rate_limited("submit", 5.0) == pytest.approx(5.0, abs=0.1)
    took_s = time.monotonic() - started
    add_batch(store, "c", 3)
    assert queue.dispatch().submits == []
    status = limiter.status("submit")
    # 30 accepted, then nothing more for 5 s: 30 over 5 s and the submits' own time (a loaded
    # machine's tenth of a second is 2%), less the safety factor
    learned = status["learned_per_min"]
    assert 30 * 60 / (5 + took_s) * 0.98 * 0.999 <= learned <= 30 * 60 / 5 * 0.98 * 1.001


def test_a_429_after_too_few_of_our_calls_holds_without_learning_a_starving_rate(make_world):
    store, queue = make_world()
    add_batch(store, "b", 2)
    assert len(submit_all(queue)) == 2  # another client of the key spent the window
    limiter = FleetLimiter(store.redis, queue.settings)
    assert limiter.rate_limited("submit", None) == pytest.approx(2.0, abs=0.1)
    status = limiter.status("submit")
    assert status["learned_per_min"] is None and status["hold_until"] > time.time() + 1.5
    add_batch(store, "c", 6)
    assert queue.dispatch().submits == []  # held, as the 429 asked


def test_a_rate_learned_from_scratch_is_never_below_the_lowest_published_limit(make_world):
    store, queue = make_world()
    add_batch(store, "b", 5)
    assert len(submit_all(queue)) == 5  # 5 in the last minute: 4.9 a minute, learned as 5
    limiter = FleetLimiter(store.redis, queue.settings)
    limiter.rate_limited("submit", None)
    assert limiter.status("submit")["learned_per_min"] == pytest.approx(5.0)


def test_manual_pause_stops_submits_until_resume(make_world):
    store, queue = make_world()
    add_batch(store, "b", 2)
    store.pause_fleet("maintenance")
    assert queue.dispatch().submits == []
    store.resume_fleet()
    assert len(queue.dispatch().submits) == 2


def test_account_pause_sends_one_probe_and_a_good_submit_resumes(make_world):
    store, queue = make_world(account_pause_seconds=0.3)
    add_batch(store, "b", 5)
    queue.pause_fleet("406: Insufficient credits")
    assert queue.dispatch().submits == []
    time.sleep(0.35)
    [probe] = queue.dispatch().submits
    assert queue.dispatch().submits == []
    queue.begin_submit(probe)
    queue.record_submitted(probe, "req-probe", 1.0)
    assert len(queue.dispatch().submits) == 4


def test_a_finished_job_record_is_a_small_listpack(make_world):
    store, queue = make_world()
    [job_id] = add_batch(store, "b", 1)
    submit_all(queue)
    queue.finish(
        job_id,
        JobState.COMPLETED,
        outputs=["https://segmind-sd-models.s3.amazonaws.com/outputs/0f1e2d3c-4b5a.jpeg"],
        metrics={"inference_time": 2.41, "queue_time": 0.12, "total_time": 2.53},
    )
    key = redis_keys.job(job_id)
    assert store.redis.object("encoding", key) == "listpack"
    assert store.redis.memory_usage(key) < 1024


def notices(store: JobStore) -> dict[str, float]:
    return dict(store.redis.zrange(redis_keys.NOTIFY, 0, -1, withscores=True))


def test_an_ending_schedules_its_notice_in_the_same_step_and_dispatch_leases_it(make_world):
    # Given a batch with a webhook, one job completed, one cancelled, one still queued
    store, queue = make_world(lease_s=30)
    done, cancelled, _ = add_batch(store, "b", 3, webhook_url="https://example.test/hook")
    submit_all(queue)
    queue.finish(done, JobState.COMPLETED, outputs=["https://x.test/1.jpeg"])
    store.cancel_job(cancelled)
    # Then both endings, and only they, wait to be told, due now
    assert set(notices(store)) == {done, cancelled}
    # When a dispatcher step hands them out
    plan = queue.dispatch()
    # Then they are published once and leased: a worker dying mid-delivery loses none
    assert sorted(plan.notices) == sorted([done, cancelled])
    assert queue.dispatch().notices == []
    assert min(notices(store).values()) > time.time() + 25
    # And the notify task's verdicts take them off the schedule or bring them back later
    queue.settle_notice(done, store.get_job(done).finished_at)
    queue.settle_notice(cancelled, store.get_job(cancelled).finished_at, 0.0)
    assert queue.dispatch().notices == [cancelled]


def test_a_cancelled_batchs_queued_jobs_are_told_a_broker_window_at_a_time(make_world):
    # Given a batch with a webhook: one job handed to the broker, five still in their lane
    store, queue = make_world(broker_window=3)
    dispatched, *queued = add_batch(store, "told", 6, webhook_url="https://example.test/hook")
    assert queue.dispatch(max_items=1).submits == [dispatched]
    # When the batch is cancelled
    assert store.cancel_batch("told").counts["cancelled"] == 6
    # Then the dispatched job's notice is due at once, and the lane's follow while the
    # notice schedule has room: never more than the broker window waiting
    assert queue.dispatch().notices == [dispatched, *queued[:2]]
    assert queue.dispatch().notices == []
    told = {job_id: store.get_job(job_id).finished_at for job_id in (dispatched, *queued)}
    for job_id in (dispatched, queued[0]):
        queue.settle_notice(job_id, told[job_id])
    assert queue.dispatch().notices == queued[2:4]
    queue.settle_notice(queued[1], told[queued[1]])
    assert queue.dispatch().notices == queued[4:]
    assert store.redis.smembers(redis_keys.NOTIFY_LANES) == set()
    # And each one reads as the cancelled job its receiver will be sent
    assert {job.state for job in store.get_jobs(queued)} == {JobState.CANCELLED}


def test_a_cancelled_batch_nobody_listens_to_leaves_no_notify_lane(make_world):
    store, queue = make_world()
    add_batch(store, "quiet", 3)
    store.cancel_batch("quiet")
    assert queue.dispatch().notices == []
    assert store.redis.keys(redis_keys.PREFIX + "*lane*") == []


def test_a_notice_told_of_an_earlier_ending_leaves_the_new_endings_notice_due(make_world):
    # Given a failed job whose webhook is being told of its failure
    store, queue = make_world()
    [job_id] = add_batch(store, "b", 1, webhook_url="https://example.test/hook")
    submit_all(queue)
    queue.finish(job_id, JobState.FAILED, failure=JobFailure(kind="rejected", detail="bad"))
    told = store.get_job(job_id).finished_at
    assert queue.dispatch().notices == [job_id]
    # When it is retried and cancelled while that delivery runs
    assert store.retry_job(job_id)
    store.cancel_job(job_id)
    # Then settling the failure's notice, done or to be tried again, leaves the
    # cancellation's notice due, as its ending scheduled it
    queue.settle_notice(job_id, told)
    queue.settle_notice(job_id, told, 60.0)
    assert notices(store)[job_id] <= time.time() + 1


def test_who_was_told_of_an_ending_outlives_the_pruning_of_old_deliveries(make_world):
    # Given a job whose callback was told, and whose webhook then failed 25 times
    store, _ = make_world()
    [job_id] = add_batch(store, "b", 1)
    ending = {"finished_at": 1796000000.25}
    store.record_delivery(job_id, {"target": "callback_task", "attempt": 1, "ok": True, **ending})
    for attempt in range(1, 26):
        store.record_delivery(job_id, {"target": "webhook", "attempt": attempt, "ok": False,
                                       **ending})  # fmt: skip
    # Then the record keeps 20 tries, the callback's success among them: nobody tells it twice
    deliveries = store.get_job(job_id).deliveries
    assert len(deliveries) == 20
    assert [d["target"] for d in deliveries if d["ok"]] == ["callback_task"]
    assert deliveries[-1]["attempt"] == 25


def test_jobs_nobody_listens_to_schedule_no_notice(make_world):
    store, queue = make_world()
    [job_id] = add_batch(store, "quiet", 1)
    submit_all(queue)
    queue.finish(job_id, JobState.FAILED, failure=JobFailure(kind="rejected", detail="no"))
    assert notices(store) == {}


def test_throughput_counts_jobs_that_ran_not_jobs_cancelled():
    counts = {state.value: 0 for state in JobState} | {"completed": 30, "failed": 10,
                                                      "cancelled": 200_000}  # fmt: skip
    summary = BatchSummary(
        batch_id="b", total=200_060, counts=counts, failures_by_kind={}, created_at=0.0,
        started_at=100.0, finished_at=None, cancelled_at=110.0, defaults={}, source=None,
        priority="bulk", callback_task=None, webhook_url=None,
    )  # fmt: skip
    assert summary.throughput_per_s(now=120.0) == 2.0
    assert summary.eta_s(now=120.0) == 10.0

"""A job record's size, and retention, on a real redis-server (issue 9).

A finished job must stay a small listpack hash (under 1 KB, indexes included), and retention
must take away every record of a job and of its batch and every index entry that names them,
so that Redis memory goes back to its baseline. Jobs are walked through the workers' steps by
``tests.support.finished_jobs``; the per-key Redis facts are read with MEMORY USAGE, OBJECT
ENCODING and a SCAN of every key left.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from shared import redis_keys
from shared.dispatch_queue import DispatchQueue
from shared.job_model import JobFailure, JobState
from shared.job_store import (
    EXPIRED_IN_QUEUE,
    Added,
    JobOptions,
    JobStore,
    NewJob,
    batch_job_id,
)
from shared.settings import load_settings
from tests.support.finished_jobs import run_dispatched_jobs

RETENTION_S = 5
"""Short, so the tests wait it out, yet long enough for a loaded machine to take 139 jobs
through every step before their records expire (2 s was not: a CI run saw 21 of 139 end)."""
PROMPT = (
    "a lighthouse on a basalt cliff at dusk, volumetric light through sea mist, "
    "35mm film photo, line {n}"
)
BATCH_DEFAULTS = {"width": 832, "height": 1216, "steps": 6, "image_format": "png"}
OPEN_STATES = (JobState.QUEUED, JobState.SUBMITTED, JobState.RUNNING)
FLEET_WIDE_KEYS = {redis_keys.STATS, redis_keys.FLEET}
"""Keys of fixed size that outlive every job on purpose (counters per state, pause state)."""
RATE_WINDOW_MAX_TTL_S = 120
"""The rate limiter's log of calls accepted in the last minute (``segq:rate:*:ok``) names
calls, and expires two minutes after the last one whatever the job retention."""
EXPIRY_WAIT_S = 15.0
MEMORY_NOISE_BYTES = 8_192
"""How far a settled reading may stray from the baseline with nothing left behind (a loaded
machine once showed 5.7 KB: Redis shrinks its tables a cron step at a time). Keys and index
entries that name a job or batch are checked exactly by ``naming``; this catches the rest."""


@pytest.fixture
def make_queue(redis_url: str) -> Iterator:
    """``make_queue(retention_s)``: a DispatchQueue (and its store) on the test's Redis."""
    clients: list[redis.Redis] = []

    def build(retention_s: int) -> DispatchQueue:
        settings = load_settings({"SEGQ_REDIS_URL": redis_url, "SEGMIND_API_KEY": "retention"})
        clients.append(redis.Redis.from_url(redis_url, decode_responses=True))
        return DispatchQueue(JobStore(clients[-1], retention_s=retention_s), settings)

    yield build
    for client in clients:
        client.close()


def add_batch(store: JobStore, batch_id: str, lines: int) -> list[str]:
    store.open_batch(batch_id, defaults=BATCH_DEFAULTS, options=JobOptions(),
                     source=f"/data/prompts/{batch_id}.csv")  # fmt: skip
    jobs = [NewJob(batch_job_id(batch_id, n), {"prompt": PROMPT.format(n=n), "seed": 1000 + n}, n)
            for n in range(1, lines + 1)]  # fmt: skip
    store.add_jobs(jobs, batch_id=batch_id, options=JobOptions())
    return [job.job_id for job in jobs]


def add_single_jobs(store: JobStore, prefix: str, count: int, options: JobOptions) -> list[str]:
    jobs = [NewJob(f"{prefix}{n:08x}", {"prompt": PROMPT.format(n=n)}) for n in range(count)]
    store.add_jobs(jobs, batch_id=None, options=options)
    return [job.job_id for job in jobs]


def stored_memory(client: redis.Redis) -> int:
    """used_memory less connections' buffers. A command's first use on a connection allocates a
    little for good, so compare only readings taken after the same commands ran once."""
    memory = client.info("memory")
    return memory["used_memory"] - memory["mem_clients_normal"]


def rate_window_memory(client: redis.Redis) -> int:
    """The rate limiter's log of the calls accepted in the last minute (``rate.lua``): its
    size follows the fleet's calls per minute, not the jobs kept, and it is gone two minutes
    after the last call. Here 2,000 jobs run in seconds, and it held 235 bytes a job, enough
    to take a loaded machine's reading over the target."""
    keys = client.keys(redis_keys.PREFIX + "rate:*:ok")
    return sum(client.memory_usage(key, samples=0) or 0 for key in keys)


def settled_memory(client: redis.Redis, timeout_s: float = 5.0) -> int:
    """``stored_memory`` once two readings half a second apart agree: after mass expiry, Redis
    shrinks its key tables a step per cron tick (10 a second), so a reading taken mid-way is
    off by a table's size (a few KB) for a moment; on a loaded machine the moment is longer."""
    deadline = time.monotonic() + timeout_s
    reading = stored_memory(client)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        previous, reading = reading, stored_memory(client)
        if reading == previous:
            break
    return reading


def wait_for_expiry(client: redis.Redis, prefixes: tuple[str, ...]) -> None:
    deadline = time.monotonic() + EXPIRY_WAIT_S
    while any(next(client.scan_iter(p + "*", count=1000), None) for p in prefixes):
        if time.monotonic() > deadline:
            pytest.fail(f"keys under {prefixes} still there {EXPIRY_WAIT_S}s after retention")
        time.sleep(0.1)


def members(client: redis.Redis, key: str) -> list[str]:
    """Whatever a key holds that could name a job: members, elements, fields and values."""
    kind = client.type(key)
    if kind == "zset":
        return client.zrange(key, 0, -1)
    if kind == "list":
        return client.lrange(key, 0, -1)
    if kind == "set":
        return list(client.smembers(key))
    if kind == "hash":
        return [item for pair in client.hgetall(key).items() for item in pair]
    return [client.get(key) or ""]


def naming(client: redis.Redis, names: set[str]) -> dict[str, list[str]]:
    """Keys (other than the rate limiter's call log) whose name or contents hold a name."""
    found: dict[str, list[str]] = {}
    for key in client.scan_iter(redis_keys.PREFIX + "*", count=1000):
        if key.startswith(redis_keys.PREFIX + "rate:"):
            continue
        hits = [m for m in [key, *members(client, key)] if set(m.split(":")) & names]
        if hits:
            found[key] = hits
    return found


@pytest.mark.parametrize("outcome", ["completed_batch_job", "failed_batch_job", "single_job"])
def test_a_finished_job_is_one_listpack_hash_under_1_kb(make_queue, outcome):
    # Given a job of a batch (defaults stored once, in the batch) or a job of its own
    queue = make_queue(retention_s=3600)
    if outcome == "single_job":
        [job_id] = add_single_jobs(queue.store, "j", 1, JobOptions())
    else:
        [job_id] = add_batch(queue.store, "b", 1)
    # When it runs to its end, polled on the way
    failed = outcome == "failed_batch_job"
    assert run_dispatched_jobs(queue, 1, fails=lambda _: failed) == 1
    # Then its record holds everything status shows, in one listpack hash under 1 KB
    job = queue.store.get_job(job_id)
    assert job.state is (JobState.FAILED if failed else JobState.COMPLETED)
    assert job.request_id and job.metrics and job.polls == 2
    assert (job.error is not None) == failed and bool(job.outputs) != failed
    key = redis_keys.job(job_id)
    client = queue.store.redis
    assert client.object("encoding", key) == "listpack"
    assert client.memory_usage(key, samples=0) < 1024
    assert 3500 < client.ttl(key) <= 3600


def test_redis_memory_per_finished_job_with_its_indexes_is_under_1_kb(make_queue):
    queue = make_queue(retention_s=3600)
    client = queue.store.redis
    add_batch(queue.store, "warm", 1)
    run_dispatched_jobs(queue, 1)  # scripts loaded and fleet-wide keys made before measuring
    before = stored_memory(client) - rate_window_memory(client)
    add_batch(queue.store, "b", 2000)
    assert run_dispatched_jobs(queue, 2000, fails=lambda job_id: job_id.endswith("7")) == 2000
    per_job = (stored_memory(client) - rate_window_memory(client) - before) / 2000
    assert per_job < 1024, f"{per_job:.0f} bytes per finished job"
    assert queue.store.get_batch("b").counts[JobState.FAILED.value] == 200


def run_every_path(queue: DispatchQueue, tag: str) -> set[str]:
    """Jobs that take every path a job can take, to their ends; returns their ids and batch
    ids. Completed, failed (into the batch's failed set), cancelled one by one, jobs of their
    own (interactive with a webhook and a delivery on record, and bulk), and a whole batch
    cancelled with jobs in its lane, in the window and in flight upstream."""
    store = queue.store
    ran = add_batch(store, f"ran{tag}", 120)
    store.cancel_job(ran[-1])
    interactive = JobOptions(priority="interactive", webhook_url="https://example.test/hook")
    singles = add_single_jobs(store, f"i{tag}", 10, interactive)
    singles += add_single_jobs(store, f"s{tag}", 10, JobOptions())
    assert run_dispatched_jobs(queue, 139, fails=lambda job_id: job_id.endswith("3")) == 139
    store.record_delivery(singles[0], {"kind": "webhook", "status": 200, "attempt": 1})
    for job_id in singles[:10]:
        queue.settle_notice(job_id, store.get_job(job_id).finished_at)  # as notify tasks do
    gone = add_batch(store, f"gone{tag}", 80)
    in_window = queue.dispatch(max_items=20).submits
    for job_id in in_window[:5]:
        assert queue.begin_submit(job_id).outcome == "go"
        queue.record_submitted(job_id, f"0f1e2d3c-{job_id}", 30.0)
    store.cancel_batch(f"gone{tag}")
    for batch_id in (f"ran{tag}", f"gone{tag}"):
        assert store.get_batch(batch_id).is_terminal
    return {*ran, *gone, *singles, f"ran{tag}", f"gone{tag}"}


def expire_every_path(queue: DispatchQueue, tag: str) -> tuple[int, int]:
    """``run_every_path``, then waits out retention and checks nothing of it is left;
    returns (stored memory with the jobs there, stored memory after retention)."""
    store, client = queue.store, queue.store.redis
    names = run_every_path(queue, tag)
    with_jobs = stored_memory(client)
    wait_for_expiry(client, (redis_keys.JOB_PREFIX, redis_keys.BATCH_PREFIX,
                             redis_keys.BULK_LANE_PREFIX, redis_keys.REPLY_PREFIX))  # fmt: skip
    assert naming(client, names) == {}
    left = set(client.scan_iter(redis_keys.PREFIX + "*"))
    assert left - FLEET_WIDE_KEYS == {k for k in left if k.startswith(redis_keys.PREFIX + "rate:")}
    rate_log = left - FLEET_WIDE_KEYS
    for key in rate_log:
        assert 0 < client.ttl(key) <= RATE_WINDOW_MAX_TTL_S
    client.delete(*rate_log)  # what their own TTL does within two minutes
    assert all(store.state_counts().get(state.value, 0) == 0 for state in OPEN_STATES)
    return with_jobs, settled_memory(client)


def test_retention_removes_every_key_and_index_entry_and_memory_returns_to_baseline(make_queue):
    # Given a baseline taken after the same paths ran once and expired (every script loaded,
    # the fleet-wide counters made, the checks' own commands used once)
    queue = make_queue(retention_s=RETENTION_S)
    _, baseline = expire_every_path(queue, "warm")
    # When jobs take every path again, then retention passes: no record, no lane, and no index
    # (dispatched, due, polling, inflight, lanes, failed sets) names a job or a batch
    with_jobs, after = expire_every_path(queue, "")
    # Then memory is back to the baseline, within a sliver of what the jobs took
    assert with_jobs - baseline > 100_000
    drift = f"{after - baseline} bytes above the baseline"
    assert abs(after - baseline) < MEMORY_NOISE_BYTES, drift


def test_a_record_that_expires_in_flight_leaves_no_index_entry_behind(make_queue):
    # Given a job submitted upstream whose worker died, and a retention shorter than the job
    queue = make_queue(retention_s=RETENTION_S)
    client = queue.store.redis
    [job_id] = add_single_jobs(queue.store, "lost", 1, JobOptions())
    [submit] = queue.dispatch().submits
    assert queue.begin_submit(submit).outcome == "go"
    queue.record_submitted(job_id, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", RETENTION_S + 0.5)
    named = {key for key in naming(client, {job_id}) if not key.startswith(redis_keys.REPLY_PREFIX)}
    assert named == {redis_keys.job(job_id), redis_keys.INFLIGHT, redis_keys.DUE}
    # When its record expires, then its first poll comes due in a dispatcher step
    wait_for_expiry(client, (redis_keys.JOB_PREFIX, redis_keys.REPLY_PREFIX))
    deadline = time.monotonic() + EXPIRY_WAIT_S
    while naming(client, {job_id}) and time.monotonic() < deadline:
        assert queue.dispatch().polls == []
        time.sleep(0.1)
    # Then no index names it any more
    assert naming(client, {job_id}) == {}


def test_a_job_followed_upstream_is_kept_past_its_retention_until_it_ends(make_queue):
    # Given a job of a batch accepted upstream, that runs there longer than the retention
    queue = make_queue(retention_s=RETENTION_S)
    store = queue.store
    [job_id] = add_batch(store, "long", 1)
    [submit] = queue.dispatch().submits
    assert queue.begin_submit(submit).outcome == "go"
    queue.record_submitted(job_id, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", 1.0)
    # When it is polled, still PROCESSING, for twice the retention
    deadline = time.monotonic() + 2 * RETENTION_S
    while time.monotonic() < deadline:
        for polled, token in queue.dispatch().polls:
            if queue.begin_poll(polled, token) is not None:
                queue.record_progress(polled, token, "PROCESSING", 1.0)
        time.sleep(0.2)
    # Then its record and its batch are still there, and its ending is stored and counted
    ending = queue.finish(job_id, JobState.COMPLETED, outputs=["https://cdn.test/0.jpg"])
    assert ending.ended
    assert store.get_job(job_id).outputs == ["https://cdn.test/0.jpg"]
    summary = store.get_batch("long")
    assert summary.is_terminal and summary.counts[JobState.COMPLETED.value] == 1
    assert summary.counts[JobState.RUNNING.value] == 0


def test_a_rerun_does_not_enqueue_again_the_lines_whose_records_expired(make_queue):
    # Given a batch whose first lines ended and expired while a later line still runs upstream
    queue = make_queue(retention_s=RETENTION_S)
    store, client = queue.store, queue.store.redis
    ended = add_batch(store, "rerun", 3)
    assert run_dispatched_jobs(queue, 3) == 3
    store.add_jobs([NewJob(batch_job_id("rerun", 4), {"prompt": "line 4"}, 4)],
                   batch_id="rerun", options=JobOptions())  # fmt: skip
    [submit] = queue.dispatch().submits
    assert queue.begin_submit(submit).outcome == "go"
    queue.record_submitted(submit, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", 4 * RETENTION_S)
    deadline = time.monotonic() + EXPIRY_WAIT_S
    while any(client.exists(redis_keys.job(job_id)) for job_id in ended):
        assert time.monotonic() < deadline, "the ended jobs' records did not expire"
        time.sleep(0.1)
    # When the same lines are enqueued in the batch again (a re-run of its file)
    again = [NewJob(batch_job_id("rerun", n), {"prompt": PROMPT.format(n=n), "seed": 1000 + n}, n)
             for n in range(1, 4)]  # fmt: skip
    added = store.add_jobs(again, batch_id="rerun", options=JobOptions())
    # Then none of them is made again (nor submitted, nor paid for twice), and the batch's
    # total still counts each line once
    assert added == [Added.EXISTED] * 3
    assert queue.dispatch().submits == []
    assert store.get_batch("rerun").total == 4


@pytest.mark.parametrize("priority", ["bulk", "interactive"])
def test_a_cancelled_batch_ends_though_a_queued_jobs_record_had_expired(make_queue, priority):
    # Given a batch of two queued jobs, the first one's record expired in its lane
    queue = make_queue(retention_s=3600)
    store = queue.store
    options = JobOptions(priority=priority)
    store.open_batch("dropped", defaults={}, options=options, source=None)
    jobs = [NewJob(batch_job_id("dropped", n), {"prompt": f"p{n}"}, n) for n in (1, 2)]
    store.add_jobs(jobs, batch_id="dropped", options=options)
    store.redis.delete(redis_keys.job(jobs[0].job_id))  # as its retention would
    # When the batch is cancelled
    summary = store.cancel_batch("dropped")
    # Then both are counted cancelled, and the batch has ended
    assert summary.counts[JobState.CANCELLED.value] == 2
    assert summary.counts[JobState.QUEUED.value] == 0 and summary.is_terminal


def expire_while_queued(queue: DispatchQueue, job_id: str, waiting: str) -> None:
    """The job's record expires while it waits where ``waiting`` says; then the dispatcher
    (and, for a claimed job, its submit task) meets its id."""
    client = queue.store.redis
    if waiting == "backoff":
        assert queue.begin_submit(job_id).outcome == "go"
        queue.retry_later(job_id, 0.0, JobFailure(kind="transient", detail="502 Bad Gateway"))
    client.delete(redis_keys.job(job_id))  # as its retention would
    if waiting == "lease_ran_out":
        client.zadd(redis_keys.DISPATCHED, {job_id: 0})
    if waiting == "claimed":
        assert queue.begin_submit(job_id).outcome == "gone"
    queue.dispatch()


@pytest.mark.parametrize("waiting", ["lane", "lease_ran_out", "claimed", "backoff"])
def test_a_job_whose_record_expired_while_queued_ends_failed_and_its_batch_ends(
    make_queue, waiting
):
    # Given a batch whose first job completed, and whose second waits (in its lane, in the
    # broker window, claimed by a submit task, or for a retry)
    queue = make_queue(retention_s=3600)
    store = queue.store
    [ran, waits] = add_batch(store, "waited", 2)
    assert queue.dispatch(max_items=1 if waiting == "lane" else 2).submits[0] == ran
    assert queue.begin_submit(ran).outcome == "go"
    queue.record_submitted(ran, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", 30.0)
    assert queue.finish(ran, JobState.COMPLETED, outputs=["https://cdn.test/0.jpg"]).ended
    # When the second one's record expires before a worker took it
    expire_while_queued(queue, waits, waiting)
    queue.dispatch()  # meeting its id again counts it no second time
    # Then the batch counts it failed, expired in the queue, and has ended
    summary = store.get_batch("waited")
    assert summary.counts[JobState.QUEUED.value] == 0
    assert summary.counts[JobState.FAILED.value] == 1
    assert summary.failures_by_kind == {EXPIRED_IN_QUEUE: 1}
    assert summary.is_terminal and summary.finished_at is not None and summary.started_at
    # (its pace counts the one job a worker ran, not the one that expired)
    ran_for_s = summary.finished_at - summary.started_at
    assert summary.throughput_per_s(summary.finished_at) == pytest.approx(1 / ran_for_s)
    assert store.wait_batch("waited", timeout_s=0).is_terminal
    assert store.state_counts()[JobState.QUEUED.value] == 0

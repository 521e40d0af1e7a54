"""The producer API, sync and asyncio, against a real Redis: idempotent enqueues, streamed
batches, waits woken by job ends, cancel, retry, failure reasons and the fleet's pause."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import pytest
from celery import signature

import producer
from producer import AsyncProducer, InputError, JobNotCompleted, JobState, Producer, WaitTimeout
from producer.enqueueing import ENQUEUE_CHUNK, BatchLine
from shared import redis_keys
from shared.dispatch_queue import DispatchQueue
from shared.job_codec import compact_json
from shared.settings import load_settings
from tests.support.fleet import segq_env
from tests.support.lost_replies import ReplyLoss
from tests.support.segq_cli import run_segq

WAKE_S = 5.0
"""A wait woken by an end event returns long before this (its timeout is far longer)."""


@pytest.fixture
def settings(redis_url):
    return load_settings({"SEGQ_REDIS_URL": redis_url}, max_batch_lines=5000)


@pytest.fixture
def sync_producer(settings) -> Iterator[Producer]:
    with Producer(settings=settings) as made:
        yield made


def fail(made: Producer, job_id: str, detail: str = "bad request", status: int = 400) -> None:
    """Ends a job failed the way a worker does (the finish script), with an upstream error."""
    error = {"kind": "rejected", "http_status": status, "detail": detail}
    made.store.run_script("finish", job_id, "failed", "rejected", "error", compact_json(error))


@contextmanager
def later(delay_s: float, action) -> Iterator[None]:
    """Runs ``action`` on a thread after ``delay_s``, and waits for it on the way out: a wait
    wakes as soon as Redis has run the action's last script, which can be before the thread has
    read that script's reply, and closing the producer under it then fails the next test."""
    thread = threading.Thread(target=lambda: (time.sleep(delay_s), action()), daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=WAKE_S)


def test_an_unreachable_redis_raises_the_exported_store_error():
    with Producer("redis://127.0.0.1:1/0") as made, pytest.raises(producer.StoreError):
        made.fleet_state()


def test_the_api_is_typed_for_the_apps_that_import_it():
    """Without PEP 561's marker in the wheel, an app's mypy sees ``producer`` as untyped."""
    for package in ("producer", "shared"):
        assert resources.files(package).joinpath("py.typed").is_file()


def test_the_public_api_is_exactly_what_all_names():
    assert sorted(producer.__all__) == [
        "AsyncJobHandle", "AsyncProducer", "BatchLine", "BatchReceipt", "BatchSummary",
        "ConfigurationError", "FailureReason", "FleetState", "GenerationRequest", "InputError",
        "Job", "JobFailure", "JobHandle", "JobNotCompleted", "JobNotFound", "JobState",
        "Producer", "RateLimitState", "Resumed", "SegqError", "StoreError", "WaitTimeout",
    ]  # fmt: skip
    assert all(hasattr(producer, name) for name in producer.__all__)


def test_the_same_idempotency_key_twice_returns_the_existing_job_and_queues_nothing(
    sync_producer, redis_client
):
    first = sync_producer.enqueue({"prompt": "a fox"}, idempotency_key="order-17")
    again = sync_producer.enqueue({"prompt": "a fox"}, idempotency_key="order-17")
    assert (first.job_id, first.created, again.created) == (again.job_id, True, False)
    assert sync_producer.store.state_counts()["queued"] == 1
    assert redis_client.llen(redis_keys.bulk_lane(None)) == 1


def test_an_idempotency_key_reused_for_other_parameters_is_refused(sync_producer):
    first = sync_producer.enqueue({"prompt": "a fox"}, idempotency_key="order-18")
    with pytest.raises(InputError, match=f"job {first.job_id} was enqueued with it and other"):
        sync_producer.enqueue({"prompt": "a fox", "steps": 8}, idempotency_key="order-18")
    assert sync_producer.get_job(first.job_id).params == {"prompt": "a fox"}
    assert sync_producer.store.state_counts()["queued"] == 1


@pytest.mark.parametrize(
    "options",
    [{"priority": "interactive"}, {"callback": "apps.done"},
     {"webhook_url": "http://127.0.0.1:9/hook"}],
)  # fmt: skip
def test_an_idempotency_key_reused_with_other_options_is_refused_with_a_reason(
    sync_producer, options
):
    first = sync_producer.enqueue({"prompt": "a fox"}, idempotency_key="order-19")
    with pytest.raises(InputError, match="other parameters or options") as refused:
        sync_producer.enqueue({"prompt": "a fox"}, idempotency_key="order-19", **options)
    assert refused.value.problems == [str(refused.value)]
    stored = sync_producer.store.redis.hgetall(redis_keys.job(first.job_id))
    assert not {"priority", "callback_task", "webhook_url"} & set(stored)
    again = sync_producer.enqueue({"prompt": "a fox"}, idempotency_key="order-19")
    assert again.created is False


@pytest.mark.parametrize("key", [123, "", "k" * 257, b"bytes"])
def test_an_idempotency_key_that_is_not_a_short_string_is_refused(sync_producer, key):
    with pytest.raises(InputError, match="idempotency_key: give a string of 1 to 256"):
        sync_producer.enqueue({"prompt": "a fox"}, idempotency_key=key)


def test_invalid_requests_name_every_bad_field(sync_producer):
    with pytest.raises(InputError) as refused:
        sync_producer.enqueue({"prompt": "", "steps": 0, "colour": "red"})
    assert refused.value.problems == [
        "request: prompt: String should have at least 1 character (got '')",
        "request: steps: Input should be greater than or equal to 1 (got 0)",
        "request: colour: unknown parameter (known: prompt, negative_prompt, sampler, "
        "scheduler, steps, guidance_scale, seed, width, height, aspect_ratio, batch_size, "
        "image_format, image_quality, base64)",
    ]


def test_a_request_model_is_stored_with_only_what_differs_from_defaults(sync_producer):
    request = producer.GenerationRequest(prompt="a heron", steps=8)
    job = sync_producer.enqueue(request, priority="interactive").info()
    assert (job.params, job.priority) == ({"prompt": "a heron", "steps": 8}, "interactive")
    receipt = sync_producer.enqueue_many([request, {"prompt": "x", "steps": 4}], batch_id="d",
                                         defaults={"steps": "6"})  # fmt: skip
    assert sync_producer.get_job("d.1").params == {"steps": 8, "prompt": "a heron"}
    assert sync_producer.get_job("d.2").params == {"steps": 4, "prompt": "x"}
    assert receipt.created == 2


def test_a_streamed_batch_rerun_enqueues_only_the_missing_lines(sync_producer):
    def prompts(n: int) -> Iterator[dict]:
        return ({"prompt": f"line {i}"} for i in range(1, n + 1))

    first = sync_producer.enqueue_many(prompts(2 * ENQUEUE_CHUNK + 7), batch_id="big")
    rerun = sync_producer.enqueue_many(prompts(2 * ENQUEUE_CHUNK + 50), batch_id="big")
    assert (first.created, first.existing) == (2 * ENQUEUE_CHUNK + 7, 0)
    assert (rerun.created, rerun.existing) == (43, 2 * ENQUEUE_CHUNK + 7)
    summary = sync_producer.get_batch("big")
    assert summary.total == summary.counts["queued"] == 2 * ENQUEUE_CHUNK + 50
    assert [job.line for job in sync_producer.iter_batch_jobs("big")][-3:] == [2048, 2049, 2050]


def test_a_rerun_counts_the_lines_whose_job_holds_other_parameters_and_keeps_those_jobs(
    sync_producer,
):
    sync_producer.enqueue_many([{"prompt": "one"}, {"prompt": "two"}], batch_id="edit")
    rerun = sync_producer.enqueue_many(
        [{"prompt": "one"}, {"prompt": "TWO"}, {"prompt": "three"}], batch_id="edit"
    )
    assert (rerun.created, rerun.existing, rerun.differing) == (1, 2, 1)
    assert sync_producer.get_job("edit.2").params["prompt"] == "two"


def test_an_invalid_item_stops_the_stream_at_its_line_and_a_rerun_adds_the_rest(sync_producer):
    items = [{"prompt": f"p{n}"} for n in range(1, 1201)]
    items[1099] = {"prompt": "p1100", "steps": 500}
    with pytest.raises(InputError, match="line 1100"):
        sync_producer.enqueue_many(items, batch_id="half")
    assert sync_producer.get_batch("half").total == ENQUEUE_CHUNK
    items[1099] = {"prompt": "p1100"}
    assert sync_producer.enqueue_many(items, batch_id="half").created == 200


def test_a_rerun_with_other_defaults_is_refused(sync_producer):
    sync_producer.enqueue_many([{"prompt": "a"}], batch_id="s", defaults={"steps": 6})
    with pytest.raises(InputError, match=r"same defaults \(--set values\)"):
        sync_producer.enqueue_many([{"prompt": "a"}], batch_id="s", defaults={"steps": 7})


@pytest.mark.parametrize(
    "options",
    [{"priority": "interactive"}, {"callback": "apps.done"},
     {"webhook_url": "http://127.0.0.1:9/hook"}],
)  # fmt: skip
def test_a_rerun_with_other_options_is_refused_since_they_would_be_ignored(sync_producer, options):
    sync_producer.enqueue_many([{"prompt": "a"}], batch_id="o")
    with pytest.raises(InputError, match="same options"):
        sync_producer.enqueue_many([{"prompt": "a"}, {"prompt": "b"}], batch_id="o", **options)
    assert sync_producer.get_batch("o").total == 1


def test_batch_lines_keep_their_own_numbers(sync_producer):
    lines = [BatchLine(3, {"prompt": "third"}), BatchLine(9, {"prompt": "ninth"})]
    sync_producer.enqueue_many(lines, batch_id="numbered")
    assert [(j.job_id, j.line) for j in sync_producer.iter_batch_jobs("numbered")] == [
        ("numbered.3", 3), ("numbered.9", 9),
    ]  # fmt: skip


@pytest.mark.parametrize("line", [0, -3])
def test_a_batch_line_numbered_below_one_is_refused(sync_producer, line):
    with pytest.raises(InputError, match="line numbers start at 1"):
        sync_producer.enqueue_many([BatchLine(line, {"prompt": "a"})], batch_id="zero")
    assert not sync_producer.store.redis.exists(redis_keys.batch("zero"))


def test_a_batch_line_numbered_past_the_highest_line_is_refused(sync_producer):
    # A batch's reads walk every id up to its highest line: BatchLine(10**9) took hours.
    with pytest.raises(InputError, match="line 1,000,000,000: line numbers go up to 16,777,216"):
        sync_producer.enqueue_many([BatchLine(10**9, {"prompt": "a"})], batch_id="far")
    assert not sync_producer.store.redis.exists(redis_keys.batch("far"))


def test_a_stream_refused_at_its_first_item_leaves_no_batch_a_corrected_retry_must_match(
    sync_producer,
):
    with pytest.raises(InputError, match="line 1: steps"):
        sync_producer.enqueue_many([{"prompt": "a", "steps": 500}], batch_id="first",
                                   defaults={"steps": 6}, priority="interactive")  # fmt: skip
    receipt = sync_producer.enqueue_many([{"prompt": "a"}], batch_id="first")
    summary = sync_producer.get_batch("first")
    assert (receipt.created, summary.defaults, summary.priority) == (1, {}, "bulk")


def test_an_empty_stream_still_opens_its_batch(sync_producer):
    assert sync_producer.enqueue_many([], batch_id="none", defaults={"steps": 6}).lines == 0
    assert sync_producer.get_batch("none").defaults == {"steps": 6}


def test_too_many_lines_and_bad_ids_are_refused(sync_producer):
    with pytest.raises(InputError, match="SEGQ_MAX_BATCH_LINES"):
        sync_producer.enqueue_many(({"prompt": "x"} for _ in range(5001)), batch_id="huge")
    with pytest.raises(InputError, match="no dots"):
        sync_producer.enqueue_many([{"prompt": "x"}], batch_id="a.b")


def test_wait_wakes_when_the_job_ends_and_result_says_how_it_ended(sync_producer):
    job = sync_producer.enqueue({"prompt": "a kettle"})
    with pytest.raises(WaitTimeout) as still:
        job.result(timeout_s=0.2)
    assert still.value.job.state is JobState.QUEUED
    start = time.monotonic()
    with later(0.3, job.cancel), pytest.raises(JobNotCompleted) as ended:
        job.result(timeout_s=60)
    assert time.monotonic() - start < WAKE_S
    assert ended.value.job.state is JobState.CANCELLED and job.status() is JobState.CANCELLED


def test_a_wait_that_times_out_returns_the_job_as_it_is_then_not_as_it_was(sync_producer, settings):
    job = sync_producer.enqueue({"prompt": "a kettle"})
    queue = DispatchQueue(sync_producer.store, settings)

    def submitted_upstream() -> None:  # what a worker does; no end event is published
        assert queue.dispatch().submits == [job.job_id]
        assert queue.begin_submit(job.job_id).outcome == "go"
        queue.record_submitted(job.job_id, "req-1", 30.0)

    with later(0.2, submitted_upstream):
        seen = job.wait(timeout_s=1.5)
    assert (seen.state, seen.request_id) == (JobState.SUBMITTED, "req-1")


def test_wait_batch_returns_when_every_job_ended_or_at_its_timeout(sync_producer):
    sync_producer.enqueue_many([{"prompt": f"p{n}"} for n in range(5)], batch_id="w")
    assert not sync_producer.wait_batch("w", timeout_s=0.3).is_terminal
    start = time.monotonic()
    with later(0.3, lambda: [fail(sync_producer, f"w.{n}") for n in range(1, 6)]):
        summary = sync_producer.wait_batch("w", timeout_s=60)
    assert time.monotonic() - start < WAKE_S
    assert summary.is_terminal and summary.counts["failed"] == 5


def test_failure_reasons_are_grouped_and_retry_brings_failed_jobs_back(sync_producer):
    sync_producer.enqueue_many([{"prompt": f"p{n}"} for n in range(4)], batch_id="r")
    for n, detail in ((1, "NSFW"), (2, "NSFW"), (3, "too big")):
        fail(sync_producer, f"r.{n}", detail)
    reasons = sync_producer.failure_reasons("r")
    assert [(r.detail, r.jobs) for r in reasons] == [("NSFW", 2), ("too big", 1)]
    assert sync_producer.retry_batch("r") == 3
    assert sync_producer.get_batch("r").counts["queued"] == 4
    fail(sync_producer, "r.4")
    assert sync_producer.job("r.4").retry() and not sync_producer.job("r.4").retry()


def test_cancel_batch_ends_every_queued_job(sync_producer):
    sync_producer.enqueue_many([{"prompt": f"p{n}"} for n in range(30)], batch_id="c")
    summary = sync_producer.cancel_batch("c")
    assert summary.counts["cancelled"] == 30 and summary.is_terminal
    assert {job.state for job in sync_producer.iter_batch_jobs("c")} == {JobState.CANCELLED}


def test_pause_and_resume_the_fleet(sync_producer):
    sync_producer.pause("invoice unpaid")
    state = sync_producer.fleet_state()
    assert (state.paused, state.reason, state.manual) == (True, "invoice unpaid", True)
    sync_producer.resume()
    assert not sync_producer.fleet_state().paused


def test_callbacks_are_task_names_and_signatures_without_arguments(sync_producer, redis_client):
    job = sync_producer.enqueue({"prompt": "x"}, callback=signature("app.image_ready"),
                                webhook_url="https://example.test/hook")  # fmt: skip
    assert redis_client.hmget(redis_keys.job(job.job_id), "callback_task", "webhook_url") == [
        "app.image_ready", "https://example.test/hook",
    ]  # fmt: skip
    with pytest.raises(InputError, match="without arguments"):
        sync_producer.enqueue({"prompt": "x"}, callback=signature("app.done", args=(1,)))
    with pytest.raises(InputError, match="not an http"):
        sync_producer.enqueue({"prompt": "x"}, webhook_url="ftp://example.test")


@pytest.mark.parametrize(
    "url",
    ["http://example.test:abc/hook", "http://exa\u00e4mple..test/hook", "http://xn--zz.com/hook",
     "http://[::1/", "https://\u2100.test/"],
)  # fmt: skip
def test_a_webhook_url_only_urlsplit_reads_is_refused_at_the_edge(sync_producer, url):
    # Such a URL failed every delivery without a try being recorded, republished every lease
    with pytest.raises(InputError, match="not an http"):
        sync_producer.enqueue({"prompt": "x"}, webhook_url=url)


def test_the_async_producer_holds_more_waits_at_once_than_redis_pys_default_pool(settings):
    async def scenario() -> list[object]:
        async with AsyncProducer(settings=settings) as made:
            job = await made.enqueue({"prompt": "a fox"})
            return await asyncio.gather(
                *(made.wait(job.job_id, timeout_s=1.0) for _ in range(150)),
                return_exceptions=True,
            )

    seen = asyncio.run(scenario())
    assert [getattr(job, "state", job) for job in seen] == [JobState.QUEUED] * 150


@pytest.mark.parametrize("waiting", ["job", "batch"])
def test_a_cancelled_async_wait_ends_even_when_a_redis_call_swallowed_the_cancel(settings, waiting):
    """Python 3.11's asyncio.wait_for, around each of redis-py's sends, drops a cancel that
    lands as the send completes; the wait must still end instead of running to its timeout."""

    async def scenario() -> float:
        async with AsyncProducer(settings=settings) as made:
            receipt = await made.enqueue_many([{"prompt": "a fox"}], batch_id="cw")
            reads = made.store.get_job if waiting == "job" else made.store.get_batch

            async def read_that_swallows_a_cancel(*args):
                asyncio.current_task().cancel()
                # what asyncio.wait_for does on 3.11 when its future is already done
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(0)
                return await reads(*args)

            wait = made.wait("cw.1", timeout_s=30) if waiting == "job" else made.wait_batch(
                receipt.batch_id, timeout_s=30
            )  # fmt: skip
            setattr(made.store, reads.__name__, read_that_swallows_a_cancel)
            start = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.create_task(wait)
            return time.monotonic() - start

    assert asyncio.run(scenario()) < WAKE_S


def test_a_task_cleaning_up_after_its_own_cancel_may_still_wait_for_a_job(settings):
    """Only a cancel that lands during the wait ends it: one the task caught before (its
    cleanup looks at the job once more) raised CancelledError at the wait's first turn."""

    async def scenario() -> JobState:
        async with AsyncProducer(settings=settings) as made:
            handle = await made.enqueue({"prompt": "a fox"})
            started = asyncio.Event()

            async def cleans_up() -> JobState:
                try:
                    started.set()
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    return (await made.wait(handle.job_id, timeout_s=1.5)).state
                raise AssertionError("not cancelled")

            task = asyncio.create_task(cleans_up())
            await started.wait()
            task.cancel()
            return await task

    assert asyncio.run(scenario()) is JobState.QUEUED


def test_the_async_producer_enqueues_waits_on_events_cancels_retries_and_pauses(settings):
    async def scenario() -> None:
        async with AsyncProducer(settings=settings) as made:
            first = await made.enqueue({"prompt": "a fox"}, idempotency_key="k")
            again = await made.enqueue({"prompt": "a fox"}, idempotency_key="k")
            assert (first.job_id, first.created, again.created) == (again.job_id, True, False)
            assert await first.status() is JobState.QUEUED

            async def prompts():
                for n in range(1, ENQUEUE_CHUNK + 3):
                    yield {"prompt": f"p{n}"}

            receipt = await made.enqueue_many(prompts(), batch_id="ab", defaults={"steps": 6})
            assert (receipt.created, (await made.get_job("ab.2")).params) == (
                ENQUEUE_CHUNK + 2, {"steps": 6, "prompt": "p2"},
            )  # fmt: skip
            asyncio.get_running_loop().call_later(0.3, asyncio.ensure_future, first.cancel())
            start = asyncio.get_running_loop().time()
            with pytest.raises(JobNotCompleted):
                await first.result(timeout_s=60)
            assert asyncio.get_running_loop().time() - start < WAKE_S
            assert [job.line async for job in made.iter_batch_jobs("ab")][:2] == [1, 2]
            summary = await made.cancel_batch("ab")
            assert (await made.wait_batch("ab", timeout_s=5)).is_terminal
            assert summary.counts["cancelled"] == ENQUEUE_CHUNK + 2
            await made.pause("maintenance")
            assert (await made.fleet_state()).reason == "maintenance"
            await made.resume()
            assert not (await made.fleet_state()).paused

    asyncio.run(scenario())


def test_the_async_producer_retries_failed_jobs_and_groups_their_reasons(settings, sync_producer):
    sync_producer.enqueue_many([{"prompt": "a"}, {"prompt": "b"}], batch_id="ar")
    fail(sync_producer, "ar.1", "NSFW")

    async def scenario() -> None:
        async with AsyncProducer(settings=settings) as made:
            assert [r.detail for r in await made.failure_reasons("ar")] == ["NSFW"]
            assert await made.retry_batch("ar") == 1
            fail(sync_producer, "ar.2")
            assert await made.job("ar.2").retry()

    asyncio.run(scenario())
    assert sync_producer.get_batch("ar").counts["queued"] == 2


def test_the_async_producer_reconnects_when_redis_closed_its_connections(settings, redis_client):
    """A Redis restart, a failover or Redis' idle ``timeout`` closes pooled connections; the
    next call (and a wait in progress) must reconnect, as the sync producer does, not fail."""

    def close_every_connection() -> None:
        redis_client.client_kill_filter(_type="normal", skipme=True)
        redis_client.client_kill_filter(_type="pubsub", skipme=True)

    async def scenario() -> list[object]:
        async with AsyncProducer(settings=settings) as made:
            job = await made.enqueue({"prompt": "a fox"})
            waiting = asyncio.create_task(made.wait(job.job_id, timeout_s=2.0))
            await asyncio.sleep(0.5)
            close_every_connection()
            state = await made.fleet_state()
            close_every_connection()
            return [state.paused, (await made.get_job(job.job_id)).state, (await waiting).state]

    assert asyncio.run(scenario()) == [False, JobState.QUEUED, JobState.QUEUED]


def test_a_sync_producer_holds_more_waits_at_once_than_redis_pys_default_pool(sync_producer):
    job = sync_producer.enqueue({"prompt": "a fox"})
    seen: list[object] = []

    def wait() -> None:
        try:
            seen.append(job.wait(timeout_s=1.5).state)
        except Exception as exc:  # the assertion shows what was raised
            seen.append(exc)

    threads = [threading.Thread(target=wait) for _ in range(150)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAKE_S)
    assert seen == [JobState.QUEUED] * 150


def test_a_sync_wait_goes_on_when_redis_closed_its_subscription(sync_producer, redis_client):
    job = sync_producer.enqueue({"prompt": "a fox"})

    def close_every_connection() -> None:
        redis_client.client_kill_filter(_type="pubsub", skipme=True)
        redis_client.client_kill_filter(_type="normal", skipme=True)

    with later(0.5, close_every_connection):
        assert job.wait(timeout_s=2.0).state is JobState.QUEUED


def test_a_sync_wait_sees_an_end_whose_event_it_never_heard(sync_producer, redis_client):
    """An end published while a cut subscription is being restored is lost; the once-a-second
    re-read (which the README promises for both flavours) still finds it."""
    job = sync_producer.enqueue({"prompt": "a fox"})

    def silently_ended() -> None:
        redis_client.hset(redis_keys.job(job.job_id), "state", "cancelled")

    start = time.monotonic()
    with later(0.5, silently_ended):
        assert job.wait(timeout_s=30).state is JobState.CANCELLED
    assert time.monotonic() - start < WAKE_S


def test_retry_says_how_many_failed_jobs_are_past_their_retention(sync_producer, redis_url):
    # A batch outlives its early jobs: its counts keep failed jobs whose records expired.
    sync_producer.enqueue_many([{"prompt": f"p{n}"} for n in range(3)], batch_id="old")
    for n in (1, 2):
        fail(sync_producer, f"old.{n}")
    sync_producer.store.redis.delete(redis_keys.job("old.1"))  # as its retention would
    done = run_segq(segq_env(SEGQ_REDIS_URL=redis_url), "retry", "old")
    assert done.returncode == 0, done.stderr
    assert "old: 1 failed job queued again" in done.stderr
    assert "1 more failed, but their records are past their retention" in done.stderr


def test_calls_whose_reply_was_lost_report_what_they_did(settings):
    """Redis ran the script, the connection broke before its reply arrived, and redis-py sent
    the call again (RECONNECTS): the answer is the first run's, not "it was there already"."""
    loss = ReplyLoss()
    with Producer(settings=settings) as made:
        loss.lose_on(made.store.redis)
        made.retry("warm-up")  # loads the scripts: their first run's replies are not lost
        loss.arm()
        job = made.enqueue({"prompt": "a fox"}, idempotency_key="order-1")
        loss.arm()
        loss.arm()  # the batch's opening, then its jobs
        receipt = made.enqueue_many([{"prompt": "a"}, {"prompt": "b"}], batch_id="lost")
        fail(made, job.job_id)
        loss.arm()
        retried = made.retry(job.job_id)
        fail(made, "lost.1")
        fail(made, "lost.2")
        loss.arm()
        retried_in_batch = made.retry_batch("lost")
        assert loss.armed == 0  # every reply above was lost once
        again = made.enqueue({"prompt": "a fox"}, idempotency_key="order-1")
    assert (job.created, receipt.created, retried, retried_in_batch) == (True, 2, True, 2)
    assert again.created is False  # a call of its own: no answer of another call is replayed


def test_async_calls_whose_reply_was_lost_report_what_they_did(settings, sync_producer):
    loss = ReplyLoss()

    async def scenario() -> tuple[object, ...]:
        async with AsyncProducer(settings=settings) as made:
            loss.lose_on(made.store.redis)
            await made.retry("warm-up")
            loss.arm()
            job = await made.enqueue({"prompt": "a fox"})
            fail(sync_producer, job.job_id)
            loss.arm()
            retried = await made.retry(job.job_id)
            return job.created, retried, loss.armed

    assert asyncio.run(scenario()) == (True, True, 0)


def test_export_status_and_retry_json_count_the_jobs_whose_records_are_past_their_retention(
    sync_producer, redis_url
):
    # Given a batch of three whose first job failed, and whose records were all there
    env = segq_env(SEGQ_REDIS_URL=redis_url)
    sync_producer.enqueue_many([{"prompt": f"p{n}"} for n in range(3)], batch_id="aged")
    fail(sync_producer, "aged.1")
    assert json.loads(run_segq(env, "status", "aged", "--json").stdout)["expired_records"] == 0
    # When that job's record expires while the batch goes on
    sync_producer.store.redis.delete(redis_keys.job("aged.1"))  # as its retention would
    # Then an export says which share of the batch has no row, in either format
    for export_format in ("jsonl", "csv"):
        exported = run_segq(env, "export", "aged", "--format", export_format)
        assert exported.returncode == 0, exported.stderr
        assert "not exported: 1 of the batch's 3 jobs, whose records are past their retention" in (
            exported.stderr
        )
    # And the status's JSON counts the jobs its list lacks
    status = json.loads(run_segq(env, "status", "aged", "--json").stdout)
    assert (status["total"], len(status["jobs"]), status["expired_records"]) == (3, 2, 1)
    # And a retry of the batch counts, in its JSON, the failed job it could not run again
    retried = json.loads(run_segq(env, "retry", "aged", "--json").stdout)
    assert retried == {"batch_id": "aged", "retried": 0, "expired_records": 1}

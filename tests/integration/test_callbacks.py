"""Completion callbacks and signed webhooks with real workers, Redis and the sandbox."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from shared.job_model import JobState
from shared.job_store import JobOptions, NewJob, batch_job_id
from shared.webhook_signing import DEFAULT_TOLERANCE_S, SIGNATURE_HEADER, sign, verify
from tests.support.callback_tasks import RECORD_JOB, REFUSE_JOB, received_key
from tests.support.fleet import API_KEY, Fleet, wait_until
from tests.support.webhook_receiver import run_webhook_receiver
from workers.notifications import CALLBACK_QUEUE

pytestmark = pytest.mark.integration

SECRET = "whsec_integration_test_secret"
APP_WORKER_OPTIONS = ("--include=tests.support.callback_tasks", f"--queues={CALLBACK_QUEUE}")
"""A worker of the app that named the callback: it knows the task and consumes its queue."""
QUIET_S = 1.5
"""How long a test watches for a delivery that should not come (a duplicate, a 4th try)."""


def webhook_deliveries(fleet: Fleet, job_id: str) -> list[dict]:
    return [d for d in fleet.store.get_job(job_id).deliveries if d["target"] == "webhook"]


def test_callback_task_receives_each_finished_job_once_per_job_and_per_batch(make_fleet):
    # Given a segq worker and a worker of the app that owns the callback task
    fleet = make_fleet()
    fleet.start_worker(4)
    fleet.start_worker(2, celery_options=APP_WORKER_OPTIONS)
    # When one job names the callback itself and a batch of two names it for its jobs
    [single] = fleet.add([{"prompt": "a lighthouse at dusk"}], JobOptions(callback_task=RECORD_JOB))
    batch_id = f"b{uuid.uuid4().hex[:8]}"
    batch_options = JobOptions(callback_task=RECORD_JOB)
    fleet.store.open_batch(batch_id, defaults={"width": 512}, options=batch_options, source=None)
    lines = [NewJob(batch_job_id(batch_id, n), {"prompt": f"tile {n}"}, n) for n in (1, 2)]
    fleet.store.add_jobs(lines, batch_id=batch_id, options=batch_options)
    job_ids = [single, *(job.job_id for job in lines)]
    jobs = fleet.wait_all(job_ids, timeout_s=60)
    # Then the callback receives each finished job object exactly once
    redis_client = fleet.store.redis
    wait_until(lambda: all(redis_client.llen(received_key(j)) for j in job_ids),
               "callbacks received", 30, fleet.workers)  # fmt: skip
    time.sleep(QUIET_S)
    for job in jobs:
        received = [json.loads(r) for r in redis_client.lrange(received_key(job.job_id), 0, -1)]
        assert len(received) == 1, received
        [payload] = received
        assert payload["state"] == JobState.COMPLETED.value
        assert payload["outputs"] == job.outputs and payload["outputs"]
        assert payload["request_id"] == job.request_id
        assert payload["batch_id"] == job.batch_id
        assert API_KEY not in json.dumps(payload)
    # And each job's record shows the delivery to that task
    for job_id in job_ids:
        [delivery] = fleet.store.get_job(job_id).deliveries
        assert (delivery["target"], delivery["ok"], delivery["detail"]) == (
            "callback_task", True, RECORD_JOB)  # fmt: skip


def test_webhook_gets_one_signed_post_per_job_without_the_api_key(make_fleet):
    # Given workers with a webhook secret and a receiver on loopback
    fleet = make_fleet(SEGQ_WEBHOOK_SECRET=SECRET)
    fleet.start_worker(4)
    with run_webhook_receiver() as receiver:
        # When three jobs name the receiver
        prompts = [{"prompt": f"a kite over dunes {n}"} for n in range(3)]
        job_ids = fleet.add(prompts, JobOptions(webhook_url=receiver.url))
        jobs = fleet.wait_all(job_ids, timeout_s=60)
        wait_until(lambda: len(receiver.posts) >= len(job_ids), "webhook posts", 30, fleet.workers)
        time.sleep(QUIET_S)
    # Then each job got exactly one POST, signed with the secret, carrying the job object
    for job in jobs:
        [post] = receiver.posts_for(job.job_id)
        assert verify(post.body, post.headers[SIGNATURE_HEADER], SECRET)
        assert post.headers["Content-Type"] == "application/json"
        assert (post.job["state"], post.job["outputs"]) == ("completed", job.outputs)
        # And the API key is nowhere in what the receiver got
        assert API_KEY not in post.body.decode()
        assert all(API_KEY not in f"{name}: {value}" for name, value in post.headers.items())
        assert "x-api-key" not in {name.lower() for name in post.headers}
        [delivery] = webhook_deliveries(fleet, job.job_id)
        assert (delivery["ok"], delivery["http_status"], delivery["attempt"]) == (True, 200, 1)


def test_a_tampered_forged_or_replayed_delivery_is_rejected(make_fleet):
    # Given one real delivery as the receiver got it
    fleet = make_fleet(SEGQ_WEBHOOK_SECRET=SECRET)
    fleet.start_worker(2)
    with run_webhook_receiver() as receiver:
        [job_id] = fleet.add([{"prompt": "a signed fox"}], JobOptions(webhook_url=receiver.url))
        fleet.wait_all([job_id], timeout_s=60)
        wait_until(lambda: receiver.posts, "webhook post", 30, fleet.workers)
    [post] = receiver.posts
    header = post.headers[SIGNATURE_HEADER]
    sent_at = int(header.split(",")[0].removeprefix("t="))
    assert verify(post.body, header, SECRET)
    # Then a changed body, another secret, or a made-up digest fail the check
    tampered = post.body.replace(b'"completed"', b'"failed"')
    assert tampered != post.body and not verify(tampered, header, SECRET)
    assert not verify(post.body, header, "not-the-secret")
    assert not verify(post.body, f"t={sent_at},v1={'0' * 64}", SECRET)
    assert not verify(post.body, "garbage", SECRET)
    # And the same delivery replayed past the tolerance, or re-stamped old, is refused
    assert not verify(post.body, header, SECRET, now=sent_at + DEFAULT_TOLERANCE_S + 1)
    stale = sign(post.body, SECRET, timestamp=int(time.time()) - DEFAULT_TOLERANCE_S - 60)
    assert not verify(post.body, stale, SECRET)


def test_a_receiver_that_answers_500_twice_gets_the_third_delivery(make_fleet):
    # Given a receiver that fails its first two deliveries
    fleet = make_fleet(SEGQ_WEBHOOK_SECRET=SECRET)
    fleet.start_worker(2)
    with run_webhook_receiver(script=[500, 500]) as receiver:
        [job_id] = fleet.add([{"prompt": "a patient heron"}], JobOptions(webhook_url=receiver.url))
        [job] = fleet.wait_all([job_id], timeout_s=60)
        # When segq retries with backoff
        wait_until(lambda: len(webhook_deliveries(fleet, job_id)) >= 3, "3 deliveries", 60,
                   fleet.workers)  # fmt: skip
        time.sleep(QUIET_S)
    # Then the third POST was answered 200, every one was validly signed, and no 4th came
    assert [post.answered for post in receiver.posts] == [500, 500, 200]
    assert all(verify(p.body, p.headers[SIGNATURE_HEADER], SECRET) for p in receiver.posts)
    # And the job records all three attempts, in order, and is still completed
    deliveries = webhook_deliveries(fleet, job_id)
    outcomes = [(d["attempt"], d["http_status"], d["ok"]) for d in deliveries]
    assert outcomes == [(1, 500, False), (2, 500, False), (3, 200, True)]
    assert deliveries[0]["at"] < deliveries[1]["at"] < deliveries[2]["at"]
    assert fleet.store.get_job(job_id).state is JobState.COMPLETED is job.state


def test_a_receiver_that_trickles_its_answer_is_told_once_not_once_per_lease(make_fleet):
    # Given notices leased for 5 s, and a receiver whose 200 comes with a body it sends over
    # 16 s (a byte every 0.8 s)
    fleet = make_fleet(SEGQ_WEBHOOK_SECRET=SECRET, SEGQ_LEASE_S="5")
    fleet.start_worker(2)
    with run_webhook_receiver(trickle_s=0.8) as receiver:
        [job_id] = fleet.add([{"prompt": "a patient heron"}], JobOptions(webhook_url=receiver.url))
        fleet.wait_all([job_id], timeout_s=60)
        wait_until(lambda: webhook_deliveries(fleet, job_id), "a delivery", 30, fleet.workers)
        # When the lease has run out twice over
        time.sleep(11)
    # Then the status line was the answer: one POST, one delivery recorded
    assert len(receiver.posts) == 1
    assert [(d["attempt"], d["ok"]) for d in webhook_deliveries(fleet, job_id)] == [(1, True)]


def test_a_receiver_that_trickles_its_status_line_is_given_up_on_in_time(make_fleet):
    # Given a receiver that sends its status line and headers a byte a second (40 s in all)
    fleet = make_fleet(SEGQ_WEBHOOK_SECRET=SECRET)
    fleet.start_worker(2)
    with run_webhook_receiver(trickle_s=1.0, trickle_status=True) as receiver:
        [job_id] = fleet.add([{"prompt": "a slow heron"}], JobOptions(webhook_url=receiver.url))
        # When the job ends and its webhook is sent
        fleet.wait_all([job_id], timeout_s=60)
        started = time.monotonic()
        # Then the try ends within the delivery's 10 s (not when the answer is whole), failed
        [delivery] = wait_until(lambda: webhook_deliveries(fleet, job_id), "a delivery", 25,
                                fleet.workers)  # fmt: skip
        assert time.monotonic() - started < 20
    assert (delivery["ok"], delivery["detail"].split(":")[0]) == (False, "ReadTimeout")


def test_failing_callbacks_never_change_the_jobs_outcome(make_fleet):
    # Given a callback task that raises and a webhook that always answers 500, tried twice
    fleet = make_fleet(SEGQ_WEBHOOK_SECRET=SECRET, SEGQ_WEBHOOK_MAX_ATTEMPTS="2")
    fleet.start_worker(4)
    app_worker = fleet.start_worker(1, celery_options=APP_WORKER_OPTIONS)
    with run_webhook_receiver(then_status=500) as receiver:
        options = JobOptions(callback_task=REFUSE_JOB, webhook_url=receiver.url)
        # When one job completes and one fails upstream (the sandbox's fail marker)
        params = [{"prompt": "a calm lake"}, {"prompt": "a storm [fail]"}]
        ok_id, failed_id = fleet.add(params, options)
        fleet.wait_all([ok_id, failed_id], timeout_s=60)
        wait_until(lambda: all(len(webhook_deliveries(fleet, j)) >= 2 for j in (ok_id, failed_id)),
                   "2 webhook tries each", 60, fleet.workers)  # fmt: skip
        wait_until(lambda: app_worker.output(100_000).count("RuntimeError") >= 2,
                   "callback task raised", 30, fleet.workers)  # fmt: skip
        time.sleep(QUIET_S)
    # Then each job keeps its own outcome: completed with its image, failed with Segmind's error
    ok_job, failed_job = fleet.store.get_jobs([ok_id, failed_id])
    assert ok_job.state is JobState.COMPLETED and ok_job.outputs and ok_job.error is None
    assert failed_job.state is JobState.FAILED and failed_job.error.kind != "retries_exhausted"
    # And the webhook was tried exactly max_attempts times per job, each try on the record
    for job in (ok_job, failed_job):
        posted = [post.job["state"] for post in receiver.posts_for(job.job_id)]
        assert posted == [job.state.value] * 2
        tries = [(d["attempt"], d["ok"]) for d in webhook_deliveries(fleet, job.job_id)]
        assert tries == [(1, False), (2, False)]
        [callback] = [d for d in job.deliveries if d["target"] == "callback_task"]
        assert callback["ok"] and callback["attempt"] == 1


def test_a_cancelled_job_tells_its_callback_too(make_fleet):
    # Given a fleet paused by hand, so the job stays queued, and the app's worker
    fleet = make_fleet()
    fleet.store.pause_fleet("test: hold the queue")
    fleet.start_worker(2)
    fleet.start_worker(2, celery_options=APP_WORKER_OPTIONS)
    [job_id] = fleet.add([{"prompt": "a kite"}], JobOptions(callback_task=RECORD_JOB))
    # When the job is cancelled
    assert fleet.store.cancel_job(job_id).state is JobState.CANCELLED
    # Then its callback hears of it once, with the cancelled job object
    redis_client = fleet.store.redis
    wait_until(lambda: redis_client.llen(received_key(job_id)), "callback received", 30,
               fleet.workers)  # fmt: skip
    time.sleep(QUIET_S)
    received = [json.loads(r) for r in redis_client.lrange(received_key(job_id), 0, -1)]
    assert [payload["state"] for payload in received] == [JobState.CANCELLED.value]
    assert fleet.submits_per_request() == {}


def test_cancelling_a_batch_tells_the_callback_of_every_job_still_queued(make_fleet):
    # Given a fleet paused by hand, a batch of 40 queued jobs that names a callback, and a
    # broker window of 8, so the notices of the cancelled lane go out a few at a time
    fleet = make_fleet(SEGQ_BROKER_WINDOW="8")
    fleet.store.pause_fleet("test: hold the queue")
    fleet.start_worker(2)
    fleet.start_worker(2, celery_options=APP_WORKER_OPTIONS)
    batch_id = f"c{uuid.uuid4().hex[:8]}"
    options = JobOptions(callback_task=RECORD_JOB)
    fleet.store.open_batch(batch_id, defaults={}, options=options, source=None)
    lines = [NewJob(batch_job_id(batch_id, n), {"prompt": f"dune {n}"}, n) for n in range(1, 41)]
    fleet.store.add_jobs(lines, batch_id=batch_id, options=options)
    # When the batch is cancelled
    assert fleet.store.cancel_batch(batch_id).counts["cancelled"] == 40
    # Then the callback hears of each job once, as cancelled, and nothing went upstream
    redis_client = fleet.store.redis
    job_ids = [job.job_id for job in lines]
    wait_until(lambda: all(redis_client.llen(received_key(j)) for j in job_ids),
               "callbacks received", 60, fleet.workers)  # fmt: skip
    time.sleep(QUIET_S)
    for job_id in job_ids:
        received = [json.loads(r) for r in redis_client.lrange(received_key(job_id), 0, -1)]
        assert [payload["state"] for payload in received] == [JobState.CANCELLED.value]
    assert fleet.submits_per_request() == {}

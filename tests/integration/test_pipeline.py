"""The pipeline end to end: real worker processes, a real Redis and the sandbox over sockets."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from shared.job_model import JobState

pytestmark = pytest.mark.integration

SIX_SECOND_JOBS = {"inference_mean_s": 60.0, "inference_sigma": 0.0, "min_queue_s": 0.0}
"""At the test sandbox's time scale (0.1)."""


def test_a_job_ends_completed_with_a_decodable_image_of_the_requested_size(make_fleet):
    # Given one worker on the sandbox
    fleet = make_fleet()
    fleet.start_worker()
    # When a job asks for a 512x768 PNG
    params = {"prompt": "a red fox in snow", "width": 512, "height": 768, "image_format": "png"}
    [job_id] = fleet.add([params])
    [job] = fleet.wait_all([job_id], timeout_s=60)
    # Then it completed with one URL that serves that image, and Segmind's metrics
    assert job.state is JobState.COMPLETED, job.error
    assert job.request_id and job.error is None
    [url] = job.outputs
    image = Image.open(io.BytesIO(httpx.get(url).content))
    assert (image.format, image.size) == ("PNG", (512, 768))
    assert {"inference_time", "queue_time", "total_time"} <= set(job.metrics)
    assert fleet.submits_per_request() == {"a red fox in snow": 1}


def test_a_failed_inference_fails_its_job_with_the_upstreams_words(make_fleet):
    # Given a worker, and a sandbox whose FAILED jobs say why in their own words
    fleet = make_fleet(sandbox={"fail_error": "NSFW content detected (row 422)."})
    fleet.start_worker()
    # When one job of three hits a FAILED inference
    ids = fleet.add({"prompt": p} for p in ("a bowl of pears", "a crowd [fail]", "a kettle"))
    jobs = {job.params["prompt"]: job for job in fleet.wait_all(ids, timeout_s=60)}
    # Then only that job failed, at once, with the 422 and the detail kept verbatim
    failed = jobs.pop("a crowd [fail]")
    assert failed.state is JobState.FAILED
    assert (failed.error.kind, failed.error.http_status) == ("inference_failed", 422)
    assert failed.error.detail == "NSFW content detected (row 422)."
    assert failed.attempts == 0 and failed.outputs == []
    assert all(job.state is JobState.COMPLETED for job in jobs.values())
    assert set(fleet.submits_per_request().values()) == {1}


def test_a_retired_model_fails_jobs_without_retrying(make_fleet):
    fleet = make_fleet(sandbox={"model_retired": True})
    fleet.start_worker()
    ids = fleet.add({"prompt": f"a tower {n}"} for n in range(3))
    for job in fleet.wait_all(ids, timeout_s=60):
        assert job.state is JobState.FAILED
        assert (job.error.kind, job.error.http_status) == ("rejected", 410)
        assert job.error.detail and job.attempts == 0
    assert fleet.sandbox.truth()["totals"]["refused"] == {"410": 3}


def test_gateway_errors_and_dropped_connections_are_retried_until_every_job_completes(
    make_fleet,
):
    # Given a sandbox that answers one call in three with a 500, an HTML 502/503/504 or a drop
    faults = {f"error_{code}_probability": 0.06 for code in (500, 502, 503, 504)}
    fleet = make_fleet(sandbox={**faults, "drop_probability": 0.06}, SEGQ_MAX_ATTEMPTS="12")
    fleet.start_worker(concurrency=16)
    # When 40 jobs run through it
    ids = fleet.add({"prompt": f"a lantern {n}"} for n in range(40))
    jobs = fleet.wait_all(ids, timeout_s=100)
    # Then all completed, some after retries, each submitted upstream exactly once
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 40
    totals = fleet.sandbox.truth()["totals"]
    assert sum(totals["errors_injected"].values()) + totals["dropped"] > 0
    assert sum(job.attempts for job in jobs) > 0
    assert sorted(fleet.submits_per_request().values()) == [1] * 40


def test_a_submit_whose_answer_is_lost_is_submitted_again_and_counted_on_its_job(make_fleet):
    # Given a sandbox that accepts (and bills) one submit in four but loses its answer
    fleet = make_fleet(sandbox={"lost_answer_probability": 0.25}, SEGQ_MAX_ATTEMPTS="12")
    fleet.start_worker(concurrency=8)
    # When 24 jobs run through it
    prompts = [f"a lost letter {n}" for n in range(24)]
    jobs = fleet.wait_all(fleet.add({"prompt": p} for p in prompts), timeout_s=100)
    # Then all completed, and every extra submit Segmind billed is counted on its job
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 24
    submits = fleet.submits_per_request()
    assert fleet.sandbox.truth()["totals"]["lost_answers"] > 0
    assert [submits[p] - 1 for p in prompts] == [job.interrupted_submits for job in jobs]


def test_a_request_id_that_expired_before_its_result_was_read_fails_as_expired(make_fleet):
    # Given a sandbox that forgets finished requests at once
    fleet = make_fleet(sandbox={"retention_s": 0.001})
    fleet.start_worker()
    [job_id] = fleet.add([{"prompt": "a sundial"}])
    [job] = fleet.wait_all([job_id], timeout_s=60)
    assert job.state is JobState.FAILED
    assert (job.error.kind, job.error.http_status) == ("expired", 404)
    assert fleet.submits_per_request() == {"a sundial": 1}


def test_an_outage_longer_than_the_retry_budget_fails_jobs_that_retry_brings_back(make_fleet):
    # Given an upstream outage and a retry budget of two attempts
    fleet = make_fleet(sandbox={"outage": True}, SEGQ_MAX_ATTEMPTS="2")
    fleet.start_worker()
    ids = fleet.add({"prompt": f"a mill {n}"} for n in range(3))
    # When the budget is spent: failed, kind retries_exhausted, with the last error kept
    for job in fleet.wait_all(ids, timeout_s=60):
        assert job.state is JobState.FAILED
        assert (job.error.kind, job.error.http_status) == ("retries_exhausted", 503)
        assert job.attempts == 2
    # Then once the upstream is back, retrying brings every job to completion
    fleet.sandbox.set_faults(outage=False)
    assert all(fleet.store.retry_job(job_id) for job_id in ids)
    assert {job.state for job in fleet.wait_all(ids, timeout_s=60)} == {JobState.COMPLETED}
    assert sorted(fleet.submits_per_request().values()) == [1, 1, 1]


def test_a_429_storm_on_submits_and_polls_delays_jobs_but_costs_no_attempt(make_fleet):
    # Given an account that admits 8 submits and 6 status/result calls per 3 s, unknown to segq
    storm = {"submit_rpm": 8, "poll_rpm": 6, "rate_window_s": 3.0}
    fleet = make_fleet(sandbox=storm)
    fleet.start_worker(concurrency=16)
    fleet.start_worker(concurrency=16)
    # When 20 jobs arrive at once
    ids = fleet.add({"prompt": f"a beehive {n}"} for n in range(20))
    jobs = fleet.wait_all(ids, timeout_s=100)
    # Then the upstream told the fleet off on both kinds of call ...
    told_off = fleet.sandbox.truth()["totals"]["rate_limited"]
    assert told_off["submit"] > 0 and told_off["poll"] > 0
    # ... yet every job completed, none spent a retry attempt, and none was paid for twice
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 20
    assert [job.attempts for job in jobs] == [0] * 20
    assert sorted(fleet.submits_per_request().values()) == [1] * 20


def test_a_worker_that_joins_later_polls_as_late_as_the_fleet_has_learned(make_fleet):
    # Given jobs of 6 s upstream, and a worker that finished some and then stopped (a deploy)
    fleet = make_fleet(sandbox=SIX_SECOND_JOBS)
    first = fleet.start_worker(4)
    before = fleet.wait_all(fleet.add({"prompt": f"a harbour {n}"} for n in range(4)), 60)
    first.stop()
    # When a new worker process takes the next jobs
    fleet.start_worker(4)
    after = fleet.wait_all(fleet.add({"prompt": f"a jetty {n}"} for n in range(4)), 60)
    # Then it polls them near the end the fleet learned (4 polls each here), where the first
    # worker, starting from the 2 s prior, polled from 1.5 s on (16 each here)
    assert {job.state for job in before + after} == {JobState.COMPLETED}
    assert max(job.polls for job in after) <= 6 and min(job.polls for job in before) >= 8

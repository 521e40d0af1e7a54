"""An upstream outage longer than the retry budget, and the operator's way back: `segq retry`.

Jobs caught by the outage end ``failed`` with kind ``retries_exhausted`` and the last error
(the outage's 503). Once Segmind is back, `segq retry BATCH` (a real subprocess, as an operator
runs it) brings every one back: a job that gave up while polling resumes polling its request id,
so it is not paid for twice; a job that never reached Segmind is submitted for the first time.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared.job_model import JobState
from shared.job_store import JobOptions, NewJob, batch_job_id
from tests.support.fleet import REPO, Fleet, wait_until

pytestmark = pytest.mark.integration

SLOW_JOBS = {"inference_mean_s": 40.0, "inference_sigma": 0.0}
"""4 s per job upstream (time scale 0.1): the outage strikes while they are polled."""
TWO_ATTEMPTS = {"SEGQ_MAX_ATTEMPTS": "2", "SEGQ_MAX_IN_FLIGHT": "3"}
"""A budget the outage outlasts; three jobs upstream at once, so the others are still queued."""


def enqueue_batch(fleet: Fleet, batch_id: str, prompts: list[str]) -> list[str]:
    fleet.store.open_batch(batch_id, defaults={}, options=JobOptions(), source=None)
    jobs = [NewJob(batch_job_id(batch_id, n), {"prompt": p}, n) for n, p in enumerate(prompts, 1)]
    fleet.store.add_jobs(jobs, batch_id=batch_id, options=JobOptions())
    return [job.job_id for job in jobs]


def segq_retry(fleet: Fleet, target_id: str) -> dict:
    command = [sys.executable, "-m", "producer", "retry", target_id, "--json"]
    done = subprocess.run(command, env=fleet.env(), cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_outage_longer_than_the_retry_budget_fails_jobs_and_segq_retry_brings_them_back(
    make_fleet,
):
    # Given a batch of 5 on a fleet with a budget of two attempts, three of them upstream
    fleet = make_fleet(sandbox=SLOW_JOBS, **TWO_ATTEMPTS)
    fleet.start_worker()
    ids = enqueue_batch(fleet, "outage1", [f"a windmill {n}" for n in range(5)])
    submitted = wait_until(lambda: [j for j in fleet.store.get_jobs(ids) if j.request_id],
                           "three jobs upstream", 30, fleet.workers)  # fmt: skip
    # When the upstream goes down for longer than the budget
    fleet.sandbox.set_faults(outage=True)
    jobs = fleet.wait_all(ids, timeout_s=60)
    # Then every job failed retries_exhausted with the outage's 503 as its last error ...
    for job in jobs:
        assert job.state is JobState.FAILED
        assert (job.error.kind, job.error.http_status) == ("retries_exhausted", 503)
        assert "503 Service Unavailable" in job.error.detail
    request_ids = {job.job_id: job.request_id for job in jobs if job.request_id}
    assert len(request_ids) >= len(submitted) and len(request_ids) < 5
    # ... and once it is back, `segq retry` queues all five again
    fleet.sandbox.set_faults(outage=False)
    assert segq_retry(fleet, "outage1") == {"batch_id": "outage1", "retried": 5}
    jobs = fleet.wait_all(ids, timeout_s=90)
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 5
    # The jobs that gave up while polling kept their request: nothing was paid twice
    assert {j.job_id: j.request_id for j in jobs if j.job_id in request_ids} == request_ids
    assert sorted(fleet.submits_per_request().values()) == [1] * 5

"""Upstream outages longer than the retry budget: nothing accepted is lost, nothing queued
burns its attempts.

Jobs Segmind accepted before the outage wait it out: they keep polling their request ids through
more failures than ``SEGQ_MAX_ATTEMPTS`` allows (Segmind keeps a result for an hour) and complete
once it is back, paid for once. Queued jobs are held: after eight transient failures in a row
(``SEGQ_OUTAGE_FAILURES``) the fleet pauses its submits, probing every 10 s
(``SEGQ_OUTAGE_PROBE_SECONDS``), until Segmind answers again. Jobs that do
spend their budget (a shorter burst of failures) are covered with `segq retry` in
``test_producer_cli.py`` and ``test_pipeline.py``.
"""

from __future__ import annotations

import time

import pytest

from shared.job_model import JobState
from shared.job_store import JobOptions, NewJob, batch_job_id
from tests.support.fleet import Fleet, wait_until

pytestmark = pytest.mark.integration

SLOW_JOBS = {"inference_mean_s": 40.0, "inference_sigma": 0.0}
"""4 s per job upstream (time scale 0.1): the outage strikes while they are polled."""
MAX_ATTEMPTS = 2
"""A budget the outage outlasts."""


def enqueue_batch(fleet: Fleet, batch_id: str, prompts: list[str]) -> list[str]:
    fleet.store.open_batch(batch_id, defaults={}, options=JobOptions(), source=None)
    jobs = [NewJob(batch_job_id(batch_id, n), {"prompt": p}, n) for n, p in enumerate(prompts, 1)]
    fleet.store.add_jobs(jobs, batch_id=batch_id, options=JobOptions())
    return [job.job_id for job in jobs]


def test_jobs_segmind_accepted_poll_through_an_outage_longer_than_the_retry_budget(make_fleet):
    # Given a fleet with a budget of two attempts and three jobs accepted upstream
    fleet = make_fleet(sandbox=SLOW_JOBS, SEGQ_MAX_ATTEMPTS=str(MAX_ATTEMPTS))
    fleet.start_worker()
    accepted = enqueue_batch(fleet, "outage1", [f"a windmill {n}" for n in range(3)])
    wait_until(lambda: all(j.request_id for j in fleet.store.get_jobs(accepted)),
               "three jobs upstream", 30, fleet.workers)  # fmt: skip
    # When the upstream goes down
    fleet.sandbox.set_faults(outage=True)
    # Then the jobs survive more failures than the budget, still under way
    wait_until(lambda: all(j.attempts > MAX_ATTEMPTS for j in fleet.store.get_jobs(accepted)),
               "accepted jobs past the attempt budget", 60, fleet.workers)  # fmt: skip
    assert all(not j.state.is_terminal for j in fleet.store.get_jobs(accepted))
    # And once it is back, they complete by themselves, each paid for once
    fleet.sandbox.set_faults(outage=False)
    done = fleet.wait_all(accepted, timeout_s=90)
    assert [job.state for job in done] == [JobState.COMPLETED] * 3
    assert sorted(fleet.submits_per_request().values()) == [1] * 3
    assert not fleet.store.fleet_state().paused


def test_an_outage_pauses_submits_instead_of_failing_queued_jobs_and_ends_when_segmind_answers(
    make_fleet,
):
    # Given Segmind down from the start, and a budget of two attempts per job
    fleet = make_fleet(sandbox={"outage": True}, SEGQ_MAX_ATTEMPTS=str(MAX_ATTEMPTS))
    fleet.start_worker()
    ids = enqueue_batch(fleet, "outage2", [f"a lock keeper {n}" for n in range(12)])
    # When eight submits in a row have failed, the fleet holds new submits and says why
    paused = wait_until(lambda: fleet.store.fleet_state().paused and fleet.store.fleet_state(),
                        "the fleet pauses", 30, fleet.workers)  # fmt: skip
    assert paused.reason.startswith("Segmind unavailable: 8 failures in a row, the last 503")
    assert not paused.manual
    # ... and however long the outage lasts beyond the budget, no job spends it
    time.sleep(12)
    jobs = fleet.store.get_jobs(ids)
    assert [job.state for job in jobs] == [JobState.QUEUED] * 12
    assert max(job.attempts for job in jobs) < MAX_ATTEMPTS
    # Then once Segmind is back, a probe ends the pause and every job completes, paid once
    fleet.sandbox.set_faults(outage=False)
    jobs = fleet.wait_all(ids, timeout_s=60)
    assert [job.state for job in jobs] == [JobState.COMPLETED] * 12
    assert not fleet.store.fleet_state().paused
    assert sorted(fleet.submits_per_request().values()) == [1] * 12

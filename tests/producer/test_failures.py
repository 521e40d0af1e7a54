"""Failure reasons grouped: one row per distinct upstream answer, however many jobs had it."""

from __future__ import annotations

from producer.failures import REQUEST_ID_MARK, FailureReason, group_failures
from shared.job_model import Job, JobFailure, JobState


def failed(n: int, kind: str, status: int | None, detail: str, request_id: str | None) -> Job:
    return Job(job_id=f"b.{n}", state=JobState.FAILED, request_id=request_id, created_at=0.0,
               error=JobFailure(kind=kind, http_status=status, detail=detail))  # fmt: skip


def test_a_detail_that_names_its_own_request_id_groups_with_the_others():
    expired = [failed(n, "expired", 404, f"Request r-{n} not found", f"r-{n}") for n in range(5)]
    nsfw = [failed(9, "inference_failed", 422, "NSFW content detected", "r-9")]
    queued = Job(job_id="b.10", state=JobState.QUEUED, created_at=0.0)
    assert group_failures([*expired, None, queued, *nsfw]) == [
        FailureReason(kind="expired", http_status=404, jobs=5,
                      detail=f"Request {REQUEST_ID_MARK} not found"),
        FailureReason(kind="inference_failed", http_status=422, detail="NSFW content detected",
                      jobs=1),
    ]  # fmt: skip


def test_a_job_never_submitted_keeps_its_detail_as_it_is():
    job = failed(1, "rejected", 400, "width must be a multiple of 8", None)
    assert group_failures([job])[0].detail == "width must be a multiple of 8"

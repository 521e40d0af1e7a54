"""Why a batch's jobs failed, grouped: the same upstream answer counted once, not listed
10,000 times. Both producer flavours read a bounded sample of failed jobs and group it here."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pydantic import BaseModel

from shared.job_model import Job

FAILURES_SAMPLED = 1000
"""Failed jobs read to group reasons: enough to show every distinct reason a batch usually
has, few enough that a status of a huge, badly failing batch stays instant."""


class FailureReason(BaseModel):
    """One distinct reason, as the upstream (or segq) put it, and how many sampled jobs had it."""

    kind: str
    http_status: int | None
    detail: str
    jobs: int


REQUEST_ID_MARK = "<request_id>"


def group_failures(jobs: Iterable[Job | None]) -> list[FailureReason]:
    """Reasons from most to least frequent; jobs without a recorded error are skipped. A job's
    own request id in its detail (``Request 7dd2... not found``) is shown as
    ``REQUEST_ID_MARK``, or every such job would be a reason of its own."""
    counts = Counter(
        (job.error.kind, job.error.http_status, _shared_detail(job))
        for job in jobs
        if job is not None and job.error is not None
    )
    return [
        FailureReason(kind=kind, http_status=status, detail=detail, jobs=n)
        for (kind, status, detail), n in counts.most_common()
    ]


def _shared_detail(job: Job) -> str:
    detail = job.error.detail if job.error else ""
    return detail.replace(job.request_id, REQUEST_ID_MARK) if job.request_id else detail

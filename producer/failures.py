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


def group_failures(jobs: Iterable[Job | None]) -> list[FailureReason]:
    """Reasons from most to least frequent; jobs without a recorded error are skipped."""
    counts = Counter(
        (job.error.kind, job.error.http_status, job.error.detail)
        for job in jobs
        if job is not None and job.error is not None
    )
    return [
        FailureReason(kind=kind, http_status=status, detail=detail, jobs=n)
        for (kind, status, detail), n in counts.most_common()
    ]

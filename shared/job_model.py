"""What a job is, as users see it: its states, its failure record and its JSON form.

The JSON form (``Job.to_json()``) is what ``segq status --json`` prints and what callbacks and
webhooks receive; other tools rely on its field names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from shared.errors import UpstreamError


class JobState(StrEnum):
    """A job's life: queued -> submitted -> running -> completed | failed | cancelled."""

    QUEUED = "queued"
    """Accepted by segq, waiting for a submit slot (or a retry after a transient failure)."""
    SUBMITTED = "submitted"
    """Segmind accepted it and gave a request_id; it waits in Segmind's queue."""
    RUNNING = "running"
    """Segmind reports PROCESSING."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


class JobFailure(BaseModel):
    """Why a job failed: ``kind`` from the error taxonomy, the upstream's detail verbatim."""

    model_config = ConfigDict(frozen=True)

    kind: str
    http_status: int | None = None
    detail: str

    @classmethod
    def from_error(cls, exc: UpstreamError) -> JobFailure:
        return cls(kind=exc.kind, http_status=exc.http_status, detail=exc.detail)


class Job(BaseModel):
    """A snapshot of one job record."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    state: JobState
    request_id: str | None = None
    outputs: list[str] = []
    metrics: dict[str, Any] = {}
    attempts: int = 0
    polls: int = 0
    error: JobFailure | None = None
    created_at: float
    submitted_at: float | None = None
    finished_at: float | None = None
    batch_id: str | None = None
    line: int | None = None
    priority: str = "bulk"
    params: dict[str, Any] = {}
    deliveries: list[dict[str, Any]] = []
    interrupted_submits: int = 0
    """Submits that may have reached Segmind unrecorded: their worker died between sending
    and recording, or their answer was lost (``AnswerLost``). Each may have been paid."""

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal

    def to_json(self) -> dict[str, Any]:
        """The job object of ``segq status --json``, callbacks and webhooks."""
        return {
            "job_id": self.job_id,
            "state": self.state.value,
            "request_id": self.request_id,
            "outputs": list(self.outputs),
            "metrics": dict(self.metrics),
            "attempts": self.attempts,
            "polls": self.polls,
            "error": self.error.model_dump() if self.error else None,
            "created_at": iso_time(self.created_at),
            "submitted_at": iso_time(self.submitted_at),
            "finished_at": iso_time(self.finished_at),
            "batch_id": self.batch_id,
            "line": self.line,
            "priority": self.priority,
            "params": dict(self.params),
            "deliveries": list(self.deliveries),
            "interrupted_submits": self.interrupted_submits,
        }


def iso_time(epoch_s: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC timestamp with milliseconds (None stays None)."""
    if epoch_s is None:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")

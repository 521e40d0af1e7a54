"""The job record's Redis form: a small hash (a listpack), read back into a ``Job``.

Fields are stored only when they hold something (no defaults per job); numbers are written by
the Lua scripts, JSON fields by the store. A batch's parameter defaults live once in the batch
hash and are merged in when a job is read.
"""

from __future__ import annotations

import json
from typing import Any

from shared.job_model import Job, JobFailure, JobState

_JSON_FIELDS = ("params", "outputs", "metrics", "deliveries")


def compact_json(value: Any) -> str:
    """JSON without spaces: every byte of a record is paid for a million times."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def decode_job(
    job_id: str,
    fields: dict[str, str],
    batch_defaults: dict[str, Any] | None = None,
    batch_cancelled_at: float | None = None,
) -> Job:
    """A ``Job`` from its hash fields (decoded strings) and, for batch jobs, its batch's
    defaults and cancel time: a job still queued in a cancelled batch reads as cancelled."""
    loaded = {name: json.loads(fields[name]) for name in _JSON_FIELDS if name in fields}
    state = JobState(fields["state"])
    finished_at = _float(fields.get("finished_at"))
    if state is JobState.QUEUED and batch_cancelled_at is not None:
        state, finished_at = JobState.CANCELLED, batch_cancelled_at
    error = JobFailure.model_validate_json(fields["error"]) if "error" in fields else None
    return Job(
        job_id=job_id,
        state=state,
        request_id=fields.get("request_id"),
        outputs=loaded.get("outputs", []),
        metrics=loaded.get("metrics", {}),
        attempts=int(fields.get("attempts", 0)),
        polls=int(fields.get("polls", 0)),
        error=error,
        created_at=float(fields["created_at"]),
        submitted_at=_float(fields.get("submitted_at")),
        finished_at=finished_at,
        batch_id=fields.get("batch_id"),
        line=int(fields["line"]) if fields.get("line") else None,
        priority=fields.get("priority", "bulk"),
        params={**(batch_defaults or {}), **loaded.get("params", {})},
        deliveries=loaded.get("deliveries", []),
        interrupted_submits=int(fields.get("interrupted_submits", 0)),
    )


def _float(text: str | None) -> float | None:
    return float(text) if text else None

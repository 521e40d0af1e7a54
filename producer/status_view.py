"""How a job's and a batch's status read: rich tables for people, the JSON form for machines.

A batch's JSON holds every job, so it is written as a stream (a chunk of reads at a time), never
built whole: ``segq status BATCH --json`` on a million jobs uses the memory of one chunk.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, TextIO

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from producer.failures import FailureReason
from shared.fleet_state import FleetState, RateLimitState
from shared.job_model import Job, JobState, iso_time
from shared.job_store import EXPIRED_IN_QUEUE, BatchSummary

EXPIRED_IN_QUEUE_DETAIL = (
    "waited in the queue past SEGQ_JOB_RETENTION_S: the record expired before a worker took "
    "the job, so nothing of it is left to run"
)


def batch_head_json(
    summary: BatchSummary, reasons: list[FailureReason], fleet: FleetState, now: float
) -> dict[str, Any]:
    """Everything of ``segq status BATCH --json`` but its jobs."""
    return {
        "batch_id": summary.batch_id,
        "total": summary.total,
        "counts": summary.counts,
        "throughput_per_s": summary.throughput_per_s(now),
        "eta_s": summary.eta_s(now),
        "failures_by_kind": summary.failures_by_kind,
        "failure_reasons": [reason.model_dump() for reason in reasons],
        "created_at": iso_time(summary.created_at),
        "finished_at": iso_time(summary.finished_at),
        "cancelled_at": iso_time(summary.cancelled_at),
        "priority": summary.priority,
        "source": summary.source,
        "fleet": fleet_json(fleet),
    }


def fleet_json(fleet: FleetState) -> dict[str, Any]:
    return {"paused": fleet.paused, "reason": fleet.reason, "since": iso_time(fleet.since),
            "manual": fleet.manual,
            "rate_limits": [rate_limit_json(state) for state in fleet.rate_limits]}  # fmt: skip


def rate_limit_json(state: RateLimitState) -> dict[str, Any]:
    return {**state.model_dump(), "hold_until": iso_time(state.hold_until)}


def write_batch_json(
    head: dict[str, Any], summary: BatchSummary, jobs: Iterable[Job], out: TextIO
) -> None:
    """``head`` with a ``jobs`` list, written one job at a time, then ``expired_records``: how
    many jobs the batch counts that the list lacks, known only once the list is written."""
    opening = json.dumps(head, ensure_ascii=False)
    out.write(opening[:-1] + ', "jobs": [')
    listed = 0
    for job in jobs:
        out.write(("," if listed else "") + json.dumps(job.to_json(), ensure_ascii=False))
        listed += 1
    out.write(f'], "expired_records": {summary.past_retention(listed)}}}\n')


def job_view(job: Job) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str | None]] = [
        ("job", job.job_id),
        ("state", job.state.value),
        ("batch", f"{job.batch_id} line {job.line}" if job.batch_id else None),
        ("prompt", str(job.params.get("prompt", ""))),
        ("request id", job.request_id),
        ("attempts", str(job.attempts) if job.attempts else None),
        ("created", iso_time(job.created_at)),
        ("finished", iso_time(job.finished_at)),
        ("error", f"{job.error.kind} ({job.error.http_status}): {job.error.detail}"
         if job.error else None),
    ]  # fmt: skip
    rows += [("output", url) for url in job.outputs]
    for name, value in rows:
        if value:
            table.add_row(name, Text(value))
    return table


def batch_view(
    summary: BatchSummary, reasons: list[FailureReason], fleet: FleetState, now: float
) -> Group:
    counts = Table(title=f"batch {summary.batch_id}", title_justify="left")
    for state in JobState:
        counts.add_column(state.value, justify="right")
    counts.add_column("total", justify="right")
    counts.add_row(*(f"{summary.counts[s.value]:,}" for s in JobState), f"{summary.total:,}")
    parts: list[Any] = [counts, Text(pace_line(summary, now))]
    if summary.cancelled_at is not None:
        parts.append(Text(f"cancelled at {iso_time(summary.cancelled_at)}", style="yellow"))
    if reasons:
        parts.append(failures_table(reasons))
    if fleet.paused:
        parts.append(Text(pause_line(fleet, now), style="bold red"))
    parts += [Text(line, style="yellow") for line in rate_limit_lines(fleet.rate_limits)]
    return Group(*parts)


def pace_line(summary: BatchSummary, now: float) -> str:
    rate = summary.throughput_per_s(now)
    if summary.is_terminal:
        return f"done: {summary.done:,} of {summary.total:,} ended" + (
            f", {rate:.2f} jobs/s" if rate else ""
        )
    eta = summary.eta_s(now)
    pace = f"{rate:.2f} jobs/s" if rate else "no worker has run a job to its end yet"
    return f"{summary.done:,} of {summary.total:,} ended; {pace}; ETA {duration(eta)}"


def pause_line(fleet: FleetState, now: float) -> str:
    kind = "paused by hand" if fleet.manual else "paused automatically"
    since = (
        f" since {iso_time(fleet.since)} ({duration(now - fleet.since)} ago)" if fleet.since else ""
    )
    return f"fleet {kind}{since}: {fleet.reason or 'no reason given'}; segq resume to resume"


CALLS = {"submit": "submits", "poll": "status and result calls"}


def rate_limit_lines(states: list[RateLimitState]) -> list[str]:
    """A line per hold and per learned rate in use, naming the API key (by its fingerprint)
    only when budgets of several keys are listed."""
    several_keys = len({state.account for state in states}) > 1
    lines = []
    for state in states:
        head = f"key {state.account}: " if several_keys else ""
        if state.hold_until is not None:
            lines.append(f"{head}{hold_line(state)}; segq resume lifts it")
        if state.learned_per_min is not None:
            lines.append(head + learned_rate_line(state))
    return lines


def hold_line(state: RateLimitState) -> str:
    return (f"{CALLS[state.kind]} on hold after a 429 until {iso_time(state.hold_until)} "
            f"({duration(state.hold_left_s)} left)")  # fmt: skip


def learned_rate_line(state: RateLimitState) -> str:
    rate = f"{CALLS[state.kind]} at {state.learned_per_min:.1f}/min"
    if state.configured_per_min is None:
        return f"{rate}, learned from 429s (no limit configured)"
    return (f"{rate}, lowered by 429s (configured {state.configured_per_min:g}/min); "
            "it grows back while answers are good")  # fmt: skip


def failures_table(reasons: list[FailureReason]) -> Table:
    table = Table(title="failure reasons (sampled)", title_justify="left")
    for name, justify in (("jobs", "right"), ("kind", "left"), ("http", "right"),
                          ("detail", "left")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for reason in reasons:
        status = str(reason.http_status) if reason.http_status else "-"
        table.add_row(f"{reason.jobs:,}", reason.kind, status, Text(reason.detail))
    return table


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return (
        f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
    )


def batch_failure_reasons(producer: Any, summary: BatchSummary) -> list[FailureReason]:
    """Reasons grouped from a sample of failed jobs, and the jobs that expired in the queue,
    which no record holds: only the batch's counters know them."""
    if not summary.counts["failed"]:
        return []
    reasons: list[FailureReason] = producer.failure_reasons(summary.batch_id)
    if expired := summary.failures_by_kind.get(EXPIRED_IN_QUEUE):
        reasons.append(FailureReason(kind=EXPIRED_IN_QUEUE, http_status=None, jobs=expired,
                                     detail=EXPIRED_IN_QUEUE_DETAIL))  # fmt: skip
    return reasons


def print_batch(console: Console, producer: Any, summary: BatchSummary) -> None:
    """The batch for people, with the fleet's pause (if any) and grouped failure reasons."""
    reasons = batch_failure_reasons(producer, summary)
    console.print(batch_view(summary, reasons, producer.fleet_state(), time.time()))


def write_batch_status_json(producer: Any, summary: BatchSummary, out: TextIO) -> None:
    """``segq status BATCH --json`` (also what ``segq wait BATCH --json`` prints at the end)."""
    reasons = batch_failure_reasons(producer, summary)
    head = batch_head_json(summary, reasons, producer.fleet_state(), time.time())
    write_batch_json(head, summary, producer.iter_batch_jobs(summary.batch_id), out)

"""`segq export ID --format jsonl|csv`: one row per job (input line, parameters, state, outputs,
error), streamed a chunk of reads at a time, to stdout or a file."""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from producer.terminal import URL_EXPIRY_ADVICE, find, open_producer, people
from shared.errors import InputError
from shared.job_model import Job, iso_time
from shared.job_store import BatchSummary
from shared.request_model import parameter_names

EXPORT_FORMATS = ("jsonl", "csv")
CSV_COLUMNS = [
    *("line", "job_id", "state"),
    *parameter_names(),
    *("request_id", "outputs", "error_kind", "error_http_status", "error_detail"),
    *("created_at", "finished_at"),
]
"""A CSV export: the job, every request parameter (empty: not given, so the default), its
outcome; ``outputs`` holds the result URLs separated by spaces."""


def export_row(job: Job) -> dict[str, Any]:
    """A JSON Lines row: the job's line and input, and its outcome."""
    return {
        "line": job.line,
        "job_id": job.job_id,
        "state": job.state.value,
        "params": dict(job.params),
        "request_id": job.request_id,
        "outputs": list(job.outputs),
        "error": job.error.model_dump() if job.error else None,
        "created_at": iso_time(job.created_at),
        "finished_at": iso_time(job.finished_at),
    }


def csv_row(job: Job) -> list[str]:
    error = job.error
    cells: list[Any] = [job.line, job.job_id, job.state.value]
    cells += [csv_cell(job.params.get(name)) for name in parameter_names()]
    cells += [job.request_id, " ".join(job.outputs), error and error.kind,
              error and error.http_status, error and error.detail, iso_time(job.created_at),
              iso_time(job.finished_at)]  # fmt: skip
    return ["" if cell is None else str(cell) for cell in cells]


def csv_cell(value: Any) -> Any:
    """Booleans as true/false (what a batch file's CSV reads back), the rest as is."""
    return ("true" if value else "false") if isinstance(value, bool) else value


def write_export(jobs: Iterable[Job], export_format: str, out: TextIO) -> int:
    """Writes one row per job; returns how many."""
    rows = 0
    if export_format == "csv":
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for job in jobs:
            writer.writerow(csv_row(job))
            rows += 1
        return rows
    for job in jobs:
        out.write(json.dumps(export_row(job), ensure_ascii=False) + "\n")
        rows += 1
    return rows


@contextlib.contextmanager
def output_stream(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:
        out = path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"--output {path}: cannot write it ({exc.strerror})") from None
    with out:
        yield out


@click.command()
@click.argument("target_id", metavar="ID")
@click.option("--format", "export_format", type=click.Choice(EXPORT_FORMATS), default="jsonl",
              show_default=True, help="JSON Lines (one object per job) or CSV.")  # fmt: skip
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE instead of stdout.")  # fmt: skip
def export(target_id: str, export_format: str, output: Path | None) -> None:
    """Export a batch (or one job): one row per job, in line order."""
    with open_producer() as producer:
        target = find(producer, target_id)
        jobs = [target] if isinstance(target, Job) else producer.iter_batch_jobs(target.batch_id)
        with output_stream(output) as out:
            rows = write_export(jobs, export_format, out)
    where = f" to {output}" if output else ""
    people().print(f"exported {rows:,} job{'s' * (rows != 1)}{where}. {URL_EXPIRY_ADVICE}")
    if isinstance(target, BatchSummary) and (expired := target.past_retention(rows)):
        people().print(f"not exported: {expired:,} of the batch's {target.total:,} jobs, whose "
                       "records are past their retention (SEGQ_JOB_RETENTION_S); the batch's "
                       "counts (segq status) still include them")  # fmt: skip

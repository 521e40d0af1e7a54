"""`segq batch FILE`: check every line of a batch file, then enqueue it as one batch.

Two streaming passes, so memory stays flat whatever the file's size: the first validates every
line and reports each invalid one (line number, field, reason); only then, and only if the file
is valid (or ``--skip-invalid``), the second reads it again and enqueues. The default batch id
comes from the file's name and a hash of its content and ``--set`` values, so running the same
file again enqueues only what is missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from producer.api import Producer
from producer.batch_files import FORMATS, BatchFile
from producer.enqueueing import (
    MAX_LINE_NUMBER,
    BatchLine,
    BatchReceipt,
    LineProblem,
    checked_batch_id,
    request_or_problems,
)
from producer.terminal import (
    defaults_from,
    json_option,
    notify_options,
    open_producer,
    people,
    print_json,
    priority_option,
    set_option,
)
from shared.errors import InputError, JobNotFound, SegqError, StoreError
from shared.settings import Settings

PROBLEMS_IN_JSON = 100
"""Invalid lines listed in --json output (all of them go to stderr as they are found)."""


@dataclass
class FileCheck:
    """The first pass: lines that make a job, and the numbers of the invalid ones."""

    lines: int = 0
    invalid: array = field(default_factory=lambda: array("q"))
    first_problems: list[LineProblem] = field(default_factory=list)


def check_file(
    batch_file: BatchFile, defaults: dict[str, Any], max_lines: int, quiet: bool
) -> FileCheck:
    """Validates every line, printing each problem to stderr as it is found."""
    check, console = FileCheck(), people()
    for entry in batch_file.entries():
        check.lines += 1
        if check.lines > max_lines:
            raise InputError(f"{batch_file.path}: more than {max_lines:,} lines "
                             "(SEGQ_MAX_BATCH_LINES); split the file")  # fmt: skip
        problems = [entry] if isinstance(entry, LineProblem) else line_problems(entry, defaults)
        if problems:
            check.invalid.append(problems[0].line)
        for problem in problems:
            if len(check.first_problems) < PROBLEMS_IN_JSON:
                check.first_problems.append(problem)
            if not quiet:
                console.print(str(problem), style="red", markup=False)
    return check


def line_problems(entry: BatchLine, defaults: dict[str, Any]) -> list[LineProblem]:
    if entry.line > MAX_LINE_NUMBER:  # found here, not part way through the enqueue
        return [LineProblem(entry.line, f"line numbers go up to {MAX_LINE_NUMBER:,}")]
    valid = request_or_problems(entry.params, defaults)
    if isinstance(valid, list):
        return [LineProblem(entry.line, reason, name) for name, reason in valid]
    return []


def valid_lines(batch_file: BatchFile, invalid: array) -> Iterator[BatchLine]:
    """The second pass: every line the first pass found valid (both go in file order)."""
    skipped = iter(invalid)
    next_invalid = next(skipped, None)
    for entry in batch_file.entries():
        if isinstance(entry, LineProblem):
            continue
        while next_invalid is not None and next_invalid < entry.line:
            next_invalid = next(skipped, None)
        if entry.line != next_invalid:
            yield entry


def default_batch_id(batch_file: BatchFile, defaults: dict[str, Any]) -> str:
    """``{file name}-{hash}``: the same content and --set values give the same batch, so a
    re-run adds only missing jobs; a changed file is a new batch."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", batch_file.path.stem).strip("-")[:40] or "batch"
    run = json.dumps([batch_file.sha256, batch_file.format, defaults], sort_keys=True)
    return f"{stem}-{hashlib.sha256(run.encode()).hexdigest()[:12]}"


def refusal(check: FileCheck) -> str:
    valid = check.lines - len(check.invalid)
    return (f"{len(check.invalid):,} of {check.lines:,} lines are invalid (listed above); "
            f"nothing was enqueued. Fix them, or pass --skip-invalid to enqueue the {valid:,} "
            "valid lines.")  # fmt: skip


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--batch-id", help="Name the batch (default: from the file's name and content).")
@set_option
@click.option("--format", "file_format", type=click.Choice(FORMATS),
              help="jsonl, csv or text (default: from the file's extension).")  # fmt: skip
@click.option("--skip-invalid", is_flag=True, help="Enqueue the valid lines of an invalid file.")
@priority_option
@notify_options
@json_option
def batch(
    file: Path, batch_id: str | None, assignments: tuple[str, ...], file_format: str | None,
    skip_invalid: bool, priority: str, callback_task: str | None, webhook_url: str | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Enqueue every line of FILE (JSON Lines, CSV with a header, or one prompt per line) as
    one batch; prints the batch id ({"batch_id": ...} with --json)."""
    defaults = defaults_from(assignments)
    if batch_id is not None:
        checked_batch_id(batch_id)  # before reading a large file, not after
    with open_producer() as producer:
        settings: Settings = producer.settings
        batch_file = BatchFile(file, file_format, max_file_bytes=settings.max_file_bytes,
                               max_line_bytes=settings.max_line_bytes)  # fmt: skip
        check = check_file(batch_file, defaults, settings.max_batch_lines, quiet=False)
        refuse_or_continue(check, skip_invalid, as_json, file)
        batch_id = batch_id or default_batch_id(batch_file, defaults)
        with stopped_part_way(producer, batch_id, file, as_json):
            receipt = producer.enqueue_many(
                valid_lines(batch_file, check.invalid),
                batch_id=batch_id,
                defaults=defaults,
                source=file.name,
                priority=priority,
                callback=callback_task,
                webhook_url=webhook_url,
            )
    report(receipt, check, as_json)


@contextlib.contextmanager
def stopped_part_way(
    producer: Producer, batch_id: str, file: Path, as_json: bool
) -> Iterator[None]:
    """Names the batch when the enqueue stops part way with jobs of this run in it (Ctrl-C,
    Redis gone, the file changed, a line past the limits): the id is printed only at the end,
    and a person needs it to cancel, or complete, what is in; they run. A re-run with the
    same batch id adds only what is missing; without it, a changed file is a new batch that
    would enqueue, and pay for, those lines again."""
    before = jobs_in(producer, batch_id)
    try:
        yield
    except (KeyboardInterrupt, SegqError):
        try:
            after: int | None = jobs_in(producer, batch_id)
        except StoreError:
            after = None
        if after == before:
            raise  # nothing of this run is in
        what = (f"{after - before:,} jobs of this run are in it" if after is not None
                else "jobs read before that may be in it")  # fmt: skip
        message = (f"batch {batch_id}: stopped before every line was enqueued; {what} and "
                   f"will run. To add the rest of {file}, run the same command with --batch-id "
                   f"{batch_id} (no line is enqueued twice); to stop them: segq cancel "
                   f"{batch_id}")  # fmt: skip
        people().print(message, markup=False)
        if as_json:
            print_json({"batch_id": batch_id, "error": message})
        raise


def jobs_in(producer: Producer, batch_id: str) -> int:
    """How many jobs the batch holds (0: no such batch)."""
    try:
        return producer.get_batch(batch_id).total
    except JobNotFound:
        return 0


def refuse_or_continue(check: FileCheck, skip_invalid: bool, as_json: bool, file: Path) -> None:
    """Stops (exit status 1) when nothing, or not everything, may be enqueued."""
    valid = check.lines - len(check.invalid)
    if check.lines == 0:
        message = f"{file}: no lines to enqueue (the file is empty or blank)"
    elif valid == 0:
        message = f"{file}: every line is invalid (listed above); nothing was enqueued"
    elif check.invalid and not skip_invalid:
        message = refusal(check)
    else:
        return
    if not as_json:
        raise InputError(message)
    problems = [p.to_json() for p in check.first_problems]
    print_json({"batch_id": None, "lines": check.lines, "invalid": len(check.invalid),
                "problems": problems, "error": message})  # fmt: skip
    raise click.exceptions.Exit(1)


def report(receipt: BatchReceipt, check: FileCheck, as_json: bool) -> None:
    if receipt.differing:
        people().print(
            f"warning: {receipt.differing:,} of the lines already there hold other parameters "
            f"than batch {receipt.batch_id} enqueued for them; those jobs were left as they "
            "were (a job's id is its batch id and line number: keep each line where it is, "
            "and enqueue changed lines as a new batch)", style="yellow", markup=False,
        )  # fmt: skip
    if as_json:
        print_json({"batch_id": receipt.batch_id, "lines": check.lines,
                    "created": receipt.created, "existing": receipt.existing,
                    "differing": receipt.differing, "invalid": len(check.invalid),
                    "problems": [p.to_json() for p in check.first_problems]})  # fmt: skip
        return
    skipped = f"; {len(check.invalid):,} invalid lines skipped" if check.invalid else ""
    people().print(f"batch {receipt.batch_id}: {receipt.created:,} jobs enqueued, "
                   f"{receipt.existing:,} already there{skipped}", markup=False)  # fmt: skip
    click.echo(receipt.batch_id)

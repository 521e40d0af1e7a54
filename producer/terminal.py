"""What segq's producer commands share: their options, the producer they open, and how they
speak: rich text on stderr for people, exact JSON (or a bare id) on stdout for machines, so
``ID=$(segq submit --prompt ...)`` and ``segq status ID --json | jq`` both work."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from producer.api import Producer
from producer.enqueueing import parse_assignments, validate_defaults
from shared.errors import JobNotFound
from shared.job_model import Job
from shared.job_store import BatchSummary, batch_of
from shared.output_files import URL_EXPIRY_NOTE
from shared.settings import get_settings

F = TypeVar("F", bound=Callable[..., Any])

URL_EXPIRY_ADVICE = (
    f"{URL_EXPIRY_NOTE}: download the images before then "
    "(segq wait ID --download DIR, or SEGQ_DOWNLOAD_OUTPUTS=true on the workers)."
)


def json_option(command: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print exact JSON on stdout instead of text."
    )(command)


def set_option(command: F) -> F:
    return click.option(
        "--set", "assignments", multiple=True, metavar="NAME=VALUE",
        help="A request parameter for every job (repeatable), e.g. --set steps=8.",
    )(command)  # fmt: skip


def priority_option(command: F) -> F:
    return click.option(
        "--priority", type=click.Choice(["bulk", "interactive"]), default="bulk",
        show_default=True, help="interactive jobs go ahead of queued bulk work.",
    )(command)  # fmt: skip


def notify_options(command: F) -> F:
    """--callback and --webhook-url: who is told when each job ends."""
    command = click.option(
        "--webhook-url", metavar="URL",
        help="Receives a signed POST with the job object when a job ends.",
    )(command)  # fmt: skip
    return click.option(
        "--callback", "callback_task", metavar="TASK",
        help="Celery task (by name) called with the job object when a job ends.",
    )(command)  # fmt: skip


def defaults_from(assignments: tuple[str, ...]) -> dict[str, Any]:
    """``--set`` values typed by the request model; InputError naming the bad one."""
    return validate_defaults(parse_assignments(assignments), where="--set")


def open_producer() -> Producer:
    return Producer(settings=get_settings())


def people() -> Console:
    """Where text for people goes: stderr, so stdout holds only what a script reads."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def report_console() -> Console:
    """Stdout for a command whose output is the report itself (status, the demo's summary).
    Lines are not wrapped at the console's width (80 when piped), so `segq status ID | grep`
    finds a phrase whole; tables still fit the width."""
    return Console(highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def find(producer: Producer, target_id: str) -> Job | BatchSummary:
    """A job (ids with a dot are batch jobs; single jobs' ids have none) or a batch."""
    if batch_of(target_id) is None:
        try:
            return producer.get_batch(target_id)
        except JobNotFound:
            pass
    try:
        return producer.get_job(target_id)
    except JobNotFound:
        raise JobNotFound(
            f"no job or batch {target_id} (mistyped, or past its retention)"
        ) from None

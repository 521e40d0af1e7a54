"""`segq status ID`: a job, or a batch (counts per state, throughput, ETA, failure reasons
grouped) with the fleet's pause, and the holds and lowered rates of 429s, if there are any."""

from __future__ import annotations

import sys
import time

import click
from rich.console import Console
from rich.text import Text

from producer.status_view import (
    job_view,
    pause_line,
    print_batch,
    rate_limit_lines,
    write_batch_status_json,
)
from producer.terminal import find, json_option, open_producer, print_json, report_console
from shared.fleet_state import FleetState
from shared.job_model import Job, JobState


@click.command()
@click.argument("target_id", metavar="ID")
@json_option
def status(target_id: str, as_json: bool) -> None:
    """Show a job or a batch. --json prints the job object, or for a batch
    {"batch_id", "counts", ..., "jobs": [job objects]}."""
    console = report_console()
    with open_producer() as producer:
        target = find(producer, target_id)
        if isinstance(target, Job):
            if as_json:
                print_json(target.to_json())
            else:
                console.print(job_view(target))
                if not target.is_terminal:
                    print_fleet_for(console, target, producer.fleet_state())
            return
        if not as_json:
            print_batch(console, producer, target)
            return
        write_batch_status_json(producer, target, sys.stdout)


def print_fleet_for(console: Console, job: Job, fleet: FleetState) -> None:
    """What keeps a job that has not ended from moving: a pause (for a queued job), holds and
    lowered rates."""
    if job.state is JobState.QUEUED and fleet.paused:
        console.print(Text(pause_line(fleet, time.time()), style="bold red"))
    for line in rate_limit_lines(fleet.rate_limits):
        console.print(Text(line, style="yellow"))

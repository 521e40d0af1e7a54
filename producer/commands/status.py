"""`segq status ID`: a job, or a batch (counts per state, throughput, ETA, failure reasons
grouped) with the fleet's pause if there is one."""

from __future__ import annotations

import sys
import time

import click
from rich.text import Text

from producer.status_view import job_view, pause_line, print_batch, write_batch_status_json
from producer.terminal import find, json_option, open_producer, print_json, report_console
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
                if target.state is JobState.QUEUED and (fleet := producer.fleet_state()).paused:
                    console.print(Text(pause_line(fleet, time.time()), style="bold red"))
            return
        if not as_json:
            print_batch(console, producer, target)
            return
        write_batch_status_json(producer, target, sys.stdout)

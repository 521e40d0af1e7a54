"""`segq status ID`: a job, or a batch (counts per state, throughput, ETA, failure reasons
grouped) with the fleet's pause if there is one."""

from __future__ import annotations

import sys

import click
from rich.console import Console

from producer.status_view import job_view, print_batch, write_batch_status_json
from producer.terminal import find, json_option, open_producer, print_json
from shared.job_model import Job


@click.command()
@click.argument("target_id", metavar="ID")
@json_option
def status(target_id: str, as_json: bool) -> None:
    """Show a job or a batch. --json prints the job object, or for a batch
    {"batch_id", "counts", ..., "jobs": [job objects]}."""
    # Lines are not wrapped at the console's width (80 when piped), so `segq status ID | grep`
    # finds a phrase whole; tables still fit the width
    console = Console(highlight=False, soft_wrap=True)
    with open_producer() as producer:
        target = find(producer, target_id)
        if isinstance(target, Job):
            if as_json:
                print_json(target.to_json())
            else:
                console.print(job_view(target))
            return
        if not as_json:
            print_batch(console, producer, target)
            return
        write_batch_status_json(producer, target, sys.stdout)

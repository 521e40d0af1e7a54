"""`segq cancel ID`: cancel a job, or every job of a batch not yet ended."""

from __future__ import annotations

import click

from producer.terminal import find, json_option, open_producer, people, print_json
from shared.job_model import Job


@click.command()
@click.argument("target_id", metavar="ID")
@json_option
def cancel(target_id: str, as_json: bool) -> None:
    """Cancel a job or a batch. Queued jobs never start; a job running upstream is not polled
    again and ends cancelled; jobs that already ended keep their outcome."""
    with open_producer() as producer:
        target = find(producer, target_id)
        if isinstance(target, Job):
            job = producer.cancel(target.job_id)
            if as_json:
                print_json(job.to_json())
            else:
                people().print(f"job {job.job_id}: {job.state.value}")
            return
        summary = producer.cancel_batch(target.batch_id)
        if as_json:
            print_json({"batch_id": summary.batch_id, "counts": summary.counts})
        else:
            people().print(f"batch {summary.batch_id}: {summary.counts['cancelled']:,} of "
                           f"{summary.total:,} jobs cancelled")  # fmt: skip

"""`segq retry ID`: run a batch's failed jobs again, or one failed job."""

from __future__ import annotations

import click

from producer.terminal import find, json_option, open_producer, people, print_json
from shared.job_model import Job, JobState


@click.command()
@click.argument("target_id", metavar="ID")
@json_option
def retry(target_id: str, as_json: bool) -> None:
    """Queue failed jobs again: every failed job of a batch, or the one job. A job that
    Segmind still knows resumes polling its request instead of paying for a new one."""
    with open_producer() as producer:
        target = find(producer, target_id)
        expired = 0  # failed jobs a batch still counts whose records are gone
        if isinstance(target, Job):
            retried = int(producer.retry(target.job_id))
            key, target_id = "job_id", target.job_id
        else:
            retried = producer.retry_batch(target.batch_id)
            key, target_id = "batch_id", target.batch_id
            expired = target.past_retention(retried, JobState.FAILED)
    if as_json:
        print_json({key: target_id, "retried": retried}
                   | ({"expired_records": expired} if key == "batch_id" else {}))  # fmt: skip
        return
    people().print(f"{target_id}: {retried:,} failed job{'s' * (retried != 1)} queued again")
    if expired:
        people().print(f"{expired:,} more failed, but their records are past their retention "
                       "(SEGQ_JOB_RETENTION_S): nothing of them is left to run again; the "
                       "batch's counts still include them")  # fmt: skip

"""`segq wait ID`: a live progress bar until every job of a batch (or one job) has ended.

With ``--download DIR`` each completed job's images are saved as it completes (names and rules:
``shared.output_files``); the exit status tells a script how it went.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click
from rich.console import Console

from producer.api import Producer
from producer.batch_watch import FleetNotice, WaitOutcome, target_of, watch
from producer.output_download import OutputDownloader, keyless_fetch
from producer.progress_view import ProgressView, describe, images
from producer.status_view import write_batch_status_json
from producer.terminal import find, open_producer, people, print_json
from shared.job_model import Job
from shared.job_store import BatchSummary
from shared.output_files import URL_EXPIRY_NOTE, SavedOutputs

FAILURES_SHOWN = 10

DOWNLOAD_HELP = (
    "Save each completed job's images into DIR as it completes, named "
    "<line>-<job_id>[-<n>].<ext> (a batch's jobs) or <job_id>[-<n>].<ext>; images already in "
    f"DIR are not fetched again. {URL_EXPIRY_NOTE}: download within the hour, or run workers "
    "with SEGQ_DOWNLOAD_OUTPUTS=1."
)


@click.command()
@click.argument("target_id", metavar="ID")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0),
    default=None,
    metavar="S",
    help="Give up after S seconds (exit status 2). Default: no limit.",
)
@click.option(
    "--download",
    "download_dir",
    metavar="DIR",
    default=None,
    type=click.Path(file_okay=False, writable=True, path_type=Path),
    help=DOWNLOAD_HELP,
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the final batch (as segq status --json) or job object as JSON.",
)
def wait(target_id: str, timeout_s: float | None, download_dir: Path | None, as_json: bool) -> None:
    """Wait until every job of batch ID (or job ID) has ended, showing progress.

    Exit status: 0 every job completed (and, with --download, every image was saved); 1 a job
    failed or was cancelled, or an image could not be saved; 2 the timeout ran out first.
    """
    console = people()
    with open_producer() as producer, contextlib.ExitStack() as stack:
        found = find(producer, target_id)
        downloader = None
        if download_dir is not None:
            fetch = stack.enter_context(keyless_fetch(producer.settings))
            downloader = stack.enter_context(OutputDownloader(download_dir, fetch))
            note = f"{URL_EXPIRY_NOTE}: download within the hour."
            console.print(
                f"Saving images into {download_dir} as they complete. {note}", markup=False
            )
        target = target_of(producer, found)
        view = ProgressView(target_id, console)
        outcome = watch(target, view, timeout_s=timeout_s, downloader=downloader,
                        on_tick=FleetNotice(producer, view))  # fmt: skip
        report_outcome(console, target_id, outcome, download_dir)
        if as_json:
            print_final_json(producer, found)
    click.get_current_context().exit(outcome.exit_status)


def print_final_json(producer: Producer, found: Job | BatchSummary) -> None:
    """The object ``segq status ID --json`` prints, as it is now."""
    if isinstance(found, Job):
        print_json(producer.get_job(found.job_id).to_json())
    else:
        write_batch_status_json(producer, producer.get_batch(found.batch_id), sys.stdout)


def report_outcome(
    console: Console, target_id: str, outcome: WaitOutcome, download_dir: Path | None
) -> None:
    """The few lines a person reads when the wait is over."""
    progress = outcome.progress
    console.print(f"{target_id}: {progress.done}/{progress.total} jobs ended: "
                  f"{describe(progress, None)}", markup=False)  # fmt: skip
    if outcome.timed_out and not progress.is_terminal:
        console.print(f"Timed out with {progress.total - progress.done} jobs not ended yet.")
    elif outcome.timed_out:  # every job ended, but not every image was fetched in time
        console.print("Timed out before every completed job's images were fetched: run the "
                      "wait again to save the rest.", markup=False)  # fmt: skip
    if outcome.saved is not None and download_dir is not None:
        report_saved(console, outcome.saved, download_dir)


def report_saved(console: Console, saved: SavedOutputs, download_dir: Path) -> None:
    console.print(f"{images(len(saved.files))} in {download_dir} ({len(saved.written)} new, "
                  f"{len(saved.present)} already there).", markup=False)  # fmt: skip
    for failure in saved.failures[:FAILURES_SHOWN]:
        console.print(f"  not saved: {failure}", markup=False)
    if len(saved.failures) > FAILURES_SHOWN:
        console.print(f"  ... and {len(saved.failures) - FAILURES_SHOWN} more not saved")

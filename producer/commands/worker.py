"""`segq worker`: a Celery worker with defaults chosen for segq's I/O-bound tasks."""

from __future__ import annotations

import click

from shared.errors import ConfigurationError
from shared.settings import get_settings

HELP_OPTIONS = frozenset({"--help", "-h"})


def worker_argv(concurrency: int, extra: tuple[str, ...]) -> list[str]:
    """Celery worker arguments: a threads pool (tasks wait on HTTP, never on the CPU), no gossip
    or mingle chatter; options given by the user come last and win. No ``--task-events``:
    Flower turns task events on while it runs (``worker_send_task_events``)."""
    return [
        "worker",
        "--pool=threads",
        f"--concurrency={concurrency}",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
        *extra,
    ]


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("celery_options", nargs=-1, type=click.UNPROCESSED)
def worker(celery_options: tuple[str, ...]) -> None:
    """Start a worker; any option of `celery worker` may follow (e.g. --concurrency=64)."""
    settings = get_settings()
    argv = worker_argv(settings.worker_concurrency, celery_options)
    if HELP_OPTIONS & set(celery_options):  # a host without the secret may read the options
        click.echo(f"segq worker runs: celery {' '.join(argv[:-len(celery_options)])}\n"
                   "Any option below may follow and wins. Celery's help:\n")  # fmt: skip
    elif settings.segmind_api_key is None:  # its first submit's 401 would pause the fleet
        from workers.celery_app import MISSING_API_KEY

        raise ConfigurationError(MISSING_API_KEY)
    from workers import app

    app.worker_main(argv)

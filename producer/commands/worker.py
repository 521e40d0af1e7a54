"""`segq worker`: a Celery worker with defaults chosen for segq's I/O-bound tasks."""

from __future__ import annotations

import click

from shared.errors import ConfigurationError
from shared.settings import get_settings

HELP_OPTIONS = frozenset({"--help", "-h"})
GREEN_POOLS = frozenset({"gevent", "eventlet"})
"""Pools whose library must patch the standard library before anything else is imported: Celery
does it in ``celery``'s own entry point, which ``segq worker`` does not go through."""
PREFORK_POOLS = frozenset({"prefork", "processes"})
"""The one pool that grows and shrinks (``--autoscale``), by either of Celery's names for it."""


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
    else:
        refuse_unworkable_options(celery_options)
        if settings.segmind_api_key is None:  # its first submit's 401 would pause the fleet
            from workers.celery_app import MISSING_API_KEY

            raise ConfigurationError(MISSING_API_KEY)
    from workers import app

    app.worker_main(argv)


def refuse_unworkable_options(extra: tuple[str, ...]) -> None:
    """Options Celery takes and then fails on at the first task, refused before the worker starts.

    ``--pool=gevent``/``eventlet`` without the patching received tasks and never ran them, and
    ``--autoscale`` on the threads pool (which cannot grow) ended the worker at its first busy
    moment, after it had said it was ready."""
    pool = option_value(extra, "--pool", "-P") or "threads"
    if pool in GREEN_POOLS:
        raise ConfigurationError(
            f"--pool={pool} needs the standard library patched before anything is imported, "
            "which segq worker cannot do (its tasks would be received and never run); keep "
            "the threads pool, the default, and raise --concurrency instead"
        )
    if option_value(extra, "--autoscale") is not None and pool not in PREFORK_POOLS:
        raise ConfigurationError(
            f"--autoscale needs --pool=prefork (the {pool} pool cannot grow or shrink); "
            "set --concurrency instead"
        )


def option_value(extra: tuple[str, ...], *names: str) -> str | None:
    """The last value given to an option in any of Click's spellings (``--pool=x``,
    ``--pool x``, ``-P x``, ``-Px``), or None."""
    value = None
    for i, arg in enumerate(extra):
        for name in names:
            if arg == name and i + 1 < len(extra):
                value = extra[i + 1]
            elif arg.startswith(f"{name}=") or (
                len(name) == 2 and arg.startswith(name) and arg != name
            ):
                value = arg[len(name) :].lstrip("=")
    return value

"""`segq health`: is the worker on this host alive (or ready)? Exit 0 if so, 1 if not.

Made for exec probes (Kubernetes, Docker HEALTHCHECK, a systemd watchdog script): it reads the
worker's health file (``shared.worker_health``), makes no network call, and says in one line
what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import click

from shared.settings import get_settings
from shared.worker_health import DEFAULT_MAX_AGE_S, check

MAX_AGE_LIMIT_S = 86400.0
"""A day: a probe templated with ``inf`` (or 1e400) would call any dead worker fresh."""


@click.command()
@click.option("--ready", is_flag=True, help="Also require a live broker and job store connection.")
@click.option(
    "--max-age-s",
    type=click.FloatRange(min=1, max=MAX_AGE_LIMIT_S),
    default=DEFAULT_MAX_AGE_S,
    show_default=True,
    help="Oldest stamp that still counts as fresh.",
)
@click.option(
    "--file",
    "health_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The worker's health file [default: SEGQ_HEALTH_FILE].",
)
def health(ready: bool, max_age_s: float, health_file: Path | None) -> None:
    """Check the local worker: alive (default) or ready to take tasks (--ready)."""
    path = health_file or get_settings().health_file
    problems = check(path, ready=ready, max_age_s=max_age_s)
    what = "ready" if ready else "alive"
    if problems:
        click.echo(f"worker not {what}: " + "; ".join(problems), err=True)
        raise SystemExit(1)
    click.echo(f"worker {what}")

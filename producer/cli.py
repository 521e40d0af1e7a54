"""The `segq` command: one click group; each subcommand lives in `producer/commands/`."""

from __future__ import annotations

import importlib
import pkgutil

import click

import producer.commands
from shared.errors import SegqError

COMMAND_MODULES = sorted(m.name for m in pkgutil.iter_modules(producer.commands.__path__))
"""Modules of `producer.commands`; each exposes a click command of the same name, so a new
command is a new module and nothing else changes."""


class SegqGroup(click.Group):
    """Turns segq's own errors into one clear line and exit status 2 instead of a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SegqError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(cls=SegqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segq")
def main() -> None:
    """segq: image generation jobs on Segmind's SD 3.5 Turbo, queued on Redis, run by Celery."""


for _name in COMMAND_MODULES:
    _module = importlib.import_module(f"producer.commands.{_name}")
    main.add_command(getattr(_module, _name))

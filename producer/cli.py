"""The `segq` command: one click group; each subcommand lives in `producer/commands/`."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys

import click

import producer.commands
from shared.errors import SegqError

COMMAND_MODULES = sorted(m.name for m in pkgutil.iter_modules(producer.commands.__path__))
"""Modules of `producer.commands`; each exposes a click command of the same name, so a new
command is a new module and nothing else changes."""


INTERRUPTED_EXIT_STATUS = 130
"""Ctrl-C: 128 + SIGINT, what a shell reports for a command it interrupted."""
NOT_UTF8 = "surrogates not allowed"
"""Why a string cannot be encoded when it holds bytes that were not UTF-8 on the command line
(Python keeps them as lone surrogates)."""
BROKEN_PIPE_EXIT_STATUS = 141
"""128 + SIGPIPE, quietly, as a shell's own tools end when the reader of their output has gone."""


class LazyCommands(dict[str, click.Command]):
    """Command name -> click command, its module imported on first use: ``segq status`` does
    not pay for the sandbox's or Flower's imports."""

    def __missing__(self, name: str) -> click.Command:
        if name not in COMMAND_MODULES:
            raise KeyError(name)
        self[name] = getattr(importlib.import_module(f"producer.commands.{name}"), name)
        return self[name]

    def __contains__(self, name: object) -> bool:
        return name in COMMAND_MODULES or super().__contains__(name)

    def get(  # type: ignore[override]
        self, name: str, default: click.Command | None = None
    ) -> click.Command | None:
        try:
            return self[name]
        except KeyError:
            return default


class SegqGroup(click.Group):
    """Finds commands by module (``LazyCommands``) and turns segq's own errors, the operating
    system's (a port in use, a directory that is a file, a full disk) and arguments that are
    not UTF-8, into one clear line and exit status 1 instead of a traceback."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.commands = LazyCommands()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return COMMAND_MODULES

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except SegqError as exc:
            raise click.ClickException(str(exc)) from exc
        except UnicodeEncodeError as exc:
            if exc.reason != NOT_UTF8:
                raise
            raise click.ClickException(
                f"{os.fsencode(exc.object)!r} is not UTF-8 text: give arguments and file "
                "names in UTF-8 (they are stored in Redis, and shown as text)"
            ) from None
        except BrokenPipeError:  # `segq export ... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # for exit's flush
            raise click.exceptions.Exit(BROKEN_PIPE_EXIT_STATUS) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise click.ClickException(f"{exc.strerror or exc}{where}") from exc
        except KeyboardInterrupt:  # 130 as shells report it; click's 1 reads as a failed job
            click.echo("\nInterrupted.", err=True)
            raise click.exceptions.Exit(INTERRUPTED_EXIT_STATUS) from None


@click.group(cls=SegqGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="segq")
def main() -> None:
    """segq: image generation jobs on Segmind's SD 3.5 Turbo, queued on Redis, run by Celery."""

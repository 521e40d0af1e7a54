"""`segq sandbox`: the local Segmind v2 server, in the foreground.

Every ``SandboxConfig`` field is an option (``--gpus 64``, ``--submit-rpm 60``,
``--api-keys KEY --api-keys KEY2``, ``--outage/--no-outage``), made from the model itself so
the two cannot drift; options not given keep the model's defaults. The same knobs can be
changed while it runs: ``POST /_sandbox/faults`` with a JSON object.
"""

from __future__ import annotations

import logging
import types
import typing
from typing import Any

import click
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from shared.sandbox.config import SandboxConfig
from shared.sandbox.runner import DEFAULT_HOST, serve_forever

DEFAULT_PORT = 8787
CLICK_TYPES: dict[type, click.ParamType] = {int: click.INT, float: click.FLOAT, str: click.STRING}


def _value_type(annotation: Any) -> tuple[type, bool]:
    """The scalar type behind ``X``, ``X | None`` or ``list[X]``, and whether it is a list."""
    if typing.get_origin(annotation) is list:
        return typing.get_args(annotation)[0], True
    if isinstance(annotation, types.UnionType):
        return next(arg for arg in typing.get_args(annotation) if arg is not type(None)), False
    return annotation, False


def config_option(name: str, field: FieldInfo) -> click.Option:
    """One command-line option for one ``SandboxConfig`` field; None when not given."""
    flag = name.replace("_", "-")
    value_type, many = _value_type(field.annotation)
    shown = None if field.default_factory else field.default
    help_text = field.description if shown is None else f"{field.description} [default: {shown}]"
    if value_type is bool:
        return click.Option([f"--{flag}/--no-{flag}", name], default=None, help=help_text)
    return click.Option(
        [f"--{flag}", name],
        type=CLICK_TYPES[value_type],
        multiple=many,
        default=None,
        help=help_text,
    )


def config_from_options(options: dict[str, Any]) -> SandboxConfig:
    """The configuration the given options describe (unset ones keep their defaults)."""
    given = {name: value for name, value in options.items() if value not in (None, ())}
    try:
        return SandboxConfig.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(
            f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']}" for err in exc.errors()
        )
        raise click.UsageError(problems) from None


def _run(host: str, port: int, access_log: bool, **options: Any) -> None:
    """Serve a local Segmind v2 API (submit, status, result, media) until Ctrl-C.

    Control API: GET /_sandbox/truth, GET|POST /_sandbox/faults, POST /_sandbox/reset.
    """
    config = config_from_options(options)
    if access_log:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    serve_forever(
        config,
        host,
        port,
        access_log=access_log,
        announce=lambda url: click.echo(f"segq sandbox listening on {url}", nl=True),
    )


sandbox = click.Command(
    "sandbox",
    callback=_run,
    help=_run.__doc__,
    params=[
        click.Option(["--host"], default=DEFAULT_HOST, show_default=True,
                     help="Address to bind; loopback unless you mean to share it."),
        click.Option(["--port"], type=click.IntRange(0, 65535), default=DEFAULT_PORT,
                     show_default=True, help="Port to bind (0: any free port, printed)."),
        click.Option(["--access-log/--no-access-log"], default=False,
                     help="Log every request (slower)."),
        *(config_option(name, field) for name, field in SandboxConfig.model_fields.items()),
    ],
)  # fmt: skip

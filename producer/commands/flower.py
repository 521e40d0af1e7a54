"""`segq flower`: Flower on segq's Celery app, on loopback and behind authentication.

It replaces itself (``exec``) with ``python -m celery -A workers flower``, so Flower keeps this
process id: SIGTERM from systemd, Kubernetes or ``docker stop`` reaches Flower, which saves its
``--persistent`` state and exits. What Flower 2.2 does by default and segq changes:

- Flower listens on every interface; segq passes ``--address=127.0.0.1`` unless given one.
- Flower runs without authentication; segq refuses to start unless basic auth
  (``SEGQ_FLOWER_BASIC_AUTH=user:pass``, handed to Flower in its ``FLOWER_BASIC_AUTH``
  environment variable, never on the command line that ``ps`` shows) or Flower's OAuth
  options (``--auth=REGEX --auth_provider=...``) are configured, or ``--no-auth`` is given.
- Flower makes a random cookie secret per process (sessions end at every restart and differ
  between replicas); segq derives a stable one from the auth secret, in ``FLOWER_COOKIE_SECRET``.
- Flower's option parser (tornado) refuses ``--port 5555``; segq accepts it and passes
  ``--port=5555``.

Flower's ``/metrics`` and ``/healthcheck`` answer without authentication whatever is set:
expose Flower only to an internal network or through a proxy (README, "Flower in production").
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
from collections.abc import Mapping, Sequence

import click

from shared.settings import Settings, get_settings

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5555
BOOL_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "1", "0", "t", "f"})
COOKIE_SECRET_LABEL = b"segq flower cookie secret"
FLOWER_AUTH_ENV = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH")
"""Flower's own environment variables that configure authentication."""

NO_AUTH_CONFIGURED = (
    "Flower would start without authentication. Set SEGQ_FLOWER_BASIC_AUTH=user:pass, or pass "
    "Flower's OAuth options (--auth=REGEX --auth_provider=... with FLOWER_OAUTH2_KEY, "
    "FLOWER_OAUTH2_SECRET, FLOWER_OAUTH2_REDIRECT_URI), or give --no-auth on purpose."
)


def flower_option_kinds() -> dict[str, bool]:
    """Flower's option names (with underscores) -> whether the option is a flag (bool)."""
    import flower.options  # noqa: F401  (defines Flower's options in tornado's registry)
    from tornado.options import options

    return {name.replace("-", "_"): isinstance(value, bool) for name, value in options.items()}


def normalize_options(args: Sequence[str], kinds: Mapping[str, bool]) -> list[str]:
    """Flower's options in the ``--name=value`` spelling tornado requires.

    ``--port 5555`` becomes ``--port=5555``; a flag followed by a truth word (``--persistent
    false``) takes it as its value, since tornado would drop the word and turn the flag on.
    Anything that is not a Flower option is passed on unchanged for Flower to judge.
    """
    normalized: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        name, has_value, _ = arg.partition("=")
        key = name.lstrip("-").replace("-", "_")
        following = args[index + 1] if index + 1 < len(args) else None
        index += 1
        if not arg.startswith("--") or has_value or key not in kinds:
            normalized.append(arg)
        elif not kinds[key]:
            if following is None:
                raise click.UsageError(f"Flower option {name} requires a value")
            normalized.append(f"{name}={following}")
            index += 1
        elif following is not None and following.lower() in BOOL_WORDS:
            normalized.append(f"{name}={following}")
            index += 1
        else:
            normalized.append(arg)
    return normalized


def option_value(args: Sequence[str], name: str) -> str | None:
    """The last value of ``--name=value`` among normalized options (tornado: last one wins)."""
    value = None
    for arg in args:
        given, has_value, rest = arg.partition("=")
        if has_value and given.lstrip("-").replace("-", "_") == name:
            value = rest
    return value


def check_basic_auth(credentials: str) -> None:
    """``user:pass``, or several joined by commas (Flower splits its variable on commas).
    ASCII only: Flower compares credentials with ``hmac.compare_digest``, which raises on
    other text, and every request, right or wrong, was answered 500."""
    for pair in credentials.split(","):
        user, colon, password = pair.partition(":")
        if not (user and colon and password):
            raise click.UsageError(
                "SEGQ_FLOWER_BASIC_AUTH must be user:password (several: user1:pw1,user2:pw2; "
                "no commas inside a password)"
            )
    if not credentials.isascii():
        raise click.UsageError(
            "SEGQ_FLOWER_BASIC_AUTH must be ASCII: Flower cannot check other characters"
        )


def check_port(options: Sequence[str]) -> None:
    """Flower (tornado) takes ``--port=70000`` modulo 65536 and shows a traceback for ``abc``."""
    port = option_value(options, "port")
    if port is not None and not (port.isascii() and port.isdigit() and int(port) <= 65535):
        raise click.UsageError(f"--port must be a number from 0 to 65535, not {port!r}")


def flower_environment(
    settings: Settings, options: Sequence[str], environ: Mapping[str, str], *, no_auth: bool
) -> dict[str, str]:
    """The environment Flower runs with: ours, less the API key (Flower never calls Segmind,
    and a unit that loads the workers' env file would hand it over), plus its basic auth and
    cookie secret."""
    if option_value(options, "basic_auth") is not None:
        raise click.UsageError(
            "--basic_auth would show the password to anyone running ps on this host; "
            "set SEGQ_FLOWER_BASIC_AUTH=user:pass instead"
        )
    env = {name: value for name, value in environ.items() if name != "SEGMIND_API_KEY"}
    basic_auth = settings.flower_basic_auth.get_secret_value() if settings.flower_basic_auth else ""
    if basic_auth:
        check_basic_auth(basic_auth)
        env["FLOWER_BASIC_AUTH"] = basic_auth
    oauth = option_value(options, "auth") or env.get("FLOWER_AUTH")
    configured = bool(basic_auth or oauth or env.get("FLOWER_BASIC_AUTH"))
    if no_auth and configured:
        raise click.UsageError("--no-auth was given but authentication is configured; choose one")
    if not no_auth and not configured:
        raise click.UsageError(NO_AUTH_CONFIGURED)
    if option_value(options, "cookie_secret") is None and "FLOWER_COOKIE_SECRET" not in env:
        env["FLOWER_COOKIE_SECRET"] = cookie_secret(env, options)
    return env


def cookie_secret(env: Mapping[str, str], options: Sequence[str]) -> str:
    """A secret that stays the same across restarts and replicas while the auth secret does
    (so logins survive a restart), derived one-way from it; random when there is none."""
    material = (
        env.get("FLOWER_BASIC_AUTH")
        or option_value(options, "oauth2_secret")
        or env.get("FLOWER_OAUTH2_SECRET")
    )
    if not material:
        return secrets.token_urlsafe(48)
    return hmac.new(COOKIE_SECRET_LABEL, material.encode(), hashlib.sha256).hexdigest()


def flower_argv(options: Sequence[str]) -> list[str]:
    """``python -m celery -A workers flower`` with the user's options, and segq's address and
    port where the user gave none."""
    defaults = {"address": DEFAULT_ADDRESS, "port": str(DEFAULT_PORT)}
    chosen = [f"--{name}={value}" for name, value in defaults.items() if not _given(options, name)]
    return [sys.executable, "-m", "celery", "-A", "workers", "flower", *chosen, *options]


def _given(options: Sequence[str], name: str) -> bool:
    return any(arg.lstrip("-").partition("=")[0].replace("-", "_") == name for arg in options)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--no-auth", is_flag=True, help="Run without authentication (only on a trusted host)."
)
@click.argument("flower_options", nargs=-1, type=click.UNPROCESSED)
def flower(no_auth: bool, flower_options: tuple[str, ...]) -> None:
    """Start Flower on segq's workers, on 127.0.0.1:5555 with authentication.

    Any Flower option may follow, as --name=value or --name value: --address=0.0.0.0,
    --port=5555, --persistent --db=/var/lib/segq/flower.db, --url_prefix=flower --xheaders,
    --auth=.*@example\\.com --auth_provider=flower.views.auth.GithubLoginHandler, --read_only.
    Basic auth comes from SEGQ_FLOWER_BASIC_AUTH=user:pass.
    """
    options = normalize_options(flower_options, flower_option_kinds())
    check_port(options)
    env = flower_environment(get_settings(), options, os.environ, no_auth=no_auth)
    argv = flower_argv(options)
    os.execve(argv[0], argv, env)

"""segq's one typed settings object, read once per process from the environment.

Three names are fixed by other tools: ``SEGMIND_API_KEY``, ``SEGMIND_BASE_URL`` and
``SEGQ_REDIS_URL``; every other setting is ``SEGQ_<FIELD NAME IN CAPITALS>``. An environment
variable that starts with ``SEGQ_`` but names no setting is an error (a misspelt setting must
not be silently ignored). Nothing else in segq reads ``os.environ``.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import os
from pathlib import Path
from typing import Literal
from urllib.parse import SplitResult, urlsplit, urlunsplit

from kombu.transport import TRANSPORT_ALIASES
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigurationError

ENV_PREFIX = "SEGQ_"


class Settings(BaseSettings):
    """Every knob of segq: a default, a type, a range and a line of documentation each."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    segmind_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SEGMIND_API_KEY", "segmind_api_key"),
        description="Segmind API key; sent only as x-api-key to segmind_base_url's origin.",
    )
    segmind_base_url: str = Field(
        "https://api.segmind.com",
        validation_alias=AliasChoices("SEGMIND_BASE_URL", "segmind_base_url"),
        description="Origin of the v2 API (the sandbox's URL in tests and the demo).",
    )
    redis_url: str = Field(
        "redis://localhost:6379/0", description="The job store; also the broker by default."
    )
    broker_url: str | None = Field(
        None, description="Celery broker (redis://... or amqp://...); redis_url when unset."
    )
    results_dir: Path = Field(
        Path("segq-results"),
        description="Where base64 outputs (and downloaded outputs) are written as files.",
    )
    download_outputs: bool = Field(
        False,
        description="Workers download every output URL into results_dir on completion, "
        "starting none later than http_timeout_s after the first.",
    )
    submit_rate_limit: float | None = Field(
        None, gt=0, description="Account's submits per minute; unset: learned from 429s."
    )
    poll_rate_limit: float | None = Field(
        None, gt=0, description="Status/result calls per minute; unset: learned from 429s."
    )
    rate_safety: float = Field(
        0.98, gt=0.5, le=1.0, description="Fraction of a known rate the fleet actually uses."
    )
    rate_limiter: Literal["fleet", "celery"] = Field(
        "fleet",
        description="fleet: one budget in Redis; celery: Celery's per-process rate_limit "
        "(kept only as the benchmark's comparison).",
    )
    account_pause_seconds: float = Field(
        60.0, gt=0, le=86400, description="How often a paused fleet probes the account."
    )
    outage_failures: int = Field(
        8, ge=2, le=10_000,
        description="Transient failures in a row, fleet-wide, that pause submits as an outage.",
    )  # fmt: skip
    outage_probe_seconds: float = Field(
        10.0, gt=0, le=3600, description="How often a fleet paused by an outage probes Segmind."
    )
    max_in_flight: int | None = Field(
        None, ge=1, description="Fleet-wide cap on jobs submitted upstream and not yet finished."
    )
    broker_window: int = Field(
        500,
        ge=1,
        le=100_000,
        description="Most submit tasks, and most poll tasks, waiting in the broker at once.",
    )
    lease_s: float = Field(
        60.0,
        ge=5,
        le=600,
        description="A published task that makes no progress for this long is published again "
        "(bounds recovery after a worker is SIGKILLed).",
    )
    visibility_timeout_s: int = Field(
        900, ge=60, le=43200, description="kombu's Redis visibility timeout (redelivery)."
    )
    max_attempts: int = Field(
        6, ge=1, le=100,
        description="Transient upstream failures a job survives before Segmind accepts it.",
    )  # fmt: skip
    upstream_retention_s: int = Field(
        3600, ge=60, le=7 * 86400,
        description="How long Segmind keeps a result; a job it accepted is polled through "
        "transient failures (an outage) for this long.",
    )  # fmt: skip
    http_timeout_s: float = Field(
        30.0, gt=0, le=600,
        description="One upstream HTTP call in all: each network step, and the whole answer.",
    )  # fmt: skip
    poll_max_interval_s: float = Field(
        15.0, ge=0.1, le=300, description="Longest gap between two polls of one job."
    )
    job_retention_s: int = Field(
        7 * 86400, ge=60,
        description="How long job records and batches stay after finishing (a job followed "
        "upstream is kept until then; a queued one only this long after it was enqueued).",
    )  # fmt: skip
    max_batch_lines: int = Field(
        2_000_000, ge=1, description="Largest batch (lines) segq batch accepts."
    )
    max_file_bytes: int = Field(
        2 * 1024**3, ge=1, description="Largest batch file segq batch accepts."
    )
    max_line_bytes: int = Field(
        64 * 1024,
        ge=1024,
        le=16 * 1024**2,
        description="Longest line of a batch file, in bytes (a line holds at most two 4,000-"
        "character prompts and a few numbers).",
    )
    worker_concurrency: int = Field(
        32, ge=1, le=1024, description="Threads per worker process (segq worker's default)."
    )
    dispatch_idle_s: float = Field(
        0.2, ge=0.01, le=10, description="How often an idle dispatcher looks for work."
    )
    webhook_secret: SecretStr | None = Field(
        None, description="HMAC-SHA256 key that signs webhook deliveries."
    )
    webhook_max_attempts: int = Field(5, ge=1, le=50, description="Deliveries per webhook.")
    flower_basic_auth: SecretStr | None = Field(
        None, description="user:pass for segq flower; required unless --no-auth is given."
    )
    log_json: bool = Field(False, description="Log one JSON object per line.")
    log_prompts: bool = Field(False, description="Include prompts in job log lines.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of segq's loggers."
    )
    health_file: Path = Field(
        Path("/tmp/segq-worker-health.json"),
        description="Where a worker keeps its health report for `segq health` (one per worker).",
    )
    redis_sentinel_master: str | None = Field(
        None,
        min_length=1,
        description="Sentinel's name for the Redis master; needed when a URL is sentinel://.",
    )
    redis_sentinel_password: SecretStr | None = Field(
        None, description="Password of the Sentinels themselves (not of the Redis master)."
    )

    @field_validator("segmind_api_key", mode="before")
    @classmethod
    def _api_key_is_one_token(cls, key: object) -> object:
        """Spaces around the key (a file's last newline) are dropped; anything else that is
        not a visible ASCII character is refused. httpx would refuse the header on every call,
        and its error, which quotes the value escaped, would get past the key's redaction into
        logs and the fleet's pause reason. The message never shows the key."""
        if isinstance(key, SecretStr):
            key = key.get_secret_value()
        if not isinstance(key, str):
            return key
        key = key.strip()
        if not all("!" <= char <= "~" for char in key):
            raise ValueError("holds a space or a character that is not visible ASCII; "
                             "check how the key was copied")  # fmt: skip
        return key or None

    @field_validator("job_retention_s")
    @classmethod
    def _retention_outlasts_a_lease(cls, retention_s: int, info: ValidationInfo) -> int:
        """A job handed to a worker is kept no longer than the retention from then (a queued
        one's record counts from its enqueue): with a lease at least as long, the record of a
        job whose worker died is always gone when its lease runs out, so the lease could never
        publish it again (nor a lost notice of an ended job), and the job is lost.
        Shorter than Segmind's retention is only risky: workers warn of it as they start."""
        lease_s = info.data.get("lease_s")
        if lease_s is not None and retention_s <= lease_s:
            raise ValueError(f"{retention_s} s is not longer than SEGQ_LEASE_S={lease_s:g}: a "
                             "job whose worker died would be gone before its lease could "
                             "publish it again")  # fmt: skip
        return retention_s

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_one(cls, url: str) -> str:
        """Caught here, a mistyped URL is one line naming the variable; found by redis-py, it
        was a traceback from whichever command touched Redis first."""
        _checked_url(url, REDIS_SCHEMES)
        return url

    @field_validator("broker_url")
    @classmethod
    def _broker_url_is_one(cls, url: str | None) -> str | None:
        """Each URL of a failover list (``;``), with a scheme kombu has a transport for."""
        if url is not None:
            for part in url.split(";"):
                _checked_url(part.strip(), tuple(TRANSPORT_ALIASES))
        return url

    @field_validator("segmind_base_url")
    @classmethod
    def _base_url_is_an_origin(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        return url.rstrip("/")

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    def api_key_fingerprint(self) -> str:
        """A short hash that names the account's budget in Redis without revealing the key."""
        key = self.segmind_api_key.get_secret_value() if self.segmind_api_key else ""
        return hashlib.sha256(key.encode()).hexdigest()[:16]


REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")


def _checked_url(url: str, schemes: tuple[str, ...]) -> None:
    """Errors show the URL with its password masked: they reach the journal and pod logs."""
    parts = urlsplit(url)
    shown = repr(_masked(url, parts))
    if not parts.scheme or "://" not in url:
        raise ValueError(f"{shown} is not a URL (scheme://host:port/...)")
    if parts.scheme.partition("+")[0] not in schemes:  # kombu: sqla+postgresql://
        raise ValueError(f"{shown}: the scheme must be one of {', '.join(sorted(schemes))}")
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"{shown}: the port is not a number from 0 to 65535") from None


def _masked(url: str, parts: SplitResult) -> str:
    userinfo, at, host = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    if not (at and colon and password):
        return url
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def setting_env_names() -> dict[str, str]:
    """Environment variable name -> field name, for every setting."""
    names = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names[str(alias.choices[0])] = field_name
        else:
            names[ENV_PREFIX + field_name.upper()] = field_name
    return names


def _refuse_unknown_env(environ: dict[str, str]) -> None:
    """pydantic-settings reads names in any case (``segq_lease_s`` too), so misspellings are
    looked for in any case as well."""
    known = setting_env_names()
    for name in environ:
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            close = difflib.get_close_matches(name.upper(), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigurationError(f"{name} is not a segq setting{hint}")


def load_settings(environ: dict[str, str] | None = None, **overrides: object) -> Settings:
    """Settings from ``environ`` (default: the process environment) and explicit overrides."""
    env = dict(os.environ if environ is None else environ)
    _refuse_unknown_env(env)
    known = setting_env_names()
    values: dict[str, object] = {known[k]: v for k, v in env.items() if k in known}
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = [
            f"{_env_name(err['loc'])}: {err['msg']}" for err in exc.errors(include_url=False)
        ]
        raise ConfigurationError("invalid settings:\n" + "\n".join(problems)) from None


def _env_name(loc: tuple[object, ...]) -> str:
    by_field = {field: env for env, field in setting_env_names().items()}
    return by_field.get(str(loc[0]), str(loc[0])) if loc else "settings"


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment once."""
    return load_settings()

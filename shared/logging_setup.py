"""How every segq process logs: plain or JSON lines, the API key never in them.

``configure_logging(settings)`` is called once per process (workers call it from Celery's
``setup_logging`` signal, so Celery does not install its own handlers). It gives the root logger
one stream handler, plain text or one JSON object per line (``SEGQ_LOG_JSON``), and installs
``RedactSecrets`` on every root handler: whatever a library or a careless f-string puts in a
record, the API key is replaced by ``[REDACTED]`` before the line is written.

``log_job_transition`` writes the one line per job state change that operators grep for:
job id, Segmind's request id, the new state and timing. Prompts are personal data; they are
included only when ``SEGQ_LOG_PROMPTS`` is on.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from shared.settings import Settings

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4
"""Shorter "secrets" are not redacted: replacing every "ab" in every line protects nothing."""
PROMPT_LOG_CHARS = 200
"""A logged prompt is cut here, so one job stays one readable line."""

JOB_LOGGER = "segq.jobs"
JOB_FIELDS = ("job_id", "request_id", "state", "elapsed_s", "detail", "prompt")
"""Fields of a job transition, attached to the record (``extra``) for JSON logs."""

CHATTY_LOGGERS = ("httpx", "httpcore")
"""Libraries that log every HTTP request (httpx at INFO, httpcore each step at DEBUG): at a
thousand calls a minute they would drown the job lines, and segq counts answers in
``segq metrics`` instead. They log at WARNING and above only, whatever ``SEGQ_LOG_LEVEL``."""

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(processName)s] %(message)s"

_STANDARD_RECORD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)
EXTRA_DEPTH = 4
"""How deep the redaction looks into an extra's dicts, lists and tuples."""
_log_prompts = {"enabled": False}
"""Set by configure_logging: whether log_job_transition may write prompts."""


class RedactSecrets(logging.Filter):
    """Replaces each secret in a record's message, arguments, extras and traceback.

    Installed on handlers (not loggers) so records propagated from any library's logger pass
    through it. It never drops a record.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= MIN_SECRET_LENGTH]

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            message = f"{record.msg} (arguments did not fit: {record.args!r})"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_RECORD_ATTRS:
                setattr(record, name, self._redacted(value, EXTRA_DEPTH))
        return True

    def _redacted(self, value: object, depth: int) -> object:
        """Strings redacted, also inside the dicts, lists and tuples of an extra (Celery logs
        each task's outcome with ``extra={"data": {"exc": ..., "args": ...}}``, which JSON
        lines write out whole)."""
        if isinstance(value, str):
            return self.redact(value)
        if depth == 0:
            return value
        if isinstance(value, dict):
            return {key: self._redacted(item, depth - 1) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._redacted(item, depth - 1) for item in value)
        return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD_RECORD_ATTRS and not name.startswith("_"):
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class _SegqHandler(logging.StreamHandler):
    """The handler configure_logging installs; marked so a second call replaces it."""


def configure_logging(settings: Settings, stream: Any = None) -> logging.Handler:
    """Sets up the root logger for this process from ``settings``; safe to call again.

    Returns the handler it installed (tests read what it writes through ``stream``).
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _SegqHandler)]:
        root.removeHandler(old)
    handler = _SegqHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_json else logging.Formatter(PLAIN_FORMAT))
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    install_redaction(root.handlers, _secrets_of(settings))
    _log_prompts["enabled"] = settings.log_prompts
    return handler


def install_redaction(handlers: Iterable[logging.Handler], secrets: list[str]) -> None:
    """Puts one ``RedactSecrets`` on each handler, replacing any installed before."""
    for handler in handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactSecrets)]:
            handler.removeFilter(old)
        handler.addFilter(RedactSecrets(secrets))


def _secrets_of(settings: Settings) -> list[str]:
    """The API key first; then the other secrets segq holds (webhook key, Flower password,
    Sentinel password, passwords inside the Redis and broker URLs)."""
    fields = (settings.segmind_api_key, settings.webhook_secret, settings.flower_basic_auth,
              settings.redis_sentinel_password)  # fmt: skip
    secrets = [field.get_secret_value() for field in fields if field is not None]
    if settings.flower_basic_auth is not None:  # user1:pw1,user2:pw2
        pairs = settings.flower_basic_auth.get_secret_value().split(",")
        secrets += [pair.partition(":")[2] for pair in pairs]
    for url in (settings.redis_url, settings.effective_broker_url):
        secrets += [_password_in(part) for part in url.split(";") if _password_in(part)]
    return secrets


def _password_in(url: str) -> str:
    """The URL's password: in its userinfo, or (redis-py takes both) a ``password=`` query."""
    try:
        parts = urlsplit(url.strip())
        return unquote(parts.password or "") or dict(parse_qsl(parts.query)).get("password", "")
    except ValueError:
        return ""


def log_job_transition(
    logger: logging.Logger,
    *,
    job_id: str,
    request_id: str | None,
    state: str,
    elapsed_s: float | None = None,
    detail: str | None = None,
    prompt: str | None = None,
) -> None:
    """Logs that a job changed state, as one line with job id, request id, state and timing.

    ``prompt`` is logged only when ``SEGQ_LOG_PROMPTS`` is on (cut to PROMPT_LOG_CHARS); a
    failed job is logged at WARNING, every other transition at INFO.
    """
    state = str(state)
    fields: dict[str, Any] = {"job_id": job_id, "request_id": request_id, "state": state}
    parts = [f"job {job_id} {state}", f"request_id={request_id or '-'}"]
    if elapsed_s is not None:
        fields["elapsed_s"] = round(elapsed_s, 3)
        parts.append(f"elapsed_s={elapsed_s:.2f}")
    if detail is not None:
        fields["detail"] = detail
        parts.append(f"detail={json.dumps(detail, ensure_ascii=False)}")
    if prompt is not None and _log_prompts["enabled"]:
        fields["prompt"] = prompt[:PROMPT_LOG_CHARS]
        parts.append(f"prompt={json.dumps(fields['prompt'], ensure_ascii=False)}")
    level = logging.WARNING if state == "failed" else logging.INFO
    logger.log(level, " ".join(parts), extra=fields)

"""What an enqueue means, for the sync and the asyncio producer alike.

Both flavours only do I/O; everything they decide is decided here, once: a request validated
into the parameters a job record stores (only what differs from its batch's defaults), job ids
from idempotency keys, batch ids checked, callbacks and webhooks turned into ``JobOptions``, a
stream of requests cut into chunks of ``NewJob`` with line numbers, and pydantic's errors turned
into lines that name the line and the field.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import ValidationError

from shared.errors import InputError, JobNotCompleted, WaitTimeout
from shared.job_model import Job, JobState
from shared.job_store import Added, BatchSummary, JobOptions, NewJob, batch_job_id
from shared.request_model import GenerationRequest, parameter_names

ENQUEUE_CHUNK = 1000
"""Jobs per pipelined round trip when a stream is enqueued: one ``add_jobs`` call each."""
BATCH_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Batch ids name keys and a pub/sub pattern: no dot (job ids are ``{batch}.{line}``), no glob."""
PRIORITIES = ("bulk", "interactive")
MODEL_DEFAULTS = {name: field.default for name, field in GenerationRequest.model_fields.items()}
INPUT_SHOWN_CHARS = 40

MAX_LINE_NUMBER = 2**24
"""A batch's reads walk its ids from line 1 to its highest line (``iter_batch_jobs``, export,
wait): one ``BatchLine(10**9)`` made a one-job batch take hours to read. Also the highest line
``add_jobs.lua`` marks in the batch's lines bitmap (``MAX_MARKED_LINE``)."""

RequestLike = GenerationRequest | Mapping[str, Any]
"""A request: the model, or a mapping of its parameters (validated here)."""


@dataclass(frozen=True)
class BatchLine:
    """One input line of a batch: its number in the file and its parameters (not yet valid)."""

    line: int
    params: RequestLike


@dataclass(frozen=True)
class BatchReceipt:
    """What enqueueing a batch did: ``created`` new jobs, ``existing`` already there, of which
    ``differing`` hold other parameters than this run's line and were left as they were."""

    batch_id: str
    lines: int
    created: int
    existing: int
    differing: int = 0

    def job_ids(self) -> Iterator[str]:
        """Ids of the batch's lines 1..``lines`` when they were numbered by position."""
        return (batch_job_id(self.batch_id, n) for n in range(1, self.lines + 1))


@dataclass(frozen=True)
class LineProblem:
    """Why one input line cannot become a job: its number, the field (if one), the reason."""

    line: int
    reason: str
    field: str | None = None

    def __str__(self) -> str:
        return f"line {self.line}: " + (f"{self.field}: " if self.field else "") + self.reason

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason}


def explicit_params(request: RequestLike) -> dict[str, Any]:
    """The parameters the caller gave: a model's fields that were set, a mapping's keys."""
    if isinstance(request, GenerationRequest):
        return request.model_dump(include=request.model_fields_set)
    if not isinstance(request, Mapping):
        kind = type(request).__name__
        raise InputError(f"a request is a GenerationRequest or a mapping of parameters, not {kind}")
    return dict(request)


def request_or_problems(
    request: RequestLike, defaults: Mapping[str, Any]
) -> GenerationRequest | list[tuple[str | None, str]]:
    """The request with the batch's ``defaults`` under it, or (field, reason) per problem."""
    try:
        return GenerationRequest.model_validate({**defaults, **explicit_params(request)})
    except ValidationError as exc:
        return field_problems(exc)
    except InputError as exc:
        return [(None, str(exc))]


def validate_request(
    request: RequestLike, defaults: Mapping[str, Any], where: str = "request"
) -> GenerationRequest:
    """``request_or_problems``, raising InputError that names ``where`` and each field."""
    valid = request_or_problems(request, defaults)
    if isinstance(valid, GenerationRequest):
        return valid
    problems = [f"{where}: " + (f"{field}: " if field else "") + why for field, why in valid]
    raise InputError(f"{where} is invalid", problems)


def stored_params(request: GenerationRequest, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """What the job record keeps: each value that differs from what reading the job back
    would give without it (the batch's default, else the model's), so no default is stored
    per job and none is lost."""
    base = {**MODEL_DEFAULTS, **defaults}
    return {name: value for name, value in request.model_dump().items() if base[name] != value}


def validate_defaults(defaults: Mapping[str, Any], where: str = "defaults") -> dict[str, Any]:
    """Batch-wide parameter defaults, typed by the request model (``"8"`` becomes 8)."""
    unknown = [name for name in defaults if name not in MODEL_DEFAULTS]
    if unknown:
        problems = [f"{where}: {name}: {unknown_parameter(name)}" for name in unknown]
        raise InputError(f"{where}: unknown parameter", problems)
    valid = validate_request({"prompt": "-", **defaults}, {}, where)
    return valid.model_dump(include=set(defaults))


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """``NAME=VALUE`` strings (``--set``) as a dict; the values are typed by validate_defaults."""
    assigned: dict[str, str] = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        name = name.strip()
        if not equals or not name:
            raise InputError(f"--set {pair!r}: expected NAME=VALUE, e.g. --set steps=8")
        if name in assigned:  # one of them would be dropped without a word
            raise InputError(f"--set {name} is given twice ({assigned[name]!r}, {value!r})")
        assigned[name] = value
    return assigned


def field_problems(exc: ValidationError) -> list[tuple[str | None, str]]:
    """(field, what is wrong and what was given) for each of pydantic's errors."""
    problems: list[tuple[str | None, str]] = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or None
        if error["type"] == "extra_forbidden":
            problems.append((field, unknown_parameter(str(field))))
            continue
        given = "" if error["type"] == "missing" else f" (got {shown(error['input'])})"
        problems.append((field, f"{error['msg']}{given}"))
    return problems


def unknown_parameter(name: str) -> str:
    close = difflib.get_close_matches(name, parameter_names(), n=1)
    hint = f"did you mean {close[0]}?" if close else "known: " + ", ".join(parameter_names())
    return f"unknown parameter ({hint})"


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= INPUT_SHOWN_CHARS else text[: INPUT_SHOWN_CHARS - 3] + "..."


def job_id_for(idempotency_key: str | None) -> str:
    """A single job's id: derived from the caller's idempotency key (the same key always names
    the same job), else fresh. No dot, so it is never taken for a batch job's id."""
    if idempotency_key is None:
        return "j" + uuid.uuid4().hex[:24]
    if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 256:
        raise InputError(f"idempotency_key: give a string of 1 to 256 characters, not "
                         f"{idempotency_key!r:.40}")  # fmt: skip
    key = idempotency_key.encode("utf-8", errors="surrogatepass")
    return "k" + hashlib.sha256(key).hexdigest()[:24]


def checked_batch_id(batch_id: str | None) -> str:
    """The caller's batch id, checked, or a fresh one."""
    if batch_id is None:
        return "b" + uuid.uuid4().hex[:16]
    if not BATCH_ID_PATTERN.fullmatch(batch_id):
        raise InputError(
            f"batch id {batch_id!r}: use 1 to 64 letters, digits, '-' or '_' (no dots)"
        )
    return batch_id


def job_options(
    priority: str = "bulk", callback: Any = None, webhook_url: str | None = None
) -> JobOptions:
    """Options from the API's arguments; ``callback`` is a task name, a Celery task or a
    signature without arguments (segq calls it with the job object as its one argument)."""
    if priority not in PRIORITIES:
        raise InputError(f"priority {priority!r}: use 'bulk' or 'interactive'")
    if webhook_url is not None and not is_webhook_url(webhook_url):
        raise InputError(f"webhook_url {webhook_url!r} is not an http(s) URL")
    chosen: Literal["bulk", "interactive"] = "interactive" if priority == "interactive" else "bulk"
    return JobOptions(priority=chosen, callback_task=callback_task_name(callback),
                      webhook_url=webhook_url)  # fmt: skip


def is_webhook_url(url: str) -> bool:
    """An http(s) URL with a host, as the workers' HTTP client (httpx) reads it: one that
    only ``urlsplit`` takes (a port that is not a number, a host that is not a valid IDNA
    name) would fail every delivery try without one being recorded."""
    try:
        parsed = httpx.URL(url)
        return parsed.scheme in ("http", "https") and bool(parsed.host)  # host: IDNA decoded
    except (httpx.InvalidURL, ValueError):  # idna's errors are UnicodeErrors, ValueErrors
        return False


def callback_task_name(callback: Any) -> str | None:
    if callback is None or isinstance(callback, str):
        return callback or None
    if hasattr(callback, "task") and isinstance(callback, dict):  # a celery Signature
        if callback.get("args") or callback.get("kwargs"):
            raise InputError(
                "callback: segq calls the task with the job object only; "
                "give a signature without arguments, or the task's name"
            )
        return str(callback["task"])
    name = getattr(callback, "name", None)  # a celery Task
    if isinstance(name, str) and name:
        return name
    raise InputError(f"callback: give a task name, a Celery task or a signature, not {callback!r}")


class BatchPlan:
    """A batch about to be enqueued: its id, defaults and options, and the chunks of jobs that
    a stream of requests (or ``BatchLine``s) becomes, validated one by one."""

    def __init__(
        self, batch_id: str | None, defaults: Mapping[str, Any] | None, options: JobOptions,
        max_lines: int, source: str | None = None,
    ) -> None:  # fmt: skip
        self.batch_id = checked_batch_id(batch_id)
        self.defaults = validate_defaults(defaults or {})
        self.options = options
        self.max_lines = max_lines
        self.source = source
        self.opened = False
        """Whether the batch exists in the store: it is opened with the first chunk sent, so
        a stream whose first item is invalid leaves no batch behind whose defaults and options
        a corrected retry would have to match."""
        self.lines = 0
        self.created = 0
        self.differing = 0
        self._chunk: list[NewJob] = []

    def check_stored(self, stored: BatchSummary) -> None:
        """A re-run must use the defaults and options the batch was created with: its jobs
        store only what differs from its defaults, and its callback and webhook are the
        batch's, so different ones would be ignored without a word."""
        if dict(stored.defaults) != self.defaults:
            raise InputError(
                f"batch {self.batch_id} was created with defaults {stored.defaults}, not "
                f"{self.defaults}: re-run with the same defaults (--set values), or give "
                "another batch id"
            )
        had = (stored.priority, stored.callback_task, stored.webhook_url)
        wanted = (self.options.priority, self.options.callback_task, self.options.webhook_url)
        if had != wanted:
            raise InputError(
                f"batch {self.batch_id} was created with priority {had[0]}, callback {had[1]}, "
                f"webhook {had[2]}; not priority {wanted[0]}, callback {wanted[1]}, webhook "
                f"{wanted[2]}: re-run with the same options, or give another batch id"
            )

    def new_job(self, item: BatchLine | RequestLike) -> NewJob:
        self.lines += 1
        line = item.line if isinstance(item, BatchLine) else self.lines
        params = item.params if isinstance(item, BatchLine) else item
        if self.lines > self.max_lines:
            raise InputError(f"line {line}: more than {self.max_lines:,} lines in one batch "
                             "(SEGQ_MAX_BATCH_LINES)")  # fmt: skip
        if not isinstance(line, int) or line < 1:
            raise InputError(f"BatchLine {line!r}: line numbers start at 1")
        if line > MAX_LINE_NUMBER:
            raise InputError(f"line {line:,}: line numbers go up to {MAX_LINE_NUMBER:,}")
        request = validate_request(params, self.defaults, where=f"line {line}")
        return NewJob(
            batch_job_id(self.batch_id, line), stored_params(request, self.defaults), line
        )

    def take(self, item: BatchLine | RequestLike) -> list[NewJob] | None:
        """Adds one item; returns a full chunk (``ENQUEUE_CHUNK`` jobs) to send, else None.
        An invalid item raises InputError before its chunk is sent: the chunks before it are
        in, and a re-run with the same batch id adds only the rest."""
        self._chunk.append(self.new_job(item))
        if len(self._chunk) < ENQUEUE_CHUNK:
            return None
        full, self._chunk = self._chunk, []
        return full

    def rest(self) -> list[NewJob]:
        """The last, partial chunk (possibly empty)."""
        rest, self._chunk = self._chunk, []
        return rest

    def count(self, outcomes: list[Added]) -> None:
        self.created += outcomes.count(Added.CREATED)
        self.differing += outcomes.count(Added.DIFFERS)

    def receipt(self) -> BatchReceipt:
        existing = self.lines - self.created
        return BatchReceipt(self.batch_id, self.lines, self.created, existing, self.differing)


def single_job(request: RequestLike, idempotency_key: str | None) -> NewJob:
    """A job of no batch: its id (from the key, if any) and its validated parameters."""
    valid = validate_request(request, {})
    return NewJob(job_id_for(idempotency_key), stored_params(valid, {}))


def created_single(job: NewJob, outcome: Added) -> bool:
    """Whether ``enqueue`` created its job; a key that names a job of other parameters is
    refused, as payment APIs refuse a reused idempotency key: returning the old job would
    answer a different request."""
    if outcome is Added.DIFFERS:
        raise InputError(
            f"idempotency key: job {job.job_id} was enqueued with it and other parameters "
            "or options (priority, callback, webhook); nothing was enqueued (use a new key "
            "for a new request)"
        )
    return outcome is Added.CREATED


def completed_or_raise(job: Job, timeout_s: float) -> Job:
    """What a handle's ``result()`` returns: the completed job; or JobNotCompleted (failed,
    cancelled) or WaitTimeout (still running), each carrying the job as it was."""
    if job.state is JobState.COMPLETED:
        return job
    if job.is_terminal:
        raise JobNotCompleted(job)
    raise WaitTimeout(job, timeout_s)

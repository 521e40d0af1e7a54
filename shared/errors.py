"""segq's one error taxonomy.

Every failure segq raises or records is a class of this tree, so tasks branch on the class and
never on status codes or message text::

    SegqError
    ├── ConfigurationError        a setting is missing, out of range or misspelt
    ├── InputError                producer input refused at the edge (names field and line)
    ├── JobNotFound               no job or batch with that id (never created, or past retention)
    ├── JobNotCompleted           a job awaited for its result ended failed or cancelled
    ├── WaitTimeout               a job awaited for its result had not ended in time
    ├── StoreError                Redis did not answer or refused a command
    └── UpstreamError             Segmind (or the sandbox) answered badly or not at all
        ├── TransientError        connection errors, timeouts, 5xx, bodies that are not JSON:
        │                         retried with backoff and jitter, a bounded number of times
        ├── RateLimited           429: wait for the window the answer names; not a failed attempt
        ├── AccountError          401, 403, 406 credits or spend limit: pause the fleet, keep jobs
        └── JobRejected           the job itself is wrong: fail it, keep the upstream's detail
            ├── InferenceFailed   422 / status FAILED: the model ran and failed
            ├── UnusableOutput    COMPLETED, but no output is a URL or an image segq can keep
            └── RequestExpired    404 while polling: the request id is unknown or expired

``UpstreamError.kind`` is the name recorded in a failed job's ``error.kind``; the kinds that no
HTTP answer produces, ``retries_exhausted`` and ``cancelled``, are recorded by the job store, and
``expired_in_queue`` (a job whose record expired before a worker took it) only in its batch's
counts, as no record is left to hold it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # job_model imports this module: the record's type is for annotations only
    from shared.job_model import Job


class SegqError(Exception):
    """Root of every error segq raises on purpose."""


class ConfigurationError(SegqError):
    """A setting is missing, has the wrong type or range, or is not a setting at all."""


class InputError(SegqError):
    """Producer input that segq refuses; ``problems`` holds one line per invalid field or line,
    or the message itself when the refusal names no field (a reused idempotency key, say), so
    an app that answers with ``problems`` never sends an empty reason."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]

    def __str__(self) -> str:
        head = super().__str__()
        return head if self.problems == [head] else "\n".join([head, *self.problems])


class JobNotFound(SegqError):
    """No job or batch by that id: never created, mistyped, or removed after its retention."""


class JobNotCompleted(SegqError):
    """The awaited job ended failed or cancelled; ``job`` is its record (``job.error`` says why)."""

    def __init__(self, job: Job) -> None:
        reason = f": {job.error.kind}: {job.error.detail}" if job.error else ""
        super().__init__(f"job {job.job_id} ended {job.state.value}{reason}")
        self.job = job


class WaitTimeout(SegqError):
    """The awaited job had not ended when the timeout ran out; ``job`` is how it was then."""

    def __init__(self, job: Job, timeout_s: float) -> None:
        super().__init__(f"job {job.job_id} is still {job.state.value} after {timeout_s:g} s")
        self.job = job


class StoreError(SegqError):
    """Redis was unreachable or refused a command; the operation did not happen."""


class UpstreamError(SegqError):
    """An answer (or the lack of one) from the Segmind v2 API.

    ``detail`` is the upstream's own message, verbatim, so a person sees what Segmind said.
    """

    kind = "upstream"

    def __init__(self, detail: str, http_status: int | None = None) -> None:
        super().__init__(f"{http_status or 'no answer'}: {detail}")
        self.detail = detail
        self.http_status = http_status


class TransientError(UpstreamError):
    """Worth trying again later: the upstream or the network had a bad moment."""

    kind = "transient"


class AnswerLost(TransientError):
    """A submit whose answer was lost after it went out (no answer, a cut-off one, a gateway's
    502/504, a 2xx without a request id): Segmind may have queued the job, and submitting it
    again may bill it twice. Without an idempotency key upstream nobody can tell, so the retry
    goes ahead and is counted on the job (``interrupted_submits``)."""


class RateLimited(UpstreamError):
    """429: the account's budget for this window is spent.

    ``retry_after_s`` is how long the answer says to wait, or None when it names no window.
    """

    kind = "rate_limited"

    def __init__(
        self, detail: str, http_status: int | None = 429, retry_after_s: float | None = None
    ) -> None:
        super().__init__(detail, http_status)
        self.retry_after_s = retry_after_s


class AccountError(UpstreamError):
    """The account cannot submit (bad key, forbidden model, no credits, spend limit).

    Failing jobs would burn the queue: the fleet pauses and probes until the account is fixed.
    """

    kind = "account"


class JobRejected(UpstreamError):
    """The upstream refused this job's request (400, 404 model, 405, 406 parameter, 410).

    ``metrics`` keeps what the answer reported of a run that did happen, or ``{}``.
    """

    kind = "rejected"

    def __init__(
        self, detail: str, http_status: int | None = None, metrics: dict | None = None
    ) -> None:
        super().__init__(detail, http_status)
        self.metrics = metrics or {}


class InferenceFailed(JobRejected):
    """The model ran and the request ended FAILED (422 on v2); not billed. ``metrics`` often
    holds ``inference_time``."""

    kind = "inference_failed"

    def __init__(
        self, detail: str, http_status: int | None = 422, metrics: dict | None = None
    ) -> None:
        super().__init__(detail, http_status, metrics)


class UnusableOutput(JobRejected):
    """The request ended COMPLETED (and was billed), but its ``output`` held no URL and no
    image segq can keep. Completing the job with no outputs would lose that without a word:
    it fails, and ``detail`` shows the output as it came, for a person to judge."""

    kind = "unusable_output"


class RequestExpired(JobRejected):
    """The upstream no longer knows the request id (404 while polling; results live 1 hour)."""

    kind = "expired"

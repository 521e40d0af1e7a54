"""The job store as workers see it: what to publish now, and each step of a job's run.

A job waits in Redis until the dispatcher (``dispatch``) hands it to the broker, so the broker
only ever holds a window of work. Each task then moves its job with one script call per step:
claim the submit, record the request id, note a poll, end the job. Every step is a
compare-and-set on the job's state (and poll token), so a redelivered or republished message
does nothing twice. Scripts are documented in ``shared/lua/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from shared import redis_keys
from shared.job_codec import compact_json
from shared.job_model import JobFailure, JobState
from shared.job_store import JobStore, store_errors
from shared.settings import Settings

REPAIR_CHUNK = 1000
"""In-flight jobs one ``repair_due`` script call looks at, so that a pass over a large
``segq:inflight`` holds Redis for many short calls, never one long one."""


@dataclass(frozen=True)
class DispatchPlan:
    """What one dispatcher step decided: jobs to submit, (job, token) pairs to poll, and
    jobs whose callback or webhook is due."""

    submits: list[str]
    polls: list[tuple[str, str]]
    wake_in_s: float
    notices: list[str] = field(default_factory=list)
    interactive: frozenset[str] = frozenset()
    """Which of ``submits`` are interactive jobs (published to their own queue)."""

    @property
    def size(self) -> int:
        return len(self.submits) + len(self.polls) + len(self.notices)


@dataclass(frozen=True)
class SubmitClaim:
    """The outcome of claiming a job's submit; ``params`` are the batch defaults plus its own.

    ``hold`` (the submit budget holds off ``wait_s`` more: a 429's window) and ``paused`` (the
    fleet is paused, ``reason`` says why, and this job is not its probe): the fleet's gate
    said no, and the job went back to the front of its lane in the same step."""

    outcome: Literal["go", "busy", "skip", "gone", "hold", "paused"]
    params: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    wait_s: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class PollTicket:
    """Admission to poll a job once: who to ask about, and how long it has been."""

    request_id: str
    elapsed_s: float
    state: JobState
    polls: int
    attempts: int


@dataclass(frozen=True)
class PollHold:
    """The poll budget holds off ``wait_s`` more (a 429's window): the job is looked at again
    then, and this message polls nothing."""

    wait_s: float


@dataclass(frozen=True)
class Submitted:
    """A stored request id: the job's state after it (``submitted``, or ``cancelled`` if it
    was cancelled meanwhile) and how long it waited from being accepted by segq."""

    state: JobState
    waited_s: float | None = None


@dataclass(frozen=True)
class Ending:
    """Whether a call ended its job (its callback or webhook, if any, is then due at once:
    the ending script scheduled it, see ``segq:notify``); when it did, what the job's line and
    metrics need, read by the same script (``ending_of`` in ``shared/lua/job.lua``)."""

    ended: bool
    request_id: str | None = None
    polls: int = 0
    e2e_s: float | None = None

    @classmethod
    def from_reply(cls, reply: list[Any]) -> Ending:
        if not int(reply[0]):
            return cls(ended=False)
        created_at, finished_at, request_id, polls = reply[1:5]
        e2e_s = None
        if created_at and finished_at:
            e2e_s = max(0.0, float(finished_at) - float(created_at))
        return cls(ended=True, request_id=request_id or None, polls=int(polls), e2e_s=e2e_s)


@dataclass(frozen=True)
class Retried:
    """What a transient failure did to its job, and to the fleet.

    ``exhausted``: the job ended, failed with this error (``retries_exhausted``).
    ``fleet_paused``: this failure paused the fleet's submits: it made
    ``SEGQ_OUTAGE_FAILURES`` in a row, Segmind looks down. ``back_in_lane``: submits are
    paused (by this failure or before it), and the job, not accepted by Segmind, went back to
    the front of its lane with its attempt unspent."""

    ending: Ending
    exhausted: JobFailure | None = None
    fleet_paused: bool = False
    back_in_lane: bool = False


class DispatchQueue:
    """Workers' operations on the job store."""

    def __init__(self, store: JobStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        fingerprint = settings.api_key_fingerprint()
        self.submit_rate_key = redis_keys.rate(fingerprint, "submit")
        self.poll_rate_key = redis_keys.rate(fingerprint, "poll")
        self.submit_ok_key = redis_keys.rate_accepted(fingerprint, "submit")
        self.poll_ok_key = redis_keys.rate_accepted(fingerprint, "poll")

    def dispatch(self, max_items: int = 64) -> DispatchPlan:
        """One step: leases that ran out, due polls and retries, and submits the budget allows."""
        s = self.settings
        with store_errors():
            reply = self.store.run_script(
                "dispatch", s.broker_window, s.max_in_flight or 0, s.lease_s, max_items,
                self.submit_rate_key, self.poll_rate_key, s.submit_rate_limit or 0,
                s.poll_rate_limit or 0, s.rate_safety, s.account_pause_seconds,
                "1" if s.rate_limiter == "fleet" else "0", s.dispatch_idle_s,
            )  # fmt: skip
        n_submits, n_notices, lanes = int(reply[1]), int(reply[2]), reply[3]
        submits_end = 4 + n_submits
        notices_end = submits_end + n_notices
        submits = list(reply[4:submits_end])
        interactive = [job for job, lane in zip(submits, lanes, strict=True) if lane == "i"]
        rest = reply[notices_end:]
        return DispatchPlan(
            submits=submits,
            polls=[(rest[i], str(rest[i + 1])) for i in range(0, len(rest), 2)],
            wake_in_s=float(reply[0]),
            notices=list(reply[submits_end:notices_end]),
            interactive=frozenset(interactive),
        )

    def begin_submit(self, job_id: str) -> SubmitClaim:
        """Claims the submit if the fleet's gate lets it call now (one script call: the task
        makes no other before its HTTP call)."""
        use_hold = "1" if self.settings.rate_limiter == "fleet" else "0"
        with store_errors():
            reply = self.store.run_script(
                "begin_submit", job_id, self.settings.lease_s, self.submit_rate_key, use_hold
            )
        if reply[0] == "hold":
            return SubmitClaim(outcome="hold", wait_s=float(reply[1]))
        if reply[0] == "paused":
            return SubmitClaim(outcome="paused", reason=reply[1])
        if reply[0] != "go":
            return SubmitClaim(outcome=reply[0])
        own = _json_dict(reply[1])
        params = {**_json_dict(reply[2]), **own}
        return SubmitClaim(outcome="go", params=params, attempts=int(reply[3]))

    def record_submitted(self, job_id: str, request_id: str, first_poll_in_s: float) -> Submitted:
        with store_errors():
            reply = self.store.run_script(
                "record_submitted", job_id, request_id, first_poll_in_s, self.submit_ok_key
            )
        if reply[0] == "gone":
            return Submitted(JobState.CANCELLED)
        return Submitted(JobState(reply[0]), float(reply[1]))

    def requeue_front(self, job_id: str) -> None:
        """Back to the front of its lane (rate limited or paused): it keeps its place."""
        self._release(job_id, "front", 0, None)

    def defer(self, job_id: str, delay_s: float) -> None:
        """Look at the job again in ``delay_s`` without counting an attempt."""
        self._release(job_id, "defer", delay_s, None)

    def retry_later(
        self, job_id: str, delay_s: float, failure: JobFailure, *, answer_lost: bool = False
    ) -> Retried:
        """One more attempt after ``delay_s``; or failed when the job's budget is spent; or,
        while the fleet's submits are paused for an outage, back to its lane (see
        ``Retried`` and ``shared/lua/fleet_pause.lua``). ``answer_lost``: the failed call was a
        submit Segmind may have accepted (``AnswerLost``), counted in ``interrupted_submits``."""
        reply = self._release(job_id, "retry", delay_s, failure, answer_lost=answer_lost)
        ending = Ending.from_reply(reply[1:])
        if ending.ended:
            return Retried(ending, exhausted=JobFailure.model_validate_json(reply[6]))
        outage = reply[2] if len(reply) > 2 else None
        return Retried(ending, fleet_paused=outage == "paused", back_in_lane=len(reply) > 3)

    def _release(
        self, job_id: str, mode: str, delay_s: float, failure: JobFailure | None,
        *, answer_lost: bool = False,
    ) -> list[Any]:  # fmt: skip
        error = compact_json(failure.model_dump()) if failure else ""
        s = self.settings
        with store_errors():
            return self.store.run_script(
                "release", job_id, mode, delay_s, error, s.max_attempts, s.upstream_retention_s,
                s.outage_failures, s.outage_probe_seconds, "1" if answer_lost else "0",
            )  # fmt: skip

    def hand_back(self, job_id: str, token: str = "") -> bool:
        """Gives back a job whose submit (no token) or poll (its token) was published but not
        started, while its worker drains; False if it was not this message's to give."""
        with store_errors():
            return bool(self.store.run_script("hand_back", job_id, token))

    def begin_poll(self, job_id: str, token: str) -> PollTicket | PollHold | None:
        """Admission to poll; a hold of the poll budget; or None if this message is stale
        (another poll owns the job)."""
        with store_errors():
            reply = self.store.run_script("begin_poll", job_id, token, self.poll_rate_key)
        if reply[0] == "hold":
            return PollHold(float(reply[1]))
        if reply[0] != "go":
            return None
        return PollTicket(
            request_id=reply[1],
            elapsed_s=float(reply[2]),
            state=JobState(reply[3]),
            polls=int(reply[4]),
            attempts=int(reply[5]),
        )

    def record_progress(
        self, job_id: str, token: str, upstream_status: str, next_poll_in_s: float
    ) -> str:
        """Notes a poll that found the job unfinished; returns its state after (or ``stale``)."""
        with store_errors():
            return self.store.run_script(
                "record_progress", job_id, token, upstream_status, next_poll_in_s,
                self.poll_ok_key,
            )  # fmt: skip

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        outputs: list[str] | None = None,
        metrics: dict[str, Any] | None = None,
        failure: JobFailure | None = None,
    ) -> Ending:
        """Ends the job unless something else already did."""
        fields: list[str] = []
        if outputs is not None:
            fields += ["outputs", compact_json(outputs)]
        if metrics:
            fields += ["metrics", compact_json(metrics)]
        if failure is not None:
            fields += ["error", compact_json(failure.model_dump())]
        kind = failure.kind if failure else ""
        with store_errors():
            reply = self.store.run_script("finish", job_id, state.value, kind, *fields)
        return Ending.from_reply(reply)

    def settle_notice(
        self, job_id: str, told: float | None, again_in_s: float | None = None
    ) -> None:
        """Off the schedule (everybody was told of the ending that ``told`` names, its
        ``finished_at``, or the tries are spent), or back on it in ``again_in_s``; unless
        the job ended again meanwhile, whose notice stays as its new ending scheduled it
        (``settle_notice.lua``). ``told`` is None for a job not ended, or gone."""
        with store_errors():
            self.store.run_script(
                "settle_notice", job_id, "" if told is None else repr(told),
                "" if again_in_s is None else repr(again_in_s),
            )  # fmt: skip

    def notice_later(self, job_id: str, delay_s: float) -> None:
        """A notice handed back by a draining worker: the dispatcher publishes it again in
        ``delay_s`` (a delivery's own outcome is ``settle_notice``'s)."""
        with store_errors():
            seconds, micros = self.store.redis.time()  # the fleet's one clock, as in the scripts
            self.store.redis.zadd(redis_keys.NOTIFY, {job_id: seconds + micros / 1e6 + delay_s})

    def repair_due(self, per_call: int = REPAIR_CHUNK) -> int:
        """Makes due now every in-flight job that lost its next poll (``repair_due.lua``), a
        chunk of ``segq:inflight`` per script call; returns how many."""
        made_due, start = 0, 0
        with store_errors():
            calls = self.store.redis.zcard(redis_keys.INFLIGHT) // per_call + 2
            for _ in range(calls):  # the set may grow under the pass: the next pass sees the rest
                start, repaired = self.store.run_script("repair_due", start, per_call)
                made_due += repaired
                if start == 0:
                    break
        return made_due

    def pause_fleet(self, reason: str) -> None:
        """An automatic pause: probed every ``account_pause_seconds``, ended by a good submit."""
        self.store.pause_fleet(
            reason, manual=False, probe_after_s=self.settings.account_pause_seconds
        )


def _json_dict(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}

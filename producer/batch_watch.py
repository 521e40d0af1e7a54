"""Following a job or a batch until every job has ended: progress, images saved, the outcome.

``segq wait`` and ``segq demo`` both run ``watch``. Progress comes from the batch's counters
(one read, whatever the batch's size); completed jobs are found through their end events (one
pattern subscription per batch) so their images can be saved as they complete, with a full
read of the batch's jobs beside the first ticks and after the last event (an event published
while nothing listened is not lost, only found later). ``--timeout`` bounds every read: a
200k-job batch takes a minute or more to read whole.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from producer.api import Producer
from producer.output_download import OutputDownloader
from producer.progress_view import ProgressView, WaitProgress
from producer.status_view import CALLS, hold_line, pause_line
from shared import redis_keys
from shared.errors import StoreError
from shared.fleet_state import RateLimitState
from shared.job_model import Job, JobState
from shared.job_store import EVENTS_DRAINED, BatchSummary, store_errors
from shared.output_files import SavedOutputs

TICK_S = 0.25
"""How often progress is read again: a fraction of a second, a few cheap reads."""

SWEEP_SLICE_S = 0.2
"""How long each tick spends at most reading jobs to save (a 200k-job batch's full read takes
a minute or more), so that the progress bar moves meanwhile."""

NOTABLE_HOLD_S = 10.0
"""The shortest 429 hold a wait notes (``FleetNotice``)."""
STORE_AWAY_TOLERANCE_S = 120.0
"""How long a wait rides out Redis not answering before it gives up with the error."""


class WaitTarget(Protocol):
    """A job or a batch as ``watch`` follows it."""

    target_id: str

    def progress(self) -> WaitProgress: ...

    def following(self) -> contextlib.AbstractContextManager[None]:
        """Listens for completions while the block runs (``newly_completed`` needs it)."""

    def newly_completed(self) -> Iterable[Job]: ...

    def completed_jobs(self) -> Iterable[Job]: ...


class JobTarget:
    """One job: its state is read each tick, so it needs no subscription."""

    def __init__(self, producer: Producer, job_id: str) -> None:
        self.producer = producer
        self.target_id = job_id
        self._job: Job | None = None

    def progress(self) -> WaitProgress:
        self._job = self.producer.get_job(self.target_id)
        return WaitProgress(total=1, counts={self._job.state.value: 1})

    def following(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def newly_completed(self) -> Iterable[Job]:
        return [self._job] if self._job is not None else []

    def completed_jobs(self) -> Iterator[Job]:
        """Read when the downloader takes it, as a batch's jobs are: a read once ``--timeout``
        ran out is not made (Redis may be why it ran out)."""
        yield self.producer.get_job(self.target_id)


class BatchTarget:
    """A batch: counters for progress, its jobs' end events for what completed."""

    def __init__(self, producer: Producer, batch_id: str) -> None:
        self.producer = producer
        self.target_id = batch_id
        self._pubsub: Any = None

    def progress(self) -> WaitProgress:
        summary = self.producer.get_batch(self.target_id)
        now = time.time()
        return WaitProgress(summary.total, summary.counts, summary.throughput_per_s(now),
                            summary.eta_s(now))  # fmt: skip

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        client = self.producer.store.redis
        with store_errors(), client.pubsub(ignore_subscribe_messages=True) as pubsub:
            pubsub.psubscribe(redis_keys.batch_events_pattern(self.target_id))
            self._pubsub = pubsub
            try:
                yield
            finally:
                self._pubsub = None

    def newly_completed(self) -> Iterable[Job]:
        job_ids = []
        with store_errors():
            for _ in range(EVENTS_DRAINED):
                event = self._pubsub.get_message(timeout=0)
                if event is None:
                    break
                if event["data"] == JobState.COMPLETED.value:
                    job_ids.append(event["channel"].removeprefix(redis_keys.EVENTS_PREFIX))
        return [job for job in self.producer.store.get_jobs(job_ids) if job is not None]

    def completed_jobs(self) -> Iterable[Job]:
        return (
            job
            for job in self.producer.iter_batch_jobs(self.target_id)
            if job.state is JobState.COMPLETED
        )


def target_of(producer: Producer, found: Job | BatchSummary) -> WaitTarget:
    """What ``watch`` follows for a job or a batch that ``terminal.find`` found."""
    if isinstance(found, Job):
        return JobTarget(producer, found.job_id)
    return BatchTarget(producer, found.batch_id)


@dataclass(frozen=True)
class WaitOutcome:
    """How the wait ended, and what the exit status says about it."""

    progress: WaitProgress
    timed_out: bool
    saved: SavedOutputs | None

    @property
    def exit_status(self) -> int:
        """0: every job completed (and every image saved); 1: not so; 2: the timeout ran out."""
        if self.timed_out:
            return 2
        all_completed = self.progress.count(JobState.COMPLETED) == self.progress.total
        return 0 if all_completed and not (self.saved and self.saved.failures) else 1


class StoreAway:
    """Lets a wait ride out a Redis blip (a restart, a failover, a paused client) for up to
    ``STORE_AWAY_TOLERANCE_S``: a wait may have run for hours, and its exit status 1 means a
    job failed, which a blip does not say. Workers keep going meanwhile."""

    def __init__(self, view: ProgressView) -> None:
        self.view = view
        self.since: float | None = None
        self.last_error: StoreError | None = None

    @contextlib.contextmanager
    def tolerated(self) -> Iterator[None]:
        try:
            yield
        except StoreError as exc:
            now = time.monotonic()
            if self.since is None:
                self.since = now
                self.view.note(f"{exc}; still waiting (up to {STORE_AWAY_TOLERANCE_S:.0f} s)")
            if now - self.since > STORE_AWAY_TOLERANCE_S:
                raise
            self.last_error = exc
        else:
            if self.since is not None:
                self.view.note("Redis answers again")
            self.since = None


class FleetNotice:
    """Notes when the fleet pauses and resumes, and when a 429's hold stops a kind of call,
    while a wait runs: either leaves the jobs sitting there (a hold may last up to a day), and
    the figures alone would not say why. Holds shorter than ``NOTABLE_HOLD_S`` are left out:
    a 429 storm holds for seconds at a time, over before anyone could act on a note."""

    def __init__(self, producer: Producer, view: ProgressView, every_s: float = 5.0) -> None:
        self.producer = producer
        self.view = view
        self.every_s = every_s
        self.read_at: float | None = None
        self.paused = False
        self.holds: set[tuple[str, str]] = set()
        """(account, kind) of the holds noted and not yet seen to end."""

    def __call__(self) -> None:
        now = time.monotonic()
        if self.read_at is not None and now - self.read_at < self.every_s:
            return
        self.read_at = now
        fleet = self.producer.fleet_state()
        if fleet.paused != self.paused:
            self.view.note(pause_line(fleet, time.time()) if fleet.paused else "fleet resumed")
        self.paused = fleet.paused
        self._note_holds(fleet.rate_limits)

    def _note_holds(self, states: list[RateLimitState]) -> None:
        holding = {
            (state.account, state.kind): state
            for state in states
            if state.hold_left_s is not None
            and ((state.account, state.kind) in self.holds or state.hold_left_s >= NOTABLE_HOLD_S)
        }
        for budget, state in holding.items():
            if budget not in self.holds:
                self.view.note(f"{hold_line(state)}; segq resume lifts it")
        for _, kind in sorted(self.holds - holding.keys()):
            self.view.note(f"{CALLS[kind]} no longer on hold")
        self.holds = set(holding)


def note_expired(saved: SavedOutputs, missing: int) -> None:
    """Counts as not saved the completed jobs the reads did not find: their records expired
    (SEGQ_JOB_RETENTION_S) while the batch went on, and their images' URLs with them."""
    if missing > 0 and not saved.cut_short:
        saved.failures.append(
            f"{missing:,} completed jobs are past their retention (SEGQ_JOB_RETENTION_S): "
            "their records and image URLs are gone"
        )


def watch(
    target: WaitTarget,
    view: ProgressView,
    *,
    timeout_s: float | None = None,
    downloader: OutputDownloader | None = None,
    on_tick: Callable[[], None] | None = None,
) -> WaitOutcome:
    """Shows progress until every job has ended or ``timeout_s`` ran out, saving images as jobs
    complete when given a ``downloader``. ``on_tick`` runs between reads: it may note something
    the figures miss (``FleetNotice``) or raise to stop early (the demo's dead worker)."""
    deadline = math.inf if timeout_s is None else time.monotonic() + timeout_s
    with contextlib.ExitStack() as stack:
        stack.enter_context(view)
        if downloader is not None:
            stack.enter_context(target.following())
            downloader.save_jobs(target.completed_jobs(), until=time.monotonic())  # read by ticks
        store_away = StoreAway(view)
        progress: WaitProgress | None = None
        while True:
            with store_away.tolerated():
                progress = target.progress()
                if downloader is not None:
                    slice_end = min(deadline, time.monotonic() + SWEEP_SLICE_S)
                    downloader.save_jobs(target.newly_completed(), until=slice_end)
                view.show(progress, downloader.files_saved if downloader else None)
                if on_tick is not None:
                    on_tick()
            timed_out = time.monotonic() >= deadline
            if progress is not None and (progress.is_terminal or timed_out):
                break
            if timed_out:  # Redis away since the start: nothing to report but the error
                raise store_away.last_error or StoreError("Redis did not answer")
            time.sleep(TICK_S)
        saved = None
        if downloader is not None:
            # A last full read finds completions whose events nobody heard; --timeout bounds
            # it and the saves it queues.
            downloader.save_jobs(target.completed_jobs(), until=deadline)
            saved = downloader.finish(until=deadline)
            note_expired(saved, progress.count(JobState.COMPLETED) - downloader.jobs_taken)
            view.show(progress, len(saved.files))
    assert progress is not None  # the loop leaves only with progress read
    timed_out = not progress.is_terminal or bool(saved and saved.cut_short)
    return WaitOutcome(progress, timed_out, saved)

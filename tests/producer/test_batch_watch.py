"""`watch`, the loop behind `segq wait`, against a scripted target (no Redis): it rides out a
Redis blip, and gives up with the error when Redis stays away."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Iterator

import pytest
from rich.console import Console

from producer import batch_watch
from producer.batch_watch import FleetPauseNotice, watch
from producer.progress_view import ProgressView, WaitProgress
from shared.errors import StoreError
from shared.job_model import Job
from shared.job_store import FleetState
from shared.output_files import SavedOutputs

AWAY = StoreError("Redis did not answer: Timeout reading from socket")


class ScriptedTarget:
    """Answers each ``progress()`` with the next of ``answers`` (an exception is raised)."""

    target_id = "b"

    def __init__(self, answers: list[WaitProgress | StoreError]) -> None:
        self.answers = iter(answers)

    def progress(self) -> WaitProgress:
        answer = next(self.answers)
        if isinstance(answer, StoreError):
            raise answer
        return answer

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        yield

    def newly_completed(self) -> Iterable[Job]:
        return []

    def completed_jobs(self) -> Iterable[Job]:
        return []


def progress(done: int) -> WaitProgress:
    return WaitProgress(total=2, counts={"completed": done, "queued": 2 - done})


def plain_view() -> tuple[ProgressView, io.StringIO]:
    out = io.StringIO()
    return ProgressView("b", Console(file=out, force_terminal=False), plain_every_s=0), out


def test_a_wait_rides_out_redis_not_answering_and_ends_as_the_batch_does(monkeypatch):
    monkeypatch.setattr(batch_watch, "TICK_S", 0)
    view, out = plain_view()
    target = ScriptedTarget([progress(0), AWAY, AWAY, progress(1), progress(2)])
    outcome = watch(target, view)
    assert outcome.exit_status == 0
    lines = out.getvalue()
    assert f"b: {AWAY}; still waiting (up to 120 s)" in lines
    assert lines.count("still waiting") == 1 and "b: Redis answers again" in lines


def test_a_wait_gives_up_with_the_error_when_redis_stays_away(monkeypatch):
    monkeypatch.setattr(batch_watch, "TICK_S", 0)
    monkeypatch.setattr(batch_watch, "STORE_AWAY_TOLERANCE_S", 0.05)
    view, _ = plain_view()
    target = ScriptedTarget([progress(0), *[AWAY] * 100_000])
    with pytest.raises(StoreError, match="Redis did not answer"):
        watch(target, view)


def test_a_wait_whose_timeout_runs_out_before_redis_ever_answered_says_why(monkeypatch):
    monkeypatch.setattr(batch_watch, "TICK_S", 0)
    view, _ = plain_view()
    with pytest.raises(StoreError, match="Timeout reading from socket"):
        watch(ScriptedTarget([AWAY] * 10), view, timeout_s=0)


class ScriptedFleet:
    """A producer whose fleet is paused, or not, as ``states`` say, one per read."""

    def __init__(self, states: list[FleetState]) -> None:
        self.states = iter(states)

    def fleet_state(self) -> FleetState:
        return next(self.states)


def test_a_wait_notes_when_the_fleet_pauses_and_resumes_once_each(monkeypatch):
    monkeypatch.setattr(batch_watch, "TICK_S", 0)
    view, out = plain_view()
    paused = FleetState(paused=True, reason="card expired", manual=True)
    running = FleetState(paused=False)
    fleet = ScriptedFleet([running, paused, paused, running])
    notice = FleetPauseNotice(fleet, view, every_s=0)  # type: ignore[arg-type]
    watch(ScriptedTarget([progress(0)] * 3 + [progress(2)]), view, on_tick=notice)
    lines = out.getvalue()
    assert lines.count("b: fleet paused by hand: card expired; segq resume to resume") == 1
    assert lines.count("b: fleet resumed") == 1


class CountingDownloader:
    """Records how many times the whole batch's completed jobs were read for saving."""

    def __init__(self, target: ScriptedTarget) -> None:
        self.target = target
        self.full_reads = 0
        self.files_saved = 0

    def save_jobs(self, jobs: Iterable[Job]) -> None:
        if jobs is self.target.all_completed:
            self.full_reads += 1

    def finish(self) -> SavedOutputs:
        return SavedOutputs()


class SweptTarget(ScriptedTarget):
    all_completed: list[Job] = []

    def completed_jobs(self) -> Iterable[Job]:
        return self.all_completed


def test_a_download_wait_whose_timeout_runs_out_skips_the_last_full_sweep(monkeypatch):
    monkeypatch.setattr(batch_watch, "TICK_S", 0)
    view, _ = plain_view()
    target = SweptTarget([progress(0)] * 5)
    downloader = CountingDownloader(target)
    outcome = watch(target, view, timeout_s=0, downloader=downloader)  # type: ignore[arg-type]
    assert outcome.exit_status == 2
    assert downloader.full_reads == 1  # the first, before following the events; not a second

"""`watch`, the loop behind `segq wait`, against a scripted target (no Redis): it rides out a
Redis blip, and gives up with the error when Redis stays away."""

from __future__ import annotations

import contextlib
import io
import threading
import time
from collections.abc import Iterable, Iterator

import pytest
from rich.console import Console

from producer import batch_watch, output_download
from producer.batch_watch import FleetNotice, watch
from producer.output_download import OutputDownloader
from producer.progress_view import ProgressView, WaitProgress
from shared.errors import StoreError
from shared.fleet_state import FleetState, RateLimitState
from shared.job_model import Job, JobState

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
    notice = FleetNotice(fleet, view, every_s=0)  # type: ignore[arg-type]
    watch(ScriptedTarget([progress(0)] * 3 + [progress(2)]), view, on_tick=notice)
    lines = out.getvalue()
    assert lines.count("b: fleet paused by hand: card expired; segq resume to resume") == 1
    assert lines.count("b: fleet resumed") == 1


def held(kind: str, left_s: float) -> RateLimitState:
    return RateLimitState(kind=kind, account="acct", hold_until=1_800_000_000.0 + left_s,  # type: ignore[arg-type]
                          hold_left_s=left_s)  # fmt: skip


def test_a_wait_notes_a_long_429_hold_once_and_its_end_but_not_a_storm_of_short_ones(monkeypatch):
    monkeypatch.setattr(batch_watch, "TICK_S", 0)
    view, out = plain_view()
    states = [
        FleetState(paused=False, rate_limits=[held("poll", 3.0)]),  # a storm's short hold
        FleetState(paused=False),
        FleetState(paused=False, rate_limits=[held("submit", 3600.0)]),
        FleetState(paused=False, rate_limits=[held("submit", 3595.0), held("poll", 2.0)]),
        FleetState(paused=False, rate_limits=[held("submit", 4.0)]),  # still the same hold
        FleetState(paused=False),  # it ran out, or segq resume lifted it
    ]
    notice = FleetNotice(ScriptedFleet(states), view, every_s=0)  # type: ignore[arg-type]
    watch(ScriptedTarget([progress(0)] * 5 + [progress(2)]), view, on_tick=notice)
    lines = out.getvalue()
    assert lines.count("b: submits on hold after a 429 until 2027-01-15T09:00:00.000+00:00 "
                       "(1h00m left); segq resume lifts it") == 1  # fmt: skip
    assert lines.count("b: submits no longer on hold") == 1
    assert "status and result calls" not in lines


JPEG = b"\xff\xd8\xff\xe0JFIF" + bytes(8)


def completed_job(n: int) -> Job:
    return Job(job_id=f"b.{n}", state=JobState.COMPLETED, created_at=0.0, line=n,
               outputs=[f"https://cdn.example/{n}.jpeg"])  # fmt: skip


class SweptTarget(ScriptedTarget):
    """A batch of ``size`` completed jobs, each taking ``read_s`` to read; notes how many
    progress reads had happened when each job was read, and how many full reads began."""

    def __init__(self, answers: list[WaitProgress], size: int, read_s: float = 0.0) -> None:
        super().__init__(answers)
        self.size, self.read_s = size, read_s
        self.full_reads = self.progress_reads = 0
        self.read_at: list[int] = []

    def progress(self) -> WaitProgress:
        self.progress_reads += 1
        return super().progress()

    def completed_jobs(self) -> Iterator[Job]:
        self.full_reads += 1
        for n in range(1, self.size + 1):
            time.sleep(self.read_s)
            self.read_at.append(self.progress_reads)
            yield completed_job(n)


def test_a_download_wait_reads_a_big_batch_between_progress_reads_not_before_them(
    monkeypatch, tmp_path
):
    monkeypatch.setattr(batch_watch, "TICK_S", 0)
    monkeypatch.setattr(batch_watch, "SWEEP_SLICE_S", 0.01)
    view, _ = plain_view()
    target = SweptTarget([progress(0)] * 1000 + [progress(2)], size=200, read_s=0.002)
    with OutputDownloader(tmp_path, lambda url: JPEG) as downloader:
        outcome = watch(target, view, downloader=downloader)
    assert outcome.exit_status == 0
    first_read = target.read_at[:200]
    assert first_read[0] == 1
    assert first_read[-1] > 5  # the bar was read (and shown) again and again meanwhile
    assert len(list(tmp_path.glob("*.jpg"))) == 200


def test_a_download_wait_whose_timeout_runs_out_reads_the_batch_no_further(monkeypatch, tmp_path):
    monkeypatch.setattr(batch_watch, "TICK_S", 0)
    view, _ = plain_view()
    target = SweptTarget([progress(0)] * 100_000, size=100_000, read_s=0.001)
    with OutputDownloader(tmp_path, lambda url: JPEG) as downloader:
        outcome = watch(target, view, timeout_s=0.2, downloader=downloader)
    assert outcome.exit_status == 2 and outcome.saved is not None and outcome.saved.cut_short
    assert 0 < len(target.read_at) < 1000  # 100 s of reading had the timeout not bounded it
    assert target.full_reads == 1  # the last full read never began


def test_a_download_wait_whose_timeout_runs_out_drops_the_saves_not_started(tmp_path):
    """--timeout bounds the downloads too: 40 completed jobs at 0.1 s each on one thread would
    take 4 s; a 0.5 s timeout leaves within about that, saying that some were not saved."""

    def slow_fetch(url: str) -> bytes:
        time.sleep(0.1)
        return JPEG

    target = SweptTarget([WaitProgress(total=40, counts={"completed": 40})], size=40)
    view, _ = plain_view()
    started = time.monotonic()
    with OutputDownloader(tmp_path, slow_fetch, threads=1) as downloader:
        outcome = watch(target, view, timeout_s=0.5, downloader=downloader)
    assert time.monotonic() - started < 1.5
    assert outcome.exit_status == 2 and outcome.saved is not None
    assert 0 < len(list(tmp_path.glob("*.jpg"))) < 40 and outcome.saved.cut_short


def test_saving_a_large_backlog_reads_its_jobs_only_as_the_threads_take_them(tmp_path):
    """A batch that completed while nobody listened: its jobs stay in Redis (the iterable)
    until there is room, so memory stays flat whatever the batch's size."""
    taken: list[int] = []
    release = threading.Event()

    def backlog() -> Iterator[Job]:
        for n in range(1, 1001):
            taken.append(n)
            yield completed_job(n)

    def held_fetch(url: str) -> bytes:
        release.wait(timeout=30)
        return JPEG

    with OutputDownloader(tmp_path, held_fetch, threads=2) as downloader:
        downloader.save_jobs(backlog())  # returns once the pool is full: the bar goes on
        assert len(taken) <= 2 * output_download.QUEUED_PER_THREAD + 1
        release.set()
        saved = downloader.finish()
    assert len(taken) == 1000 and len(saved.written) == 1000


class AwayProducer:
    """A producer whose Redis answers ``answers`` reads of the job, then stops answering."""

    def __init__(self, answers: int) -> None:
        self.answers = answers

    def get_job(self, job_id: str) -> Job:
        if self.answers <= 0:
            raise AWAY
        self.answers -= 1
        return Job(job_id=job_id, state=JobState.QUEUED, created_at=0.0)


def test_a_job_download_wait_whose_timeout_runs_out_while_redis_is_away_says_timed_out(
    monkeypatch, tmp_path
):
    """Exit status 2, as without --download: the last read of the job is not made once the
    timeout ran out, and Redis being away (tolerated until then) does not end it with 1."""
    monkeypatch.setattr(batch_watch, "TICK_S", 0.01)
    view, _ = plain_view()
    target = batch_watch.JobTarget(AwayProducer(answers=2), "j1")  # type: ignore[arg-type]
    with OutputDownloader(tmp_path, lambda url: JPEG) as downloader:
        outcome = watch(target, view, timeout_s=0.2, downloader=downloader)
    assert outcome.exit_status == 2


def test_a_download_wait_whose_timeout_runs_out_drops_a_started_jobs_images_not_started(
    tmp_path,
):
    """Only the downloads under way finish: a job of 4 images at 0.5 s each on one thread
    held a 0.3 s timeout for 2 s (10 images at the 30 s HTTP timeout: 5 minutes)."""

    def slow_fetch(url: str) -> bytes:
        time.sleep(0.5)
        return JPEG

    job = Job(job_id="b.1", state=JobState.COMPLETED, created_at=0.0, line=1,
              outputs=[f"https://cdn.example/{n}.jpeg" for n in range(4)])  # fmt: skip
    target = SweptTarget([WaitProgress(total=1, counts={"completed": 1})], size=0)
    target.completed_jobs = lambda: iter([job])  # type: ignore[method-assign]
    view, _ = plain_view()
    started = time.monotonic()
    with OutputDownloader(tmp_path, slow_fetch, threads=1) as downloader:
        outcome = watch(target, view, timeout_s=0.3, downloader=downloader)
    assert time.monotonic() - started < 1.2
    assert outcome.exit_status == 2 and outcome.saved is not None and outcome.saved.cut_short
    assert 0 < len(list(tmp_path.glob("*.jpg"))) < 4


def test_a_download_wait_fails_when_completed_jobs_records_are_past_their_retention(tmp_path):
    # Given a batch of 3 completed jobs, of which only 1 record is still there (2 expired)
    target = SweptTarget([WaitProgress(total=3, counts={"completed": 3})], size=1)
    view, _ = plain_view()
    # When its images are saved
    with OutputDownloader(tmp_path, lambda url: JPEG) as downloader:
        outcome = watch(target, view, downloader=downloader)
    # Then the wait does not say every image was saved: 2 jobs' images could not be
    assert len(list(tmp_path.glob("*.jpg"))) == 1
    assert outcome.exit_status == 1 and outcome.saved is not None
    assert any("past their retention" in failure for failure in outcome.saved.failures)

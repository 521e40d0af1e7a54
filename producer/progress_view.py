"""How a job or a batch under way is shown: a live bar on a terminal, plain lines elsewhere.

``segq wait`` and ``segq demo`` show the same thing. On a terminal (stderr is a TTY) a rich bar
redraws a few times a second; in a log, a CI job or a pipe, one plain line every
``plain_every_s`` and a last one at the end, so the log stays readable.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    SpinnerColumn,
    TextColumn,
)
from rich.progress import Progress as RichProgress

from producer.status_view import duration
from producer.terminal import people
from shared.job_model import JobState

PLAIN_EVERY_S = 5.0
BAR_WIDTH = 20


@dataclass(frozen=True)
class WaitProgress:
    """Where a job or a batch stands: jobs per state, and the rate and ETA when known."""

    total: int
    counts: Mapping[str, int]
    rate_per_s: float | None = None
    eta_s: float | None = None

    def count(self, state: JobState) -> int:
        return self.counts.get(state.value, 0)

    @property
    def done(self) -> int:
        return sum(self.count(s) for s in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED))

    @property
    def in_flight(self) -> int:
        """Jobs Segmind holds: submitted and waiting upstream, or running."""
        return self.count(JobState.SUBMITTED) + self.count(JobState.RUNNING)

    @property
    def is_terminal(self) -> bool:
        return self.done >= self.total


def describe(progress: WaitProgress, images_saved: int | None, compact: bool = False) -> str:
    """The figures of a line: the same words in the plain lines and the final report, fewer on
    the bar (whose counter already says how many jobs ended), so it fits 80 columns."""
    parts = [] if compact else [f"{progress.count(JobState.COMPLETED)} completed"]
    parts.append(f"{progress.count(JobState.FAILED)} failed")
    if progress.count(JobState.CANCELLED):
        parts.append(f"{progress.count(JobState.CANCELLED)} cancelled")
    parts.append(f"{progress.in_flight} in flight")
    if progress.rate_per_s:
        parts.append(f"{progress.rate_per_s:.1f}{'/s' if compact else ' jobs/s'}")
    if progress.eta_s is not None and not progress.is_terminal:
        parts.append(f"ETA {duration(progress.eta_s)}")
    if images_saved is not None:
        parts.append(f"{images_saved} saved" if compact else f"{images(images_saved)} saved")
    return ", ".join(parts)


def images(count: int) -> str:
    return f"{count} image{'s' * (count != 1)}"


class ProgressView:
    """Shows a ``WaitProgress`` again and again until the ``with`` block ends."""

    def __init__(
        self, label: str, console: Console | None = None, plain_every_s: float = PLAIN_EVERY_S
    ) -> None:
        self.label = label
        self.console = console or people()
        self.plain_every_s = plain_every_s
        self.live = self.console.is_terminal
        self._bar = RichProgress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=BAR_WIDTH), MofNCompleteColumn(),
            TextColumn("{task.fields[figures]}", markup=False), console=self.console,
        )  # fmt: skip
        self._task = self._bar.add_task(label, total=None, figures="starting")
        self._last_line_at: float | None = None
        self._last_line = ""

    def __enter__(self) -> ProgressView:
        if self.live:
            self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.live:
            self._bar.stop()
        elif self._last_line and exc_type is None:
            self._print_plain(self._last_line)

    def show(self, progress: WaitProgress, images_saved: int | None = None) -> None:
        if self.live:
            figures = describe(progress, images_saved, compact=True)
            self._bar.update(
                self._task, total=progress.total, completed=progress.done, figures=figures
            )
            return
        figures = describe(progress, images_saved)
        line = f"{self.label}: {progress.done}/{progress.total} ended, {figures}"
        now = time.monotonic()
        if self._last_line_at is None or now - self._last_line_at >= self.plain_every_s:
            self._print_plain(line)
            self._last_line_at = now
            line = ""
        self._last_line = line

    def note(self, line: str) -> None:
        """A line above the bar (or between the plain lines): something the figures miss."""
        self._print_plain(f"{self.label}: {line}")

    def _print_plain(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

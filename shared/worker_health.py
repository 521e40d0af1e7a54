"""A worker's health as a small JSON file it keeps fresh, read by `segq health` (probes).

Why a file and not `celery inspect ping` or a key in Redis: a probe runs every few seconds on
every pod, and a liveness probe that needs the broker restarts every worker whenever the broker
blips, which helps nothing. The file is local to the worker's host or container, costs no
network call, and says three things, each stamped by the part of the worker that proves it:

    written_at     the heartbeat thread wrote the file (the process is alive)
    consumer_at    Celery's consumer loop ran a timer tick (it is connected and consuming)
    dispatcher_at  the dispatcher finished a step (the job store's Redis answered)
    shutting_down  SIGTERM arrived: the worker finishes what it holds and takes nothing new

Liveness (`segq health`) asks only for a fresh ``written_at``. Readiness (`segq health
--ready`) also wants fresh consumer and dispatcher stamps and no shutdown under way, so a pod
that lost its broker or Redis is taken out of rotation, not killed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from shared.errors import ConfigurationError

HEARTBEAT_INTERVAL_S = 5.0
"""How often the worker rewrites the file and its consumer loop stamps itself."""

DEFAULT_MAX_AGE_S = 60.0
"""A stamp older than this fails a check: twelve missed heartbeats, not one slow one."""


@dataclass(frozen=True)
class HealthReport:
    """What one heartbeat wrote (epoch seconds; 0 for a part that has not stamped yet)."""

    pid: int
    hostname: str
    written_at: float
    consumer_at: float = 0.0
    dispatcher_at: float = 0.0
    shutting_down: bool = False

    def problems(self, now: float, max_age_s: float, ready: bool) -> list[str]:
        """Why the worker is not alive (or, with ``ready``, not ready); empty when it is."""
        found = _stale("heartbeat", self.written_at, now, max_age_s)
        if ready:
            found += _stale("consumer loop (broker)", self.consumer_at, now, max_age_s)
            found += _stale("dispatcher (job store)", self.dispatcher_at, now, max_age_s)
            if self.shutting_down:
                found.append("shutting down: finishing what it holds, taking nothing new")
        return found


def _stale(part: str, stamped_at: float, now: float, max_age_s: float) -> list[str]:
    if stamped_at <= 0:
        return [f"{part}: not yet"]
    age_s = now - stamped_at
    if age_s < -max_age_s:  # else a clock set back would keep a dead worker alive for as long
        return [f"{part}: stamped {-age_s:.0f}s in the future (was the clock changed?)"]
    # Not "age_s > max_age_s": a NaN stamp or --max-age-s nan made that False, a dead worker fresh
    return [] if age_s <= max_age_s else [f"{part}: last seen {age_s:.0f}s ago"]


_REPORT = TypeAdapter(HealthReport)
"""Reads a report checking each field's type: a hand-edited or foreign file is unreadable,
not a traceback in the probe."""


def write_report(path: Path, report: HealthReport) -> None:
    """Replaces the file atomically, so a probe never reads half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(asdict(report), file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_report(path: Path) -> HealthReport:
    """The last report; ``ConfigurationError`` when there is none or it cannot be read."""
    try:
        return _REPORT.validate_json(path.read_bytes())
    except FileNotFoundError:
        raise ConfigurationError(
            f"no worker health file at {path}: the worker has not started (or "
            "SEGQ_HEALTH_FILE differs between the worker and this check)"
        ) from None
    except ValidationError as exc:
        wrong = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}"
                          for e in exc.errors(include_url=False))  # fmt: skip
        raise ConfigurationError(f"unreadable worker health file {path}: {wrong}") from None
    except OSError as exc:
        raise ConfigurationError(f"unreadable worker health file {path}: {exc}") from exc


def check(path: Path, *, ready: bool, max_age_s: float, now: float | None = None) -> list[str]:
    """Problems of the worker whose file is at ``path`` (empty list: healthy)."""
    try:
        report = read_report(path)
    except ConfigurationError as exc:
        return [str(exc)]
    return report.problems(time.time() if now is None else now, max_age_s, ready)

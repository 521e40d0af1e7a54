"""Requests-per-window limits per API key, as a strict sliding window.

A request is admitted when fewer than ``limit`` requests were admitted in the last
``window_s`` seconds; refused requests do not count. That is the strictest reading of "R per
minute": no 60 s interval, however placed, ever holds more than R admitted requests, so a client
that never sees a 429 here would never see one from a fixed-window or token-bucket server either.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime


class SlidingWindowLimiter:
    """One window of admission times per (API key, kind); kinds are ``submit`` and ``poll``."""

    def __init__(self) -> None:
        self._admitted: dict[tuple[str, str], deque[float]] = {}

    def admit(self, key: str, kind: str, limit: int, window_s: float, now: float) -> float | None:
        """None when admitted (and counted); else when the oldest admission leaves the window.

        At that moment exactly one more request fits, which is what a reset time promises.
        """
        times = self._admitted.setdefault((key, kind), deque())
        while times and times[0] + window_s <= now:  # the same sum as the reset time
            times.popleft()
        if len(times) < limit:
            times.append(now)
            return None
        return times[0] + window_s

    def clear(self) -> None:
        self._admitted.clear()


def reset_header(reset_at: float) -> str:
    """``x-rate-limit-reset-at-utc``: ISO 8601 in UTC, to the second.

    Truncated like the real header is said to be, so it can read up to a second early; clients
    must add a margin (see http-notes.md). ``Retry-After`` rounds up instead.
    """
    moment = datetime.fromtimestamp(reset_at, UTC).replace(microsecond=0)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

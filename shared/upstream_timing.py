"""When to call Segmind again: retry backoff, 429 windows and poll timing, as pure functions.

Nothing here sleeps or reads a clock: callers pass ``now`` and a ``random.Random``, so every
rule is tested on its own (dramatiq's ``compute_backoff`` is the model).

- ``compute_backoff_s``: full-jitter exponential backoff for transient failures.
- ``retry_after_s``: the window a 429 names, from whichever header the answer carries.
- ``DurationEstimate`` and ``next_poll_delay_s``: poll a job near the moment it is expected to
  finish (learned from finished jobs), then at short intervals that grow with how late it is,
  instead of the official SDK's fixed 1-second loop.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

WHOLE_SECOND_MARGIN_S = 1.0
"""Added to an absolute reset time given to the second: it can be up to a second earlier than
the window's real end (http-notes), and a retry that comes too soon is told off again."""

FRACTION_MARGIN_S = 0.05
"""Added to a reset time given with sub-second precision (clock and transit skew only)."""

DELTA_MARGIN_S = 0.25
"""Added to a delay given in seconds (``Retry-After: 5``): it is counted from when the answer
left the server, not from when we read it."""

MAX_RETRY_AFTER_S = 86_400.0
"""A named window is capped at a day, so a garbled header cannot park the fleet for years."""

EPOCH_S_FLOOR = 1e9
"""``X-RateLimit-Reset`` values above this are epoch seconds (2001 on), below it a delay."""

EPOCH_MS_FLOOR = 1e12
"""... and above this, epoch milliseconds."""

CLOCK_SKEW_S = 2.0
"""When the answer's ``Date`` is further than this from our clock, an absolute reset time is
counted from the server's clock instead: a worker whose clock runs ahead would otherwise read
a window as already over and call again at once. Closer than this, our clock is the finer one
(``Date`` is given to the second)."""


def compute_backoff_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1): full jitter.

    Uniform in ``[0, min(cap_s, base_s * 2 ** (attempt - 1))]``: spreading retries over the
    whole window keeps a fleet that failed together from retrying together.
    """
    exponent = min(max(attempt - 1, 0), 64)
    return rng.uniform(0.0, min(cap_s, base_s * 2.0**exponent))


def retry_after_s(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait that a 429 answer names, with a margin; None if it names none.

    Headers are read in this order, the first usable one wins: ``Retry-After`` (delay in
    seconds or an HTTP date), ``x-rate-limit-reset-at-utc`` (ISO 8601, what Segmind is
    reported to send), ``X-RateLimit-Reset`` (epoch seconds or milliseconds, or a delay).
    ``now`` is epoch seconds when the answer arrived. A window already past gives 0; a
    negative delay is unusable.
    """
    lowered = {name.lower(): value.strip() for name, value in headers.items()}
    now = _server_now(lowered.get("date"), now)
    readers = (
        ("retry-after", _read_retry_after),
        ("x-rate-limit-reset-at-utc", _read_reset_at),
        ("x-ratelimit-reset", _read_ratelimit_reset),
    )
    for name, read in readers:
        for copy in _copies(lowered.get(name, "")):
            wait_s = read(copy, now)
            if wait_s is not None and math.isfinite(wait_s):
                return min(MAX_RETRY_AFTER_S, max(0.0, wait_s))
    return None


def _copies(value: str) -> list[str]:
    """A header's value, then, for one sent twice (a CDN's copy and the origin's, which
    httpx joins: ``30, 30``), its first copy: up to the first comma, or to the second (an
    HTTP date holds one)."""
    parts = value.split(",")
    if len(parts) == 1:
        return [value] if value else []
    return [value, parts[0].strip(), ",".join(parts[:2]).strip()]


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _until(moment_s: float, now: float, whole_seconds: bool) -> float:
    margin = WHOLE_SECOND_MARGIN_S if whole_seconds else FRACTION_MARGIN_S
    return moment_s - now + margin


def _read_retry_after(value: str, now: float) -> float | None:
    delay_s = _number(value)
    if delay_s is not None:
        return _delay(delay_s)
    moment = _http_date(value)
    return None if moment is None else _until(moment.timestamp(), now, whole_seconds=True)


def _server_now(date: str | None, now: float) -> float:
    """``now`` on the server's clock when its ``Date`` disagrees by more than the skew."""
    moment = _http_date(date) if date else None
    if moment is None or abs(moment.timestamp() - now) <= CLOCK_SKEW_S:
        return now
    return moment.timestamp()


def _http_date(value: str) -> datetime | None:
    """The moment an HTTP date names, or None. ``email.utils`` gives a date without its zone
    when it does not know the zone's name (CET, JST, UTC+1): read as UTC, such a date would
    be hours off, so it is unusable and the next header (or the default hold) decides. A date
    without a zone is UTC only in the forms that mean it: asctime (RFC 9110's third form,
    ending in the year) and ``-0000``."""
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo:
        return moment
    last = value.split()[-1]
    return moment.replace(tzinfo=UTC) if last.isdigit() or last == "-0000" else None


def _read_reset_at(value: str, now: float) -> float | None:
    """ISO 8601 (``2025-06-15T15:06:50Z``, or with a space and a trailing ``UTC``, in either
    case), an HTTP date, or an epoch number: Segmind's exact format is not documented."""
    if _number(value) is not None:
        return _read_ratelimit_reset(value, now)
    iso = value.upper().removesuffix("UTC").removesuffix("GMT").strip()
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        moment = _http_date(value)
        if moment is None:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _until(moment.timestamp(), now, whole_seconds=moment.microsecond == 0)


def _read_ratelimit_reset(value: str, now: float) -> float | None:
    number = _number(value)
    if number is None:
        return None
    whole = number.is_integer()
    if number >= EPOCH_MS_FLOOR:
        return _until(number / 1000.0, now, whole_seconds=False)
    if number >= EPOCH_S_FLOOR:
        return _until(number, now, whole_seconds=whole)
    return _delay(number)


def _delay(delay_s: float) -> float | None:
    """A delay a header names, with its margin; a negative one is no delay at all (a broken
    proxy's, say) and leaves the answer's other headers to say the window."""
    return None if delay_s < 0 else delay_s + DELTA_MARGIN_S


@dataclass
class DurationEstimate:
    """How long jobs take upstream, learned from finished jobs (not thread-safe: lock it).

    ``mean_s`` is an exponentially weighted moving average of observed durations and
    ``deviation_s`` one of their absolute deviation from it (robust to the odd slow job). The
    first ``1 / alpha`` observations are weighted equally, so a fresh worker learns in a few
    jobs instead of dragging its prior along; after that, old jobs fade with weight ``1 - alpha``.
    The prior (2 s +- 1 s) suits a 4-step Turbo model until the first job finishes.
    """

    mean_s: float = 2.0
    deviation_s: float = 1.0
    alpha: float = 0.1
    count: int = 0

    def observe(self, seconds: float) -> None:
        """Learns from one finished job; values that are not finite or are negative are ignored."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        if self.count == 0:
            self.mean_s, self.deviation_s = seconds, seconds / 4
        else:
            weight = max(self.alpha, 1.0 / (self.count + 1))
            error = seconds - self.mean_s
            self.mean_s += weight * error
            self.deviation_s += weight * (abs(error) - self.deviation_s)
        self.count += 1


FIRST_POLL_LEAD = 0.5
"""The first poll goes this many deviations before the expected end: about half the jobs are
then done at their first poll, the rest are caught by the short steps that follow."""

STEP_S = 0.2
MAX_STEP_S = 0.3
"""The gap between polls while a job is within its usual spread: a quarter deviation, kept in
``[STEP_S, MAX_STEP_S]``, so the median delay between a job finishing and a poll seeing it
stays near half a step. Simulated over uniform, log-normal, bimodal and shifting durations
(0.5 s to 30 s): median delay 130-300 ms, and 20-80% fewer polls than a 1-second loop except
where the spread is as wide as the mean (up to ~30% more polls there: the price of the delay)."""

GRACE_DEVIATIONS = 2.0
STEP_GROWTH = 0.15
"""Past ``GRACE_DEVIATIONS`` beyond its first poll time, each second a job runs late adds this
many seconds to the gap: a job far slower than expected (a long queue upstream) costs a few
more polls, not one per step."""


def next_poll_delay_s(
    elapsed_s: float,
    estimate: DurationEstimate,
    polls_so_far: int,
    min_s: float,
    max_s: float,
) -> float:
    """Seconds from now until a job submitted ``elapsed_s`` ago should be polled again.

    Before the first poll is due (``mean - FIRST_POLL_LEAD * deviation``), the job waits for
    it (in gaps of at most ``max_s``). After that, the gap is one step, growing by
    ``STEP_GROWTH`` per second of lateness beyond the grace. The result is always within
    ``[min_s, max_s]``. ``polls_so_far`` only matters for a job never polled whose first poll
    time has passed (a resumed job): it is polled after ``min_s``.
    """
    deviation_s = estimate.deviation_s
    first_poll_at_s = max(min_s, estimate.mean_s - FIRST_POLL_LEAD * deviation_s)
    late_s = elapsed_s - first_poll_at_s
    if late_s < 0:
        delay_s = -late_s
    elif polls_so_far == 0:
        delay_s = min_s
    else:
        step_s = min(MAX_STEP_S, max(STEP_S, deviation_s / 4))
        delay_s = step_s + STEP_GROWTH * max(0.0, late_s - GRACE_DEVIATIONS * deviation_s)
    return min(max_s, max(min_s, delay_s))

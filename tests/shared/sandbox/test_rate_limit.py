"""The sliding window is strict: no window of its length, wherever placed, admits more than
the limit, and the reset time is when exactly one more request fits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.sandbox.rate_limit import SlidingWindowLimiter, reset_header

WINDOW_S = 60.0


@given(
    limit=st.integers(1, 5),
    gaps=st.lists(st.floats(0, 40, allow_nan=False), min_size=1, max_size=60),
)
def test_no_window_ever_holds_more_than_the_limit(limit: int, gaps: list[float]) -> None:
    limiter = SlidingWindowLimiter()
    now, admitted = 0.0, []
    for gap in gaps:
        now += gap
        reset_at = limiter.admit("key", "submit", limit, WINDOW_S, now)
        if reset_at is None:
            admitted.append(now)
        else:
            assert now < reset_at <= now + WINDOW_S
            assert limiter.admit("key", "submit", limit, WINDOW_S, reset_at) is None
            admitted.append(reset_at)
            now = reset_at

    for start in admitted:
        assert sum(start <= t < start + WINDOW_S for t in admitted) <= limit


def test_a_fixed_minute_never_sees_more_than_the_limit_either() -> None:
    limiter = SlidingWindowLimiter()
    times = [t / 10 for t in range(0, 3000)]  # a request every 100 ms for 5 minutes
    admitted = [t for t in times if limiter.admit("key", "poll", 7, WINDOW_S, t) is None]

    per_minute = [sum(int(t // 60) == minute for t in admitted) for minute in range(5)]

    assert per_minute == [7, 7, 7, 7, 7]


def test_keys_and_kinds_have_separate_windows() -> None:
    limiter = SlidingWindowLimiter()
    assert limiter.admit("a", "submit", 1, WINDOW_S, 0.0) is None
    assert limiter.admit("a", "submit", 1, WINDOW_S, 1.0) == WINDOW_S
    assert limiter.admit("a", "poll", 1, WINDOW_S, 1.0) is None
    assert limiter.admit("b", "submit", 1, WINDOW_S, 1.0) is None


def test_reset_header_is_utc_iso_to_the_second() -> None:
    assert reset_header(1795516205.9) == "2026-11-24T10:30:05Z"

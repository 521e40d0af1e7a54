"""Backoff, 429 windows and poll timing: the pure functions that decide when to call again."""

from __future__ import annotations

import math
import random
import statistics
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.upstream_timing import (
    DELTA_MARGIN_S,
    FRACTION_MARGIN_S,
    MAX_RETRY_AFTER_S,
    MAX_STEP_S,
    STEP_S,
    WHOLE_SECOND_MARGIN_S,
    DurationEstimate,
    compute_backoff_s,
    next_poll_delay_s,
    retry_after_s,
)

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC).timestamp()


# --- backoff ------------------------------------------------------------------------------


@given(
    attempt=st.integers(min_value=-5, max_value=10_000),
    base_s=st.floats(min_value=0.01, max_value=10),
    cap_s=st.floats(min_value=0.01, max_value=600),
    seed=st.integers(0, 2**32),
)
def test_backoff_stays_within_zero_and_the_capped_window(attempt, base_s, cap_s, seed):
    delay_s = compute_backoff_s(attempt, base_s, cap_s, random.Random(seed))
    window_s = min(cap_s, base_s * 2 ** min(max(attempt - 1, 0), 64))
    assert 0.0 <= delay_s <= window_s


def test_backoff_window_doubles_per_attempt_until_the_cap():
    rng = random.Random(7)
    means = [
        statistics.mean(compute_backoff_s(attempt, 1.0, 16.0, rng) for _ in range(4000))
        for attempt in range(1, 8)
    ]
    # full jitter: the mean is half the window 1, 2, 4, 8, 16, 16, 16
    for mean, window in zip(means, [1, 2, 4, 8, 16, 16, 16], strict=True):
        assert mean == pytest.approx(window / 2, rel=0.06)


def test_backoff_jitter_spreads_over_the_whole_window():
    rng = random.Random(3)
    delays = [compute_backoff_s(4, 1.0, 60.0, rng) for _ in range(2000)]
    assert min(delays) < 0.4 and max(delays) > 7.6
    assert len({round(d, 3) for d in delays}) > 1500


# --- 429 windows --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected_s"),
    [
        ({"Retry-After": "7"}, 7 + DELTA_MARGIN_S),
        ({"retry-after": "0.5"}, 0.5 + DELTA_MARGIN_S),
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)},
         30 + WHOLE_SECOND_MARGIN_S),
        ({"x-rate-limit-reset-at-utc": "2026-11-24T12:00:05Z"}, 5 + WHOLE_SECOND_MARGIN_S),
        ({"X-Rate-Limit-Reset-At-UTC": "2026-11-24T12:00:05+00:00"}, 5 + WHOLE_SECOND_MARGIN_S),
        ({"x-rate-limit-reset-at-utc": "2026-11-24T12:00:05"}, 5 + WHOLE_SECOND_MARGIN_S),
        ({"x-rate-limit-reset-at-utc": "2026-11-24T12:00:05.250Z"}, 5.25 + FRACTION_MARGIN_S),
        ({"x-rate-limit-reset-at-utc": "2026-11-24T13:00:05+01:00"}, 5 + WHOLE_SECOND_MARGIN_S),
        ({"x-rate-limit-reset-at-utc": "2026-11-24 12:00:05 UTC"}, 5 + WHOLE_SECOND_MARGIN_S),
        ({"x-rate-limit-reset-at-utc": "Tue, 24 Nov 2026 12:00:05 GMT"}, 5 + WHOLE_SECOND_MARGIN_S),
        ({"Retry-After": "Tue Nov 24 12:00:05 2026"}, 5 + WHOLE_SECOND_MARGIN_S),  # asctime: GMT
        ({"Retry-After": "Tue, 24 Nov 2026 12:00:05 -0000"}, 5 + WHOLE_SECOND_MARGIN_S),
        ({"X-RateLimit-Reset": str(int(NOW) + 12)}, 12 + WHOLE_SECOND_MARGIN_S),
        ({"X-RateLimit-Reset": str(int(NOW * 1000) + 2500)}, 2.5 + FRACTION_MARGIN_S),
        ({"X-RateLimit-Reset": "20"}, 20 + DELTA_MARGIN_S),
        # sent twice (a CDN's copy and the origin's), joined by httpx
        ({"Retry-After": "30, 30"}, 30 + DELTA_MARGIN_S),
        ({"Retry-After": "Tue, 24 Nov 2026 12:00:05 GMT, Tue, 24 Nov 2026 12:00:05 GMT"},
         5 + WHOLE_SECOND_MARGIN_S),
        ({"x-rate-limit-reset-at-utc": "2026-11-24T12:00:05Z, 2026-11-24T12:00:05Z"},
         5 + WHOLE_SECOND_MARGIN_S),
    ],
)  # fmt: skip
def test_429_window_is_read_from_each_header_form(headers, expected_s):
    assert retry_after_s(headers, NOW) == pytest.approx(expected_s)


def test_an_absolute_window_counts_from_the_servers_clock_when_ours_is_off():
    reset = {"x-rate-limit-reset-at-utc": "2026-11-24T12:00:05Z"}
    server_date = format_datetime(datetime.fromtimestamp(NOW, UTC), usegmt=True)
    ahead = NOW + 3  # our clock 3 s ahead: the window would look nearly over
    assert retry_after_s({**reset, "Date": server_date}, ahead) == pytest.approx(
        5 + WHOLE_SECOND_MARGIN_S
    )
    assert retry_after_s(reset, ahead) == pytest.approx(2 + WHOLE_SECOND_MARGIN_S)
    # within the skew our own clock, finer than Date's whole second, is used
    assert retry_after_s({**reset, "Date": server_date}, NOW + 0.5) == pytest.approx(
        4.5 + WHOLE_SECOND_MARGIN_S
    )
    # a delay is a delay, whatever the clocks say
    assert retry_after_s({"Retry-After": "7", "Date": server_date}, ahead) == pytest.approx(
        7 + DELTA_MARGIN_S
    )


def test_429_window_prefers_retry_after_then_reset_at_then_ratelimit_reset():
    both = {"X-RateLimit-Reset": "50", "x-rate-limit-reset-at-utc": "2026-11-24T12:00:09Z"}
    assert retry_after_s(both, NOW) == pytest.approx(9 + WHOLE_SECOND_MARGIN_S)
    assert retry_after_s({**both, "Retry-After": "3"}, NOW) == pytest.approx(3 + DELTA_MARGIN_S)


@pytest.mark.parametrize("unusable", ["soon", "-30"])
def test_429_window_skips_an_unreadable_header_for_the_next_one(unusable):
    # A negative delay is no window either: it must not beat a good reset header to 0.
    headers = {"Retry-After": unusable, "X-RateLimit-Reset": "4"}
    assert retry_after_s(headers, NOW) == pytest.approx(4 + DELTA_MARGIN_S)
    assert retry_after_s({"Retry-After": "2", "X-RateLimit-Reset": "-5"}, NOW) == pytest.approx(
        2 + DELTA_MARGIN_S
    )


def test_429_window_in_the_past_is_zero_and_a_huge_one_is_capped():
    assert retry_after_s({"x-rate-limit-reset-at-utc": "2020-01-01T00:00:00Z"}, NOW) == 0.0
    assert retry_after_s({"Retry-After": "1e12"}, NOW) == MAX_RETRY_AFTER_S


@pytest.mark.parametrize(
    "headers",
    [{}, {"Retry-After": ""}, {"Retry-After": "nan"}, {"Retry-After": "inf"},
     {"Retry-After": "-3"}, {"X-RateLimit-Reset": "-3"},
     {"x-rate-limit-reset-at-utc": "tomorrow"}, {"X-RateLimit-Reset": "later"},
     {"Content-Type": "application/json"}],
)  # fmt: skip
def test_429_without_a_readable_window_names_none(headers):
    assert retry_after_s(headers, NOW) is None


@given(
    st.dictionaries(
        st.sampled_from(["Retry-After", "x-rate-limit-reset-at-utc", "X-RateLimit-Reset", "Other"]),
        st.text(max_size=60),
    )
)
def test_429_window_from_any_header_text_is_none_or_a_bounded_number(headers):
    wait_s = retry_after_s(headers, NOW)
    assert wait_s is None or 0.0 <= wait_s <= MAX_RETRY_AFTER_S


# --- duration estimate and poll timing ----------------------------------------------------


def test_estimate_learns_the_first_job_at_once_then_moves_smoothly():
    estimate = DurationEstimate()
    estimate.observe(8.0)
    assert (estimate.mean_s, estimate.deviation_s, estimate.count) == (8.0, 2.0, 1)
    for _ in range(200):
        estimate.observe(3.0)
    assert estimate.mean_s == pytest.approx(3.0, abs=0.01)
    assert estimate.deviation_s < 0.05


def test_estimate_tracks_mean_and_spread_of_noisy_durations():
    rng = random.Random(11)
    estimate = DurationEstimate()
    for _ in range(500):
        estimate.observe(rng.uniform(2.0, 4.0))
    assert estimate.mean_s == pytest.approx(3.0, abs=0.3)
    assert estimate.deviation_s == pytest.approx(0.5, abs=0.2)  # mean |x - 3| of U(2, 4)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_estimate_ignores_durations_that_cannot_be_real(bad):
    estimate = DurationEstimate()
    estimate.observe(bad)
    assert (estimate.mean_s, estimate.count) == (DurationEstimate().mean_s, 0)


@given(
    elapsed_s=st.floats(min_value=0, max_value=7200),
    mean_s=st.floats(min_value=0, max_value=3600),
    deviation_s=st.floats(min_value=0, max_value=600),
    polls=st.integers(0, 10_000),
    min_s=st.floats(min_value=0.01, max_value=1),
    max_s=st.floats(min_value=1, max_value=300),
)
def test_poll_delay_is_always_within_min_and_max(elapsed_s, mean_s, deviation_s, polls, min_s,
                                                  max_s):  # fmt: skip
    estimate = DurationEstimate(mean_s=mean_s, deviation_s=deviation_s)
    assert min_s <= next_poll_delay_s(elapsed_s, estimate, polls, min_s, max_s) <= max_s


def test_first_poll_is_placed_just_before_the_expected_end():
    estimate = DurationEstimate(mean_s=10.0, deviation_s=2.0)
    assert next_poll_delay_s(0.0, estimate, 0, 0.1, 15.0) == pytest.approx(9.0)
    assert next_poll_delay_s(4.0, estimate, 0, 0.1, 15.0) == pytest.approx(5.0)


def test_a_long_wait_for_the_first_poll_is_split_into_gaps_of_max():
    estimate = DurationEstimate(mean_s=40.0, deviation_s=2.0)
    assert next_poll_delay_s(0.0, estimate, 0, 0.1, 15.0) == 15.0
    assert next_poll_delay_s(30.0, estimate, 1, 0.1, 15.0) == pytest.approx(9.0)


def test_after_the_first_poll_gaps_are_short_within_the_spread_then_grow_slowly():
    estimate = DurationEstimate(mean_s=3.0, deviation_s=0.5)  # first poll at 2.75 s
    lateness = (0, 0.9, 2, 5, 20, 200)
    gaps = [next_poll_delay_s(2.75 + late, estimate, 3, 0.1, 15.0) for late in lateness]
    assert gaps[:2] == [pytest.approx(STEP_S)] * 2
    assert gaps == sorted(gaps)
    assert gaps[2] < 0.5 and gaps[3] < 1.0 and gaps[-1] == 15.0


def test_the_step_widens_with_the_spread_but_stays_short():
    narrow = next_poll_delay_s(10.0, DurationEstimate(mean_s=10.0, deviation_s=0.1), 2, 0.1, 15)
    wide = next_poll_delay_s(10.0, DurationEstimate(mean_s=10.0, deviation_s=8.0), 2, 0.1, 15)
    assert narrow == pytest.approx(STEP_S)
    assert wide == pytest.approx(MAX_STEP_S)


def test_a_resumed_job_never_polled_and_already_due_is_polled_at_once():
    estimate = DurationEstimate(mean_s=2.0, deviation_s=0.5)
    assert next_poll_delay_s(60.0, estimate, 0, 0.1, 15.0) == 0.1


def _simulate(durations, estimate):
    """(polls per job, median seconds between a job finishing and the poll that sees it)."""
    polls, delays = [], []
    for duration_s in durations:
        elapsed_s, count = 0.0, 0
        while elapsed_s < duration_s:
            elapsed_s += next_poll_delay_s(elapsed_s, estimate, count, 0.1, 15.0)
            count += 1
        polls.append(count)
        delays.append(elapsed_s - duration_s)
        estimate.observe(duration_s)
    return statistics.mean(polls), statistics.median(delays)


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 1000), mean_s=st.sampled_from([0.8, 2.0, 5.0, 30.0]))
def test_jobs_need_fewer_polls_than_a_1s_loop_and_are_seen_within_300ms(seed, mean_s):
    rng = random.Random(seed)
    durations = [mean_s * rng.uniform(0.75, 1.25) for _ in range(400)]
    polls, median_delay_s = _simulate(durations, DurationEstimate())
    sdk_polls = statistics.mean(math.ceil(d) + 1 for d in durations)  # polls at 0, 1, 2, ...
    assert polls < sdk_polls
    assert median_delay_s < 0.3

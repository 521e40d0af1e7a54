"""One budget for the fleet, against the sandbox's rate limits and account faults (issue 5).

Real worker processes share one Redis; the sandbox counts what really reached it (its truth),
so each test checks what Segmind would have seen, not what the workers believe they did.
Windows are scaled down (10 s instead of a minute) so a test runs in well under a minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shared import redis_keys
from shared.job_model import JobState
from shared.settings import Settings
from tests.support.fleet import Fleet, wait_until

pytestmark = pytest.mark.integration

WINDOW_S = 15.0
LIMIT = 60
"""The sandbox admits 60 submits per 15 s window: 240 a minute in segq's terms. Not 10 s: the
reset time Segmind names is whole seconds, so the fleet allows up to a second of margin, which
in a 10 s window is a tenth of the budget (the learned rate then sat right at the 0.85 bound
and a loaded CI run fell under it); bench_rate_limits uses 15 s for the same reason."""
CANAL_JOBS = 150
"""Two and a half windows' worth."""
QUARRY_JOBS = 195
"""More than three windows' worth."""
LIMIT_PER_MIN = LIMIT * 60 / WINDOW_S
SAFETY = 1 - (1 - Settings.model_fields["rate_safety"].default) * 60 / WINDOW_S
"""The default safety (0.98) leaves 1.2 s of Segmind's minute window for the time between the
dispatcher spending a slot and the call arriving (the broker, a busy worker); here the same
1.2 s of a 15 s window: 0.92. At 0.98 (0.3 s, less the limiter's 0.1 s tolerance) a loaded CI
run once drew a 429."""
RATE_LIMITED = {"submit_rpm": LIMIT, "rate_window_s": WINDOW_S}
WORKERS = 4
CONCURRENCY = 4
PAUSE_S = 1.0


def start_workers(fleet: Fleet, count: int = WORKERS) -> None:
    for _ in range(count):
        fleet.start_worker(concurrency=CONCURRENCY)


def totals(fleet: Fleet) -> dict[str, Any]:
    return fleet.sandbox.truth(with_requests=False)["totals"]


def accepted_at(fleet: Fleet) -> list[float]:
    """When the sandbox accepted each submit, in order."""
    return sorted(r["submitted_at"] for r in fleet.sandbox.truth()["requests"].values())


def share_of_limit(times: list[float]) -> float:
    """Submits accepted per window between the first and the last, as a share of the limit."""
    per_window = (len(times) - 1) / (times[-1] - times[0]) * WINDOW_S
    return per_window / LIMIT


def fleet_state(fleet: Fleet) -> dict[str, str]:
    return fleet.store.redis.hgetall(redis_keys.FLEET)


@pytest.mark.timeout(240)
def test_four_workers_told_the_true_limit_use_all_of_it_without_a_429(make_fleet):
    # Given 4 worker processes configured with the account's true limit
    fleet = make_fleet(
        sandbox=RATE_LIMITED,
        SEGQ_SUBMIT_RATE_LIMIT=str(LIMIT_PER_MIN),
        SEGQ_RATE_SAFETY=str(SAFETY),
    )
    start_workers(fleet)
    # When two and a half windows' worth of jobs arrive at once
    ids = fleet.add({"prompt": f"a canal {n}"} for n in range(CANAL_JOBS))
    jobs = fleet.wait_all(ids, timeout_s=120)
    # Then all completed, paced at the limit (less the safety margin), never told off
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert totals(fleet)["rate_limited"]["submit"] == 0
    assert share_of_limit(accepted_at(fleet)) >= 0.9
    assert sorted(fleet.submits_per_request().values()) == [1] * CANAL_JOBS


@pytest.mark.timeout(240)
def test_four_workers_not_told_the_limit_learn_it_from_the_first_429s(make_fleet):
    # Given 4 worker processes that do not know the limit
    fleet = make_fleet(sandbox=RATE_LIMITED)
    start_workers(fleet)
    # When more than three windows' worth of jobs arrive at once
    ids = fleet.add({"prompt": f"a quarry {n}"} for n in range(QUARRY_JOBS))
    learned = wait_until(lambda: fleet.store.redis.keys("segq:rate:*:submit"), "a 429", 30)
    budget = fleet.store.redis.hgetall(learned[0])
    time.sleep(max(0.0, float(budget["hold_until"]) - time.time()) + 0.5)
    first_window_429s = totals(fleet)["rate_limited"]["submit"]
    jobs = fleet.wait_all(ids, timeout_s=120)
    # Then the first window's burst drew a few 429s (no more than the calls in flight) ...
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert 1 <= first_window_429s <= WORKERS * CONCURRENCY
    # ... after which the fleet held off together and used most of the budget, told off
    # twice at most
    assert totals(fleet)["rate_limited"]["submit"] - first_window_429s <= 2
    after_hold = [t for t in accepted_at(fleet) if t >= float(budget["hold_until"]) - 1.0]
    assert share_of_limit(after_hold) >= 0.85
    learned_per_min = float(fleet.store.redis.hget(learned[0], "learned"))
    assert 0.85 * LIMIT_PER_MIN <= learned_per_min <= LIMIT_PER_MIN
    assert [job.attempts for job in jobs] == [0] * QUARRY_JOBS


def test_running_out_of_credits_pauses_the_fleet_until_the_account_is_topped_up(make_fleet):
    # Given credits for 10 images, 25 jobs, and account pauses probed every second
    fleet = make_fleet(
        sandbox={"credits": 0.10, "cost_per_image": 0.01},
        SEGQ_ACCOUNT_PAUSE_SECONDS=str(PAUSE_S),
        SEGQ_SUBMIT_RATE_LIMIT="300",
    )
    start_workers(fleet, 2)
    added_at = time.time()
    ids = fleet.add({"prompt": f"a glacier {n}"} for n in range(25))
    # When the credits run out, the fleet pauses and says why and since when
    wait_until(lambda: fleet_state(fleet).get("paused"), "the fleet paused", 30, fleet.workers)
    seen_at = time.time()
    refused_at_pause = totals(fleet)["refused"].get("406", 0)
    state = fleet_state(fleet)
    assert state["reason"].startswith("406: Insufficient credits")
    paused_at = float(state["since"])
    assert added_at <= paused_at <= seen_at
    time.sleep(3.5)
    # ... and the jobs not yet submitted wait queued, none failed
    waiting = [job for job in fleet.store.get_jobs(ids) if job.request_id is None]
    assert waiting and {job.state for job in waiting} == {JobState.QUEUED}
    refused_in_pause = totals(fleet)["refused"].get("406", 0) - refused_at_pause
    fleet.sandbox.set_faults(credits=100.0)
    topped_up_at = time.time()
    jobs = fleet.wait_all(ids, timeout_s=60)
    # Then every job completed once, and during the pause only the probes reached Segmind
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert [job.attempts for job in jobs] == [0] * 25
    assert sorted(fleet.submits_per_request().values()) == [1] * 25
    assert 1 <= refused_at_pause <= 3  # the submits under way when the balance hit zero
    assert 1 <= refused_in_pause <= (topped_up_at - paused_at) / PAUSE_S + 1
    assert "paused" not in fleet_state(fleet)
    assert any("fleet paused" in worker.output(200_000) for worker in fleet.workers)


def test_a_401_pauses_the_fleet_and_it_resumes_by_itself_once_the_key_is_valid(make_fleet):
    # Given a sandbox that does not know our key yet
    fleet = make_fleet(
        sandbox={"api_keys": ["SG_some_other_account_key_98765"]},
        SEGQ_ACCOUNT_PAUSE_SECONDS=str(PAUSE_S),
    )
    start_workers(fleet, 2)
    ids = fleet.add({"prompt": f"a harbour {n}"} for n in range(12))
    # When the first submits are refused, the fleet pauses
    wait_until(lambda: fleet_state(fleet).get("paused"), "the fleet paused", 30, fleet.workers)
    state = fleet_state(fleet)
    assert state["reason"].startswith("401: Unauthorized")
    paused_at = float(state["since"])
    # the calls under way when it paused are answered (on a loaded machine, after the pause
    # was seen) before the first probe, due a whole PAUSE_S after it
    time.sleep(max(0.0, paused_at + PAUSE_S / 2 - time.time()))
    refused_at_pause = totals(fleet)["refused"]["401"]
    time.sleep(2.5)
    assert {job.state for job in fleet.store.get_jobs(ids)} == {JobState.QUEUED}
    # Then once the key is valid, a probe finds out and every job completes
    fleet.sandbox.set_faults(api_keys=[fleet.env()["SEGMIND_API_KEY"]])
    fixed_at = time.time()
    jobs = fleet.wait_all(ids, timeout_s=60)
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert [job.attempts for job in jobs] == [0] * 12
    assert refused_at_pause <= 2 * CONCURRENCY  # only calls already under way
    # A probe every PAUSE_S from the pause's start (the store's clock, not when this test
    # saw it), plus at most one call that was under way when it began
    probes = totals(fleet)["refused"]["401"] - refused_at_pause
    assert 1 <= probes <= (fixed_at - paused_at) / PAUSE_S + 1
    assert "paused" not in fleet_state(fleet)


def test_pause_and_resume_by_hand_stop_and_restart_submits_fleet_wide(make_fleet):
    # Given a paused fleet of two workers
    fleet = make_fleet(SEGQ_SUBMIT_RATE_LIMIT="300")
    start_workers(fleet, 2)
    fleet.store.pause_fleet("maintenance window")
    ids = fleet.add({"prompt": f"a windmill {n}"} for n in range(20))
    time.sleep(1.5)
    # Then nothing reached Segmind; the jobs wait, and the fleet says why
    assert totals(fleet)["submits"] == 0
    assert {job.state for job in fleet.store.get_jobs(ids)} == {JobState.QUEUED}
    assert (fleet_state(fleet)["reason"], fleet_state(fleet)["manual"]) == (
        "maintenance window",
        "1",
    )
    # When resumed, submits flow; paused again mid-batch, they stop (one may be under way)
    fleet.store.resume_fleet()
    wait_until(lambda: totals(fleet)["submits"] >= 5, "5 submits", 30, fleet.workers)
    fleet.store.pause_fleet("maintenance window")
    submitted = totals(fleet)["submits"]
    time.sleep(1.5)
    assert totals(fleet)["submits"] <= submitted + 1
    assert totals(fleet)["submits"] < 20
    # Then resumed for good, every job completes
    fleet.store.resume_fleet()
    jobs = fleet.wait_all(ids, timeout_s=60)
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert sorted(fleet.submits_per_request().values()) == [1] * 20


REJECTED_MARKER = "[rejected-parameter]"
REJECTION = "Invalid value for parameter 'sampler'"
"""Stands in for the 406 Segmind answers, in plain text, for a parameter it refuses before the
model runs (its wording is not documented; any text not about credits or spending is job-level)."""


class RejectingFront:
    """A loopback HTTP front for the sandbox: submits whose body holds ``REJECTED_MARKER`` are
    refused with a job-level 406; every other call is passed through unchanged."""

    def __init__(self, upstream: str) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _front_handler(upstream))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RejectingFront:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "content-encoding", "keep-alive"}


def _front_handler(upstream: str) -> type[BaseHTTPRequestHandler]:
    class Front(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._forward(b"")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if REJECTED_MARKER.encode() in body:
                self._answer(406, REJECTION.encode(), {"Content-Type": "text/plain"})
            else:
                self._forward(body)

        def _forward(self, body: bytes) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers.pop("Host", None)
            reply = httpx.request(
                self.command, upstream + self.path, content=body, headers=headers, timeout=30
            )
            passed = {k: v for k, v in reply.headers.items() if k.lower() not in HOP_BY_HOP}
            self._answer(reply.status_code, reply.content, passed)

        def _answer(self, status: int, content: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args: object) -> None:
            """Quiet: the workers' logs tell the story."""

    return Front


@pytest.fixture
def rejecting_fleet(make_fleet) -> Iterator[Fleet]:
    fleet = make_fleet()
    with RejectingFront(fleet.sandbox.url) as front:
        fleet.start_worker(concurrency=CONCURRENCY, SEGMIND_BASE_URL=front.url)
        yield fleet
        fleet.stop()


def test_a_job_level_406_fails_only_its_job_and_never_pauses_the_fleet(rejecting_fleet):
    fleet = rejecting_fleet
    prompts = [f"a bridge {n}" for n in range(5)] + [f"a tunnel {REJECTED_MARKER}"]
    jobs = {job.params["prompt"]: job for job in fleet.wait_all(fleet.add(
        {"prompt": p} for p in prompts), timeout_s=60)}  # fmt: skip
    rejected = jobs.pop(prompts[-1])
    assert rejected.state is JobState.FAILED
    assert (rejected.error.kind, rejected.error.http_status) == ("rejected", 406)
    assert rejected.error.detail == REJECTION
    assert {job.state for job in jobs.values()} == {JobState.COMPLETED}
    assert "paused" not in fleet_state(fleet)
    assert fleet.submits_per_request() == dict.fromkeys(prompts[:-1], 1)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = most = 0
    for _, step in edges:
        open_now += step
        most = max(most, open_now)
    return most


def test_the_in_flight_cap_holds_across_every_worker(make_fleet):
    # Given jobs of about a second upstream, room for 32 at once, and a cap of 3 in flight
    fleet = make_fleet(sandbox={"time_scale": 0.4, "gpus": 32}, SEGQ_MAX_IN_FLIGHT="3")
    start_workers(fleet)
    ids = fleet.add({"prompt": f"a lighthouse {n}"} for n in range(15))
    jobs = fleet.wait_all(ids, timeout_s=90)
    # Then never more than 3 ran upstream at once, and the cap was used
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    requests = fleet.sandbox.truth()["requests"].values()
    assert max_overlap([(r["submitted_at"], r["completed_at"]) for r in requests]) == 3

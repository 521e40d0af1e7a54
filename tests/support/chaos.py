"""The chaos scenario: a batch on a faulty sandbox while workers are SIGKILLed, Redis restarts
and (on RabbitMQ) every broker connection is closed.

A round enqueues ``jobs_per_round`` jobs and fires its events in order, each once enough of the
round's jobs have ended (``at_ended``) and long enough after the event before it (``gap_s``), so
every event strikes while work is under way, whatever the machine's speed. The CI size is one
round; a soak (``--soak MINUTES``) repeats rounds until its time is up.

What the scenario did is counted in ``ChaosTally``; ``tests/support/chaos_verdict.py`` compares
the jobs with the sandbox's ground truth afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from shared.errors import StoreError
from shared.job_model import TERMINAL_STATES
from shared.local_redis import LocalRedis
from tests.support.brokers import close_rabbitmq_connections
from tests.support.fleet import Fleet, Process

WORKERS = 2
CONCURRENCY = 16
OUTAGE_S = 30.0
"""The upstream outage lasts this long in real time, whatever the sandbox's time scale."""
RATE_BURST_S = 6.0
RATE_BURST = {"submit_rpm": 15, "poll_rpm": 40, "rate_window_s": 3.0}
"""While a burst lasts, the account admits 15 submits and 40 polls per 3 s (the fleet does
not know: it learns from the 429s)."""
NO_RATE_LIMIT = {"submit_rpm": None, "poll_rpm": None}
STEADY_FAULTS = {
    "error_500_probability": 0.03,
    "error_502_probability": 0.03,
    "error_503_probability": 0.03,
    "error_504_probability": 0.01,
    "drop_probability": 0.03,
    "slow_probability": 0.03,
    "slow_s": 2.0,
    "fail_probability": 0.03,
}
"""On every v2 call: about one in eight meets a 500, an HTML 502/503/504 or a dropped
connection, one in 33 waits 2 s; one job in 33 ends FAILED upstream. Slow answers stay well
under the client's timeout and the submit claim, so a slow answer is never a second submit."""
TRANSPORT_FAULTS = [n for n in STEADY_FAULTS if n.startswith(("error_", "drop_", "slow_p"))]
HEALTHY = {**dict.fromkeys(TRANSPORT_FAULTS, 0.0), "outage": False, **NO_RATE_LIMIT}
CHAOS_SANDBOX = {"time_scale": 0.1, "gpus": 64, **STEADY_FAULTS}
"""Jobs take about 0.06 s upstream (0.5 s for the big ones); the seed comes from the run."""
CHAOS_SETTINGS = {"SEGQ_LEASE_S": "5"}
"""Leases of 5 s: a killed worker's jobs are published again after 5 s (default 60)."""
FAIL_MARKER_EVERY = 50
"""Every 50th prompt carries the sandbox's ``[fail]`` marker: FAILED whatever the draws."""
BIG_JOB_EVERY = 10
"""Every 10th job asks for two 1024x1024 images (a slow job with two outputs)."""


@dataclass(frozen=True)
class ChaosEvent:
    name: str
    at_ended: float
    """Fires once this fraction of the round's jobs has ended ..."""
    gap_s: float = 0.0
    """... and this long after the event before it."""


ROUND_EVENTS = (
    ChaosEvent("kill_worker", 0.10),
    ChaosEvent("rate_burst", 0.15),
    ChaosEvent("rate_burst_over", 0.15, RATE_BURST_S),
    ChaosEvent("restart_redis", 0.25),
    ChaosEvent("kill_worker", 0.35),
    ChaosEvent("close_broker_connections", 0.40),
    ChaosEvent("outage", 0.45),
    ChaosEvent("kill_worker", 0.45, 10.0),  # while the upstream is down
)
"""In this order; the outage comes last, because it stops every job for 30 s (the fleet pauses
its submits, jobs upstream poll through it), so events after it would find the same work
waiting, not new work under way."""


@dataclass(frozen=True)
class ChaosPlan:
    jobs_per_round: int
    minutes: float | None
    """None: one round (the CI size); else rounds until this many minutes have passed."""
    round_timeout_s: float

    @classmethod
    def for_run(cls, soak_minutes: float | None) -> ChaosPlan:
        if soak_minutes is None:
            return cls(jobs_per_round=1000, minutes=None, round_timeout_s=240.0)
        return cls(jobs_per_round=2000, minutes=soak_minutes, round_timeout_s=600.0)


@dataclass
class ChaosTally:
    """What the scenario did to the fleet, for the figures line."""

    job_ids: list[str] = field(default_factory=list)
    rounds: int = 0
    kills: int = 0
    redis_restarts: int = 0
    broker_connection_closes: int = 0
    outages: int = 0
    rate_bursts: int = 0
    missed_events: list[str] = field(default_factory=list)


def job_params(run_tag: str, n: int) -> dict[str, Any]:
    """The n-th job's parameters: a unique prompt (ground truth is matched by prompt), some
    that FAIL upstream by their marker, some big ones with two outputs."""
    prompt = f"chaos {run_tag} job {n}: a lighthouse in a storm"
    if n % FAIL_MARKER_EVERY == 0:
        prompt += " [fail]"
    params: dict[str, Any] = {"prompt": prompt, "width": 512, "height": 512}
    if n % BIG_JOB_EVERY == 0:
        params |= {"width": 1024, "height": 1024, "batch_size": 2}
    return params


class ChaosRun:
    """Drives one fleet through the plan's rounds; stops nothing (the fixtures do)."""

    def __init__(
        self, fleet: Fleet, redis_server: LocalRedis, broker_url: str | None, plan: ChaosPlan
    ) -> None:
        self.fleet = fleet
        self.redis_server = redis_server
        self.broker_url = broker_url
        self.plan = plan
        self.tally = ChaosTally()
        self.killed: list[Process] = []
        self.run_tag = uuid.uuid4().hex[:8]
        self.started = time.monotonic()
        self._actions: dict[str, Callable[[], None]] = {
            "kill_worker": self.kill_worker,
            "rate_burst": self.rate_burst,
            "rate_burst_over": lambda: fleet.sandbox.set_faults(**NO_RATE_LIMIT),
            "outage": self.outage,
            "restart_redis": self.restart_redis,
            "close_broker_connections": self.close_broker_connections,
        }

    def run(self) -> ChaosTally:
        for _ in range(WORKERS):
            self.fleet.start_worker(concurrency=CONCURRENCY)
        deadline = time.monotonic() + 60 * (self.plan.minutes or 0)
        while self.tally.rounds == 0 or time.monotonic() < deadline:
            self.run_round()
        return self.tally

    def run_round(self) -> None:
        first = len(self.tally.job_ids)
        params = (job_params(self.run_tag, first + n) for n in range(self.plan.jobs_per_round))
        ids = self.fleet.add(params)
        self.tally.job_ids += ids
        self.tally.rounds += 1
        events = [e for e in ROUND_EVENTS if self._applies(e)]
        last_event_at = time.monotonic()
        deadline = last_event_at + self.plan.round_timeout_s
        while time.monotonic() < deadline:
            self.check_workers()
            ended = (self.ended_jobs() - first) / len(ids)
            if events and ended >= events[0].at_ended:
                if time.monotonic() - last_event_at >= events[0].gap_s:
                    self.fire(events.pop(0), ended)
                    last_event_at = time.monotonic()
            elif ended >= 1.0:
                break
            time.sleep(0.5)
        self.tally.missed_events += [e.name for e in events]

    def fire(self, event: ChaosEvent, ended: float) -> None:
        """Runs the event's action; prints a line (seen with ``pytest -s``) to follow the run."""
        clock = time.strftime("%H:%M:%S")
        print(f"chaos {time.monotonic() - self.started:6.1f}s ({clock}): {event.name} "
              f"({ended:.0%} of round {self.tally.rounds} ended)", flush=True)  # fmt: skip
        self._actions[event.name]()

    def _applies(self, event: ChaosEvent) -> bool:
        return event.name != "close_broker_connections" or self.broker_url is not None

    def ended_jobs(self) -> int:
        """Jobs in a terminal state, from the store's counters (cheap: the sandbox shares this
        process); -1 while Redis does not answer."""
        try:
            counts = self.fleet.store.state_counts()
        except StoreError:
            return -1
        return sum(counts.get(state.value, 0) for state in TERMINAL_STATES)

    def live_workers(self) -> list[Process]:
        return [w for w in self.fleet.workers if w not in self.killed]

    def check_workers(self) -> None:
        """A worker that exits without being killed is a failure of its own."""
        for worker in self.live_workers():
            if not worker.running():
                pytest.fail(f"worker {worker.args[2]} exited on its own:\n{worker.output()}")

    def kill_worker(self) -> None:
        """SIGKILL the oldest live worker, then start its replacement."""
        victim = self.live_workers()[0]
        victim.kill()
        self.killed.append(victim)
        self.tally.kills += 1
        self.fleet.start_worker(concurrency=CONCURRENCY)

    def rate_burst(self) -> None:
        self.fleet.sandbox.set_faults(**RATE_BURST)
        self.tally.rate_bursts += 1

    def outage(self) -> None:
        """Every v2 call answers an HTML 503 for ``OUTAGE_S``; the sandbox ends it itself."""
        self.fleet.sandbox.set_faults(outage=True, outage_s=OUTAGE_S)
        self.tally.outages += 1

    def restart_redis(self) -> None:
        """A clean restart with AOF on: the job store (and the broker, on Redis) goes away."""
        self.redis_server.restart()
        self.tally.redis_restarts += 1

    def close_broker_connections(self) -> None:
        """RabbitMQ closes every connection of the test's virtual host (workers reconnect)."""
        assert self.broker_url is not None
        close_rabbitmq_connections(self.broker_url, "segq chaos test")
        self.tally.broker_connection_closes += 1

    def wait_all_ended(self, timeout_s: float) -> None:
        """Returns once every job is terminal, or at the deadline (the verdict says which)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.ended_jobs() < len(self.tally.job_ids):
            self.check_workers()
            time.sleep(0.5)

    def heal_upstream(self) -> None:
        """The upstream is healthy again: no transport faults, no outage, no rate limit (jobs
        still FAIL by their marker or by draw, which ground truth records)."""
        self.fleet.sandbox.set_faults(**HEALTHY)

"""Interactive priority: time from enqueueing an interactive job to its submit upstream, behind a
10,000-job bulk backlog with the fleet at its submit rate limit (issue 10; target p50 < 2 s).

Run:  .venv/bin/python tests/benchmarks/bench_interactive.py [--quick] [--interactive 20]

One private redis-server, the sandbox on a thread refusing more than ``--rate-per-min`` submits
a minute, and one real `segq worker` process told the same rate. Baseline, measured first in
the same run with the same processes: the same interactive jobs with an empty queue. Then the
bulk backlog (one batch) is queued and, once the backlog's submits reach the sandbox at the
rate limit, the interactive jobs are measured again, one at a time with a random gap (seeded).
"Reached the upstream" is the sandbox's own ``submitted_at`` for the job's prompt.
The figures are ratios to that baseline because the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import redis

from shared.job_store import JobStore
from shared.local_redis import start_local_redis
from shared.sandbox import SandboxConfig, start_sandbox
from tests.benchmarks.support import command_line
from tests.support.backlog import (
    enqueue_bulk_backlog,
    interactive_latency_s,
    is_bulk,
    upstream_submits,
    wait_for_bulk_at_the_limit,
)
from tests.support.fleet import FAST_SANDBOX, Fleet

TARGET_P50_S = 2.0
LATENCY_TIMEOUT_S = 30.0
GAP_S = (0.1, 0.5)
"""Random pause between two interactive jobs, so they do not fall in step with budget slots."""


def measure(fleet: Fleet, label: str, jobs: int, rng: random.Random) -> list[float]:
    """Enqueue-to-upstream seconds of ``jobs`` interactive jobs, one after the other."""
    latencies = []
    for n in range(jobs):
        prompt = f"interactive {label} {n}"
        latencies.append(interactive_latency_s(fleet, prompt, LATENCY_TIMEOUT_S))
        time.sleep(rng.uniform(*GAP_S))
    return latencies


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94]


def submit_rates_per_min(fleet: Fleet, since: float) -> tuple[float, float]:
    """(all, bulk) submits per minute the sandbox accepted since ``since``."""
    prompts = [prompt for at, prompt in upstream_submits(fleet) if at >= since]
    per_min = 60 / (time.time() - since)
    return len(prompts) * per_min, sum(map(is_bulk, prompts)) * per_min


def run(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    sandbox_config = SandboxConfig.model_validate({**FAST_SANDBOX, "submit_rpm": args.rate_per_min})
    settings = {"SEGQ_SUBMIT_RATE_LIMIT": str(args.rate_per_min)}
    with (
        start_local_redis() as server,
        start_sandbox(sandbox_config) as sandbox,
        tempfile.TemporaryDirectory() as tmp,
    ):
        client = redis.Redis.from_url(server.url, decode_responses=True)
        fleet = Fleet(server.url, sandbox, Path(tmp), settings, JobStore(client, retention_s=3600))
        try:
            fleet.start_worker(args.concurrency)
            empty = measure(fleet, "empty", args.interactive, rng)
            batch_id = enqueue_bulk_backlog(fleet.store, args.backlog)
            wait_for_bulk_at_the_limit(fleet, submits=20, timeout_s=60)
            started_at = time.time()
            behind = measure(fleet, "behind", args.interactive, rng)
            all_rate, bulk_rate = submit_rates_per_min(fleet, started_at)
            left = fleet.store.get_batch(batch_id).counts["queued"]
            fleet.store.cancel_batch(batch_id)
            refused = sandbox.truth(with_requests=False)["totals"]["rate_limited"]["submit"]
        finally:
            fleet.stop()
            client.close()
    return {"empty": empty, "behind": behind, "rate_per_min": all_rate,
            "bulk_rate_per_min": bulk_rate, "backlog_left": left,
            "refused_429": refused}  # fmt: skip


def report(args: argparse.Namespace, figures: dict) -> None:
    empty, behind = figures["empty"], figures["behind"]
    print("command:", command_line())
    print(f"backlog: {args.backlog:,} bulk jobs; rate limit {args.rate_per_min}/min (sandbox and "
          f"fleet); {args.interactive} interactive jobs per phase; 1 worker x "
          f"{args.concurrency} threads")  # fmt: skip
    print(f"{'':28}{'median':>9}{'p95':>9}{'max':>9}")
    for label, values in (("empty queue (baseline)", empty), ("behind the backlog", behind)):
        print(f"{label:28}{statistics.median(values):8.3f}s{p95(values):8.3f}s"
              f"{max(values):8.3f}s")  # fmt: skip
    median_ratio = statistics.median(behind) / statistics.median(empty)
    print(f"{'ratio behind / baseline':28}{median_ratio:8.2f}x{p95(behind) / p95(empty):8.2f}x")
    print(f"submits while measuring: {figures['rate_per_min']:.0f}/min "
          f"({figures['rate_per_min'] / args.rate_per_min:.0%} of the limit), of which bulk "
          f"{figures['bulk_rate_per_min']:.0f}/min; backlog still queued: "
          f"{figures['backlog_left']:,}; 429s: {figures['refused_429']}")  # fmt: skip
    verdict = "met" if statistics.median(behind) < TARGET_P50_S else "NOT met"
    print(f"target p50 < {TARGET_P50_S:.0f} s behind the backlog at the rate limit: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 interactive jobs per phase")
    parser.add_argument("--interactive", type=int, default=20, help="jobs measured per phase")
    parser.add_argument("--backlog", type=int, default=10_000, help="bulk jobs queued ahead")
    parser.add_argument("--rate-per-min", type=int, default=600, help="submit rate limit")
    parser.add_argument("--concurrency", type=int, default=16, help="worker threads")
    parser.add_argument("--seed", type=int, default=10, help="seed of the gaps between jobs")
    args = parser.parse_args()
    if args.quick:
        args.interactive = min(args.interactive, 10)
    report(args, run(args))


if __name__ == "__main__":
    main()

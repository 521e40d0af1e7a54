"""The chaos suite: 1,000 jobs through every fault at once, checked against ground truth.

The sandbox answers about one v2 call in eight with a JSON 500, an HTML 502/503/504 or a
dropped connection, holds one in 33 back for 2 s, and ends about one job in 20 FAILED. While the
batch runs, the suite (``tests/support/chaos.py``) SIGKILLs a worker three times (once during
the outage) and starts a replacement each time, sends a 6 s burst of 429s, takes the upstream
down for 30 s (real time), restarts Redis once with AOF on and, on RabbitMQ, closes every broker
connection. Then the upstream heals and the jobs that gave up are retried, as an operator would.

The verdict (rules in ``tests/support/chaos_verdict.py``): no job lost or stuck; each job ends as
the upstream says (outputs are the upstream's URLs, FAILED jobs keep its detail); a job fails
``retries_exhausted`` only on transient errors, and none is left after the retry; no job is
paid twice unless a kill cut its submit off between Segmind's answer and the store's write
(``interrupted_submits``, reported; the target is zero). ``--soak MINUTES`` runs the same
rounds again and again for that long with 2,000 jobs each; ``--chaos-figures PATH`` keeps the
figures line as JSON (it is also written to the test's tmp dir).
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from shared.job_model import Job
from shared.local_redis import start_local_redis
from tests.support.chaos import CHAOS_SANDBOX, CHAOS_SETTINGS, ChaosPlan, ChaosRun, ChaosTally
from tests.support.chaos_verdict import Verdict, fault_figures, judge
from tests.support.fleet import Fleet

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(900)]

SETTLE_S = 180.0
"""After the last round: the longest a job may still take (its retry backoff is capped at 60 s)."""


def retry_jobs_that_gave_up(fleet: Fleet, jobs: list[Job]) -> int:
    """What an operator does once Segmind is back: bring back each job that gave up."""
    gave_up = [j.job_id for j in jobs if j.error and j.error.kind == "retries_exhausted"]
    return sum(fleet.store.retry_job(job_id) for job_id in gave_up)


def store_counts_agree(fleet: Fleet, jobs: list[Job | None]) -> bool:
    """The store's own per-state counters (segq:stats) still count each job once."""
    counted = {state: n for state, n in fleet.store.state_counts().items() if n}
    return counted == Counter(job.state.value for job in jobs if job is not None)


def report(figures: dict[str, Any], tmp_path: Path, extra_path: str | None) -> None:
    """Prints the figures line (seen with ``pytest -s``) and keeps it as JSON."""
    print(f"\nchaos figures: {json.dumps(figures)}")
    for path in filter(None, [tmp_path / "chaos-figures.json", extra_path]):
        path = Path(path)
        kept = json.loads(path.read_text()) if path.exists() else {}
        kept[figures["broker"]] = figures
        path.write_text(json.dumps(kept, indent=2) + "\n")


def figures_of(
    broker: str, seed: int, tally: ChaosTally, under_chaos: Verdict, final: Verdict, **more: Any
) -> dict[str, Any]:
    return {
        "broker": broker,
        "sandbox_seed": seed,
        "rounds": tally.rounds,
        "kills": tally.kills,
        "redis_restarts": tally.redis_restarts,
        "broker_connection_closes": tally.broker_connection_closes,
        "outages": tally.outages,
        "rate_bursts": tally.rate_bursts,
        "states_under_chaos": dict(sorted(under_chaos.states.items())),
        "gave_up_before_submit": under_chaos.gave_up_before_submit,
        "gave_up_polling": under_chaos.gave_up_polling,
        "mismatches_under_chaos": len(under_chaos.mismatches),
        **final.figures(),
        **more,
    }


def test_chaos_every_job_ends_as_the_upstream_says_and_none_is_paid_twice(
    make_fleet, broker_url, tmp_path, request
):
    plan = ChaosPlan.for_run(request.config.getoption("--soak"))
    seed = random.randrange(2**31)
    broker = "rabbitmq" if broker_url else "redis"
    started = time.monotonic()
    with start_local_redis(appendonly=True, data_dir=tmp_path) as server:
        # Given a fleet on a Redis with AOF, and a sandbox with every steady fault on
        sandbox = {**CHAOS_SANDBOX, "random_seed": seed}
        fleet = make_fleet(sandbox=sandbox, on_redis=server.url, **CHAOS_SETTINGS)
        chaos = ChaosRun(fleet, server, broker_url, plan)
        # When the batch runs through kills, a 429 burst, the outage and restarts
        tally = chaos.run()
        chaos.wait_all_ended(SETTLE_S)
        ids = tally.job_ids
        under_chaos = judge(ids, fleet.store.get_jobs(ids), fleet.sandbox.truth(), final=False)
        # ... and, the upstream healed, the jobs that gave up are retried
        chaos.heal_upstream()
        retried = retry_jobs_that_gave_up(fleet, [j for j in fleet.store.get_jobs(ids) if j])
        chaos.wait_all_ended(SETTLE_S)
        jobs = fleet.store.get_jobs(ids)
        truth = fleet.sandbox.truth()
        final = judge(ids, jobs, truth, final=True)
        counts_agree = store_counts_agree(fleet, jobs)
        fleet.stop()
    wall_time_s = round(time.monotonic() - started, 1)
    figures = figures_of(broker, seed, tally, under_chaos, final, retried=retried,
                         faults=fault_figures(truth), wall_time_s=wall_time_s)  # fmt: skip
    report(figures, tmp_path, request.config.getoption("--chaos-figures"))
    details = {"under_chaos": under_chaos.duplicate_details, "final": final.duplicate_details}
    (tmp_path / "chaos-duplicates.json").write_text(json.dumps(details, indent=2))
    # Then every fault struck, no job was lost, stuck, misreported or paid twice unnoticed
    assert tally.missed_events == [], "the batch ended before these faults struck"
    assert under_chaos.failures() == [], "under chaos"
    assert final.failures() == [], "after the retry"
    assert counts_agree, fleet.store.state_counts()

"""The pipeline (issue 3): throughput against raw Celery, status polls per job against the
official SDK, how soon the job store shows a finished job, and jobs one worker holds in flight.

Run:  .venv/bin/python -m tests.benchmarks.bench_pipeline [--quick] [--throughput-only]

One private redis-server (job store and broker), the sandbox on a thread of this process, and
one real `segq worker` process (threads pool, ``--concurrency``) per phase, stopped after it:

1. throughput: N jobs with near-zero inference time, enqueue to the last one completed in the
   job store, against the baseline measured in the same run on the same Redis: N raw Celery
   no-op tasks (``tests/benchmarks/noop_celery.py``, same pool and concurrency), first publish
   to the last one run. Target: ratio >= 0.35. Also each worker's CPU time (user + system,
   from ``/proc``) per segq job and per no-op task over the same span: on a shared machine
   it moves far less than the throughput does. The same phase again with the worker's task
   events on (``--task-events``, as Flower turns them on while it runs) shows what they cost.
   Then segq's own steps with no Celery at all: a child process runs the dispatcher's step and
   the submit and poll steps of the same N jobs in one thread, calling the task functions'
   bodies directly; its CPU per job against the no-op task's is the most (a) could reach in
   any task layout that keeps those steps (were Celery's cost per job zero). With the
   tasks a job took (a submit, and a poll per status call the sandbox counted), it also prints
   the most (a) could reach in this layout if each task cost the worker what a no-op does.
2. polls and delay: jobs with realistic inference times (the sandbox's default 2.5 s lognormal)
   arriving at a steady rate. Status polls per completed job from the sandbox's own counters,
   against what the official SDK's loop (a poll at once, then one a second) needs on the same
   jobs, ``floor(duration) + 2`` from the sandbox's own durations, and against the ``segmind``
   SDK itself driven on a sample of jobs. Target: fewer polls than the SDK. Then the median
   delay between the sandbox completing a job (its truth ``completed_at``, ``time.time()``) and
   the job's ``finished_at`` (Redis ``TIME`` in the finishing script): both are this machine's
   wall clock, and the run prints their measured offset. Target: median < 300 ms.
3. in flight: jobs that each take 30 s upstream, as many as one worker will submit; the most
   jobs submitted upstream and not yet finished at once (the job store's ``segq:inflight``, and
   the sandbox's QUEUED + PROCESSING count), and the worker's resident memory (``VmRSS`` of it
   and its children) at that moment. Target: >= 2,000.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from segmind import SegmindClient  # type: ignore[import-untyped]

from shared import redis_keys
from shared.job_model import TERMINAL_STATES, JobState
from shared.job_store import JobStore
from shared.local_redis import start_local_redis
from shared.request_model import MODEL_SLUG, GenerationRequest
from shared.sandbox import SandboxConfig, start_sandbox
from shared.settings import Settings
from tests.benchmarks import noop_celery
from tests.benchmarks.support import (
    client_for,
    command_line,
    stop_all,
    tree_cpu_s,
    tree_rss_kb,
    verdict,
)
from tests.support.fleet import API_KEY, REPO, Fleet, segq_env, wait_until

FAST_UPSTREAM = {"time_scale": 0.001, "min_queue_s": 0.0, "gpus": 100_000, "random_seed": 3}
REALISTIC_UPSTREAM = {"gpus": 1000, "random_seed": 3}
"""The sandbox's default inference times (2.5 s mean, lognormal sigma 0.25, 0.2 s queued)."""
SLOW_UPSTREAM = {"inference_mean_s": 30.0, "inference_sigma": 0.0, "min_queue_s": 0.0,
                 "gpus": 1_000_000, "random_seed": 3}  # fmt: skip
SIZES = {
    "full": {"jobs": 3000, "stream": 120, "sdk": 24, "in_flight": 3000},
    "quick": {"jobs": 500, "stream": 40, "sdk": 12, "in_flight": 600},
}
STREAM_PER_S = 4.0
SDK_INTERVAL_S = 1.0
WARM_JOBS = 20
SAMPLE_S = 0.25
DEFAULTS = Settings.model_fields
TASK_EVENTS_ON = ("--task-events",)
"""As while Flower runs: it turns every worker's task events on (segq's workers start without)."""
TARGETS = {"ratio": 0.35, "delay_ms": 300.0, "in_flight": 2000}
SELF = [sys.executable, "-m", "tests.benchmarks.bench_pipeline"]
STEPS_ALONE_IDLE_S = 0.05
"""The steps-alone child's sleep when no poll is due yet (its CPU, not its time, is measured)."""


@dataclass
class Bench:
    redis_url: str
    tmp: Path
    concurrency: int
    fleets: list[Fleet] = field(default_factory=list)

    @contextmanager
    def fleet(
        self,
        upstream: dict[str, Any],
        worker_options: Sequence[str] | None = (),
        **worker_env: str,
    ) -> Iterator[Fleet]:
        """An empty Redis, a sandbox with ``upstream``'s knobs and one worker (``celery worker``
        options and environment added; None: no worker); all stopped after."""
        client = client_for(self.redis_url)
        client.flushall()
        with start_sandbox(SandboxConfig.model_validate(upstream)) as sandbox:
            tmp = self.tmp / uuid.uuid4().hex[:8]
            tmp.mkdir()
            fleet = Fleet(self.redis_url, sandbox, tmp, {}, JobStore(client, retention_s=3600))
            try:
                if worker_options is not None:
                    fleet.start_worker(concurrency=self.concurrency, celery_options=worker_options,
                                       **worker_env)  # fmt: skip
                yield fleet
            finally:
                stop_all(fleet)
                client.close()


def prompts(label: str, count: int) -> list[dict[str, str]]:
    return [{"prompt": f"{label} {uuid.uuid4().hex[:8]} plate {n}"} for n in range(count)]


def jobs_timeout_s(jobs: int) -> float:
    """How long N fast jobs may take to end before a phase gives up (5 jobs/s at the least)."""
    return 60 + jobs / 5


def wait_completed(fleet: Fleet, count: int, timeout_s: float, poll_s: float = 0.02) -> float:
    """Waits for ``count`` completed jobs (the store's fleet-wide counter); returns the time."""
    wait_until(lambda: fleet.store.state_counts().get("completed", 0) >= count,
               f"{count} jobs completed", timeout_s, fleet.workers)  # fmt: skip
    return time.perf_counter()


# --- 1. throughput against raw Celery ------------------------------------------------------


def segq_jobs_per_s(
    bench: Bench, jobs: int, worker_options: Sequence[str] = (), **worker_env: str
) -> dict[str, float]:
    with bench.fleet(FAST_UPSTREAM, worker_options, **worker_env) as fleet:
        pid = fleet.workers[0].popen.pid
        fleet.add(prompts("warm", WARM_JOBS))
        wait_completed(fleet, WARM_JOBS, 60)
        polls_before = fleet.sandbox.truth(with_requests=False)["totals"]["status_polls"]
        start, cpu_start_s = time.perf_counter(), tree_cpu_s(pid)
        fleet.add(prompts("throughput", jobs))
        end = wait_completed(fleet, WARM_JOBS + jobs, jobs_timeout_s(jobs))
        cpu_ms = (tree_cpu_s(pid) - cpu_start_s) * 1000 / jobs
        polls = fleet.sandbox.truth(with_requests=False)["totals"]["status_polls"] - polls_before
    return {"per_s": jobs / (end - start), "cpu_ms": cpu_ms,
            "tasks_per_job": 1 + polls / jobs}  # fmt: skip


def steps_alone_cpu_ms(bench: Bench, jobs: int, **child_env: str) -> float:
    """segq's own CPU per job with no Celery: ``run_steps_alone`` in a child process."""
    with bench.fleet(FAST_UPSTREAM, worker_options=None) as fleet:
        fleet.add(prompts("alone", jobs))
        command = [*SELF, "--steps-alone", str(jobs)]
        child = subprocess.run(command, env=fleet.env(**child_env), cwd=REPO, capture_output=True,
                               text=True, timeout=jobs_timeout_s(jobs))  # fmt: skip
        if child.returncode:
            raise RuntimeError(f"steps alone failed:\n{child.stderr[-3000:]}")
        completed = fleet.store.state_counts().get("completed", 0)
    if completed != jobs:
        raise RuntimeError(f"steps alone completed {completed} of {jobs} jobs")
    return float(child.stdout.split()[-1])


def run_steps_alone(jobs: int) -> None:
    """The child: dispatcher steps, and the submit and poll steps they hand out, in this one
    thread until ``jobs`` jobs have ended; prints the process's CPU ms per job."""
    from workers.dispatcher import MAX_ITEMS_PER_STEP
    from workers.job_steps import poll_job, submit_job
    from workers.runtime import runtime

    rt = runtime()
    ended, cpu_start_s = 0, time.process_time()
    deadline = time.monotonic() + jobs_timeout_s(jobs)
    while ended < jobs and time.monotonic() < deadline:
        plan = rt.queue.dispatch(MAX_ITEMS_PER_STEP)
        for job_id in plan.submits:
            submit_job(rt, job_id)
        for job_id, token in plan.polls:
            poll_job(rt, job_id, token)
        if not plan.size:
            ended = sum(rt.store.state_counts().get(s.value, 0) for s in TERMINAL_STATES)
            time.sleep(min(plan.wake_in_s, STEPS_ALONE_IDLE_S))
    cpu_ms = (time.process_time() - cpu_start_s) * 1000 / jobs
    rt.metrics.close()
    print(f"cpu ms per job {cpu_ms:.3f}")


def celery_noop_per_s(bench: Bench, tasks: int, **worker_env: str) -> dict[str, float]:
    """Raw Celery: a no-op task's worker on the same Redis, N tasks from publish to run."""
    client = client_for(bench.redis_url)
    client.flushall()
    noop_celery.app.conf.broker_url = bench.redis_url
    log = bench.tmp / "noop-worker.log"
    command = [sys.executable, "-m", "celery", "-A", "tests.benchmarks.noop_celery", "worker",
               "--pool=threads", f"--concurrency={bench.concurrency}", "--without-gossip",
               "--without-mingle", "--loglevel=INFO",
               f"--hostname=noop-{uuid.uuid4().hex[:6]}"]  # fmt: skip
    with log.open("wb") as out:
        worker = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                  env=segq_env(CELERY_BROKER_URL=bench.redis_url,
                                               **worker_env))  # fmt: skip
    try:
        _wait_log(worker, log, "ready.")
        publish_noops(WARM_JOBS)
        _wait_drained(client, 60)
        start, cpu_start_s = time.perf_counter(), tree_cpu_s(worker.pid)
        publish_noops(tasks)
        per_s = tasks / (_wait_drained(client, 60 + tasks / 50) - start)
        return {"per_s": per_s, "cpu_ms": (tree_cpu_s(worker.pid) - cpu_start_s) * 1000 / tasks}
    finally:
        worker.terminate()
        worker.wait(30)
        client.close()


def publish_noops(count: int) -> None:
    """As segq's dispatcher publishes: one producer, ``apply_async`` per task."""
    with noop_celery.app.producer_or_acquire() as producer:
        for _ in range(count):
            noop_celery.noop.apply_async(producer=producer)


def _wait_log(worker: subprocess.Popen, log: Path, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"baseline worker not ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def _wait_drained(client: redis.Redis, timeout_s: float) -> float:
    """When the queue and the unacked hash are both empty: every no-op task has run."""
    deadline = time.monotonic() + timeout_s
    while client.llen("celery") or client.hlen("unacked"):
        if time.monotonic() > deadline:
            raise RuntimeError("baseline tasks not drained in time")
        time.sleep(0.005)
    return time.perf_counter()


# --- 2. polls per job and the delay to the job store ---------------------------------------


def sdk_loop_polls(duration_s: float) -> int:
    """Status polls the SDK's ``wait()`` makes on a job that takes ``duration_s`` upstream: one
    at once, then one after each 1 s sleep, until one sees the job finished."""
    return math.floor(duration_s / SDK_INTERVAL_S) + 2


def segq_polls_and_delay(bench: Bench, jobs: int) -> dict[str, Any]:
    with bench.fleet(REALISTIC_UPSTREAM) as fleet:
        clock_offset_s = redis_clock_offset_s(fleet)
        ids = []
        for params in prompts("stream", jobs):
            ids += fleet.add([params])
            time.sleep(1 / STREAM_PER_S)
        finished = {job.params["prompt"]: job for job in fleet.wait_all(ids, 120)}
        truth = fleet.sandbox.truth()["requests"].values()
    ours = [r for r in truth if r["prompt"] in finished and r["state"] == "COMPLETED"]
    durations = [r["completed_at"] - r["submitted_at"] for r in ours]
    delays = [finished[r["prompt"]].finished_at - r["completed_at"] for r in ours]
    return {
        "completed": sum(j.state is JobState.COMPLETED for j in finished.values()),
        "polls_per_job": sum(r["status_polls"] for r in ours) / len(ours),
        "sdk_loop_per_job": sum(map(sdk_loop_polls, durations)) / len(ours),
        "mean_duration_s": statistics.mean(durations),
        "delay_median_ms": statistics.median(delays) * 1000,
        "delay_p95_ms": statistics.quantiles(delays, n=20)[18] * 1000,
        "clock_offset_ms": clock_offset_s * 1000,
    }


def redis_clock_offset_s(fleet: Fleet) -> float:
    """Redis ``TIME`` less ``time.time()`` here (midpoint of the round trip)."""
    before = time.time()
    seconds, micros = fleet.store.redis.time()
    return seconds + micros / 1e6 - (before + time.time()) / 2


def sdk_polls(jobs: int) -> dict[str, float]:
    """The official SDK, one thread per job: ``submit_async`` then ``wait()`` (1 s interval)."""
    with start_sandbox(SandboxConfig.model_validate(REALISTIC_UPSTREAM)) as sandbox:
        sdk = SegmindClient(api_key=API_KEY, base_url=f"{sandbox.url}/v1")
        body = GenerationRequest(prompt="sdk").upstream_body()

        def one_job(n: int) -> None:
            sdk.submit_async(MODEL_SLUG, **{**body, "prompt": f"sdk {n}"}).wait(
                timeout=60, interval=SDK_INTERVAL_S
            )

        try:
            with ThreadPoolExecutor(jobs) as pool:
                list(pool.map(one_job, range(jobs)))
        finally:
            sdk._client.close()
        requests = list(sandbox.truth()["requests"].values())
    durations = [r["completed_at"] - r["submitted_at"] for r in requests]
    return {
        "polls_per_job": sum(r["status_polls"] for r in requests) / len(requests),
        "loop_per_job": sum(map(sdk_loop_polls, durations)) / len(requests),
    }


# --- 3. jobs in flight on one worker -------------------------------------------------------


def in_flight_on_one_worker(bench: Bench, jobs: int) -> dict[str, Any]:
    with bench.fleet(SLOW_UPSTREAM) as fleet:
        pid = fleet.workers[0].popen.pid
        idle_rss_kb = tree_rss_kb(pid)
        start = time.monotonic()
        ids = fleet.add(prompts("slow", jobs))
        peak = {"store": 0, "upstream": 0, "rss_kb": 0, "at_s": 0.0}
        while time.monotonic() - start < 40 and peak["store"] < jobs:
            store_now = fleet.store.redis.zcard(redis_keys.INFLIGHT)
            if store_now > peak["store"]:
                upstream = fleet.sandbox.truth(with_requests=False)["totals"]["jobs"]
                peak = {"store": store_now, "upstream": upstream["QUEUED"] + upstream["PROCESSING"],
                        "rss_kb": tree_rss_kb(pid), "at_s": time.monotonic() - start}  # fmt: skip
            time.sleep(SAMPLE_S)
        jobs_done = fleet.wait_all(ids, 120)
        totals = fleet.sandbox.truth(with_requests=False)["totals"]
    return {**peak, "jobs": jobs, "idle_rss_kb": idle_rss_kb, "submits": totals["submits"],
            "completed": sum(j.state is JobState.COMPLETED for j in jobs_done),
            "polls_per_job": totals["status_polls"] / jobs}  # fmt: skip


# --- the run and its report ----------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, a few minutes")
    parser.add_argument("--concurrency", type=int, default=DEFAULTS["worker_concurrency"].default,
                        help="threads of each worker (segq's and the baseline's)")  # fmt: skip
    parser.add_argument("--throughput-only", action="store_true",
                        help="only phase 1 without task events: (a) and the CPU per job, to "
                        "compare two commits in alternating runs")  # fmt: skip
    parser.add_argument("--steps-alone", type=int, metavar="JOBS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps_alone:
        run_steps_alone(args.steps_alone)
        return
    sizes = SIZES["quick" if args.quick else "full"]
    print("command:", command_line(), flush=True)
    print(f"sizes: {sizes}; one worker process, --pool=threads "
          f"--concurrency={args.concurrency}; defaults: SEGQ_BROKER_WINDOW="
          f"{DEFAULTS['broker_window'].default}, SEGQ_MAX_IN_FLIGHT="
          f"{DEFAULTS['max_in_flight'].default}",
          flush=True)  # fmt: skip
    with start_local_redis() as server, tempfile.TemporaryDirectory() as tmp:
        bench = Bench(server.url, Path(tmp), args.concurrency)
        baseline = celery_noop_per_s(bench, sizes["jobs"])
        segq = segq_jobs_per_s(bench, sizes["jobs"])
        segq["steps_alone_cpu_ms"] = steps_alone_cpu_ms(bench, sizes["jobs"])
        if args.throughput_only:
            print_rows(throughput_rows(baseline, segq))
            return
        events_on = segq_jobs_per_s(bench, sizes["jobs"], TASK_EVENTS_ON)
        polls = segq_polls_and_delay(bench, sizes["stream"])
        sdk = sdk_polls(sizes["sdk"])
        flight = in_flight_on_one_worker(bench, sizes["in_flight"])
    report(baseline, segq, events_on, polls, sdk, flight)
    if args.quick:
        print(f"(--quick: {sizes['in_flight']} jobs cannot show {TARGETS['in_flight']:,} in "
              "flight; run without --quick for that target)")  # fmt: skip


def report(
    baseline: dict, segq: dict, events_on: dict, polls: dict, sdk: dict, flight: dict
) -> None:
    fewer = polls["polls_per_job"] < min(polls["sdk_loop_per_job"], sdk["polls_per_job"])
    rows = [
        *throughput_rows(baseline, segq),
        ("    with task events on, as while Flower runs: jobs/s (ratio); CPU per job",
         f"{events_on['per_s']:.1f} ({events_on['per_s'] / baseline['per_s']:.2f}); "
         f"{events_on['cpu_ms']:.2f} ms", ""),
        (f"(b) status polls per completed job ({polls['completed']} jobs, "
         f"mean {polls['mean_duration_s']:.2f} s upstream)",
         f"{polls['polls_per_job']:.2f}",
         verdict(fewer, "fewer than the SDK")),
        ("    SDK 1 s loop on the same jobs (floor(duration)+2)",
         f"{polls['sdk_loop_per_job']:.2f}", ""),
        ("    segmind SDK 1.3.0 driven on a sample (measured; formula)",
         f"{sdk['polls_per_job']:.2f}; {sdk['loop_per_job']:.2f}", ""),
        ("(c) sandbox completed -> job store finished_at, median (p95)",
         f"{polls['delay_median_ms']:.0f} ms ({polls['delay_p95_ms']:.0f} ms)",
         verdict(polls["delay_median_ms"] < TARGETS["delay_ms"], "< 300 ms")),
        ("    Redis TIME - time.time() (same clock?)", f"{polls['clock_offset_ms']:+.2f} ms", ""),
        (f"(d) most jobs in flight on one worker, 30 s jobs ({flight['jobs']:,} enqueued)",
         f"{flight['store']:,} (upstream {flight['upstream']:,}) at {flight['at_s']:.0f} s",
         verdict(flight["store"] >= TARGETS["in_flight"], ">= 2,000")),
        ("    worker RSS then (idle before)",
         f"{flight['rss_kb'] / 1024:.0f} MB ({flight['idle_rss_kb'] / 1024:.0f} MB)", ""),
        ("    completed / submits upstream / status polls per job",
         f"{flight['completed']:,} / {flight['submits']:,} / {flight['polls_per_job']:.1f}", ""),
    ]  # fmt: skip
    print_rows(rows)


def throughput_rows(baseline: dict, segq: dict) -> list[tuple[str, str, str]]:
    ratio = segq["per_s"] / baseline["per_s"]
    alone_ms, tasks = segq["steps_alone_cpu_ms"], segq["tasks_per_job"]
    return [
        ("(a) segq jobs/s end to end vs raw Celery no-op tasks/s",
         f"{segq['per_s']:.1f} vs {baseline['per_s']:.1f} = {ratio:.2f}",
         verdict(ratio >= TARGETS["ratio"], f"ratio >= {TARGETS['ratio']}")),
        ("    worker CPU per segq job vs per no-op task (user + system)",
         f"{segq['cpu_ms']:.2f} ms vs {baseline['cpu_ms']:.2f} ms "
         f"(x{segq['cpu_ms'] / baseline['cpu_ms']:.2f})", ""),
        ("    segq's own steps per job with no Celery (one thread): CPU; (a) at most",
         f"{alone_ms:.2f} ms; {baseline['cpu_ms'] / alone_ms:.2f}", ""),
        ("    Celery tasks per job; (a) at most if each cost what a no-op task does",
         f"{tasks:.2f}; {baseline['cpu_ms'] / (alone_ms + tasks * baseline['cpu_ms']):.2f}", ""),
    ]  # fmt: skip


def print_rows(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows)
    for figure, value, against in rows:
        print(f"{figure:<{width}}  {value:<{value_width}}  {against}")


if __name__ == "__main__":
    main()

"""Producer speed: enqueueing N jobs with segq's API and `segq batch`, against publishing N plain
Celery tasks one by one with ``apply_async`` on the same Redis, in the same run (issues 4 and 9).

Run:  .venv/bin/python -m tests.benchmarks.bench_producer [--quick]

One private redis-server on loopback (``start_local_redis``) is both the job store and the
broker, flushed between measurements. In-process figures time the loop only (connections made
and scripts loaded first); the command figures are wall times of subprocesses, each reading the
same file of prompts: `segq batch FILE` (both passes: check every line, then enqueue) against a
process that publishes each line with ``apply_async``. Ratios above 1 mean segq is faster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from celery import Celery

from producer import AsyncProducer, Producer
from shared.local_redis import start_local_redis
from shared.settings import load_settings
from tests.benchmarks.support import client_for, command_line, verdict
from tests.support.fleet import REPO, segq_env

PROMPT = "a lighthouse on a basalt cliff at dusk, volumetric light, 35mm film photo, line {n}"
SIZES = {"full": {"jobs": 10_000, "repeats": 5}, "quick": {"jobs": 2_000, "repeats": 1}}
TARGETS = {"batch_ratio": 2.0, "single_ratio": 1.0}
"""Issue 9: a batch at least twice as fast as apply_async one by one; issue 4: not slower."""


def prompts(jobs: int) -> list[dict[str, str]]:
    return [{"prompt": PROMPT.format(n=n)} for n in range(1, jobs + 1)]


def timed(runs: dict[str, Callable[[], object]], reset: Callable[[], object],
          repeats: int) -> dict[str, float]:  # fmt: skip
    """Median wall seconds of each run; the runs take turns in every repeat, so a noisy
    neighbour slows baseline and candidates alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            reset()
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(each) for name, each in times.items()}


def baseline_app(url: str) -> Callable[..., object]:
    """A plain Celery task on the Redis broker, published once so the connection is open."""
    app = Celery("baseline", broker=url)

    @app.task(name="baseline.generate", ignore_result=True)
    def generate(prompt: str) -> None: ...

    generate.apply_async(kwargs={"prompt": "warm"})
    return generate.apply_async


def in_process_figures(url: str, sizes: dict[str, int]) -> dict[str, float]:
    jobs, repeats = sizes["jobs"], sizes["repeats"]
    requests = prompts(jobs)
    redis = client_for(url)
    settings = load_settings({"SEGQ_REDIS_URL": url})
    apply_async = baseline_app(url)
    producer = Producer(settings=settings)
    producer.enqueue({"prompt": "warm"})  # connection open, add_jobs script loaded
    batch_ids = iter(range(10**6))
    figures = timed({
        "apply_async_s": lambda: [apply_async(kwargs=r) for r in requests],
        "enqueue_many_s": lambda: producer.enqueue_many(requests, batch_id=f"b{next(batch_ids)}"),
        "enqueue_one_by_one_s": lambda: [producer.enqueue(r) for r in requests],
        "async_enqueue_many_s": lambda: asyncio.run(async_enqueue_many(settings, requests)),
    }, redis.flushall, repeats)  # fmt: skip
    producer.close()
    redis.close()
    return figures


async def async_enqueue_many(settings: object, requests: list[dict[str, str]]) -> None:
    async with AsyncProducer(settings=settings) as producer:  # type: ignore[arg-type]
        await producer.enqueue_many(requests)


def command_figures(url: str, jobs: int, folder: Path) -> dict[str, float]:
    """`segq batch FILE` against a process that publishes each line with apply_async."""
    path = folder / "prompts.txt"
    path.write_text("".join(PROMPT.format(n=n) + "\n" for n in range(1, jobs + 1)))
    env = segq_env(SEGQ_REDIS_URL=url)
    redis = client_for(url)
    redis.flushall()
    publish = [sys.executable, "-m", "tests.benchmarks.bench_scale", "--publish-one-by-one",
               str(path)]  # fmt: skip
    baseline_s = wall_s(publish, env)
    redis.flushall()
    batch_s = wall_s([sys.executable, "-m", "producer", "batch", str(path)], env)
    enqueued = int(redis.hget(f"segq:batch:{batch_id_of(path, env)}", "total") or 0)
    redis.close()
    return {"apply_async_process_s": baseline_s, "segq_batch_s": batch_s, "enqueued": enqueued}


def batch_id_of(path: Path, env: dict[str, str]) -> str:
    """The batch id `segq batch` chose (a re-run enqueues nothing and prints it)."""
    command = [sys.executable, "-m", "producer", "batch", str(path), "--json"]
    rerun = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(rerun.stdout)["batch_id"]


def wall_s(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return elapsed


def report(jobs: int, fast: dict[str, float], command: dict[str, float]) -> None:
    base = fast["apply_async_s"]
    rows = [(f"apply_async one by one, {jobs:,} tasks (baseline)", base, 1.0, "")]
    for name, key, target in (
        ("Producer.enqueue_many (one batch, streamed)", "enqueue_many_s", "batch_ratio"),
        ("AsyncProducer.enqueue_many", "async_enqueue_many_s", "batch_ratio"),
        ("Producer.enqueue one by one", "enqueue_one_by_one_s", "single_ratio"),
    ):
        ratio = base / fast[key]
        rows.append((name, fast[key], ratio, verdict(ratio >= TARGETS[target],
                                                     f">= {TARGETS[target]:g}")))  # fmt: skip
    command_ratio = command["apply_async_process_s"] / command["segq_batch_s"]
    rows += [
        ("process publishing the file with apply_async (baseline)",
         command["apply_async_process_s"], 1.0, ""),
        (f"segq batch FILE (check + enqueue, {command['enqueued']:,} jobs)",
         command["segq_batch_s"], command_ratio,
         verdict(command_ratio >= TARGETS["batch_ratio"], ">= 2")),
    ]  # fmt: skip
    width = max(len(row[0]) for row in rows)
    print(f"{'':<{width}}  {'seconds':>8}  {'jobs/s':>8}  {'ratio':>6}")
    for name, seconds, ratio, against in rows:
        print(f"{name:<{width}}  {seconds:8.3f}  {jobs / seconds:8,.0f}  {ratio:6.2f}  {against}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, one run each")
    args = parser.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    print("command:", command_line(), flush=True)
    print(f"sizes: {sizes}", flush=True)
    with start_local_redis() as server, tempfile.TemporaryDirectory() as folder:
        fast = in_process_figures(server.url, sizes)
        command = command_figures(server.url, sizes["jobs"], Path(folder))
    print(json.dumps({"in_process": fast, "command": command}), flush=True)
    report(sizes["jobs"], fast, command)


if __name__ == "__main__":
    main()

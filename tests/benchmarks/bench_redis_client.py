"""What hiredis saves a worker: CPU per job with redis-py's C parser (hiredis) against its
pure-Python parser, in the same run.

Run:  .venv/bin/python -m tests.benchmarks.bench_redis_client [--jobs 500] [--rounds 3]

Why: every Redis round trip of a worker (the job store's script calls, kombu's broker reads,
unacked entries and acks, the dispatcher's publishes) goes through redis-py, which parses
replies and packs commands in Python unless hiredis can be imported. Each round measures both
ways, in turn (which goes first alternates): segq's own steps per job with no Celery
(``bench_pipeline``'s steps-alone child), a segq worker's CPU per job end to end, and a raw
Celery no-op task's (``bench_pipeline``'s baseline of (a), which hiredis speeds up too). The
pure-Python way runs the same child processes with a directory first on ``PYTHONPATH`` whose
``hiredis`` module raises ImportError, so redis-py falls back as it does where hiredis is
not installed; the run checks that each way's children see what they should. Each figure is
the median over the rounds. Everything is on 127.0.0.1: a private redis-server and the
sandbox, both stopped here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from shared.local_redis import start_local_redis
from shared.settings import Settings
from tests.benchmarks.bench_pipeline import (
    Bench,
    celery_noop_per_s,
    segq_jobs_per_s,
    steps_alone_cpu_ms,
)
from tests.benchmarks.support import command_line
from tests.support.fleet import REPO, segq_env

HIREDIS = "hiredis"
PURE_PYTHON = "pure-Python parser (baseline)"
FIGURES = {
    "steps": "segq's own steps per job, no Celery (one thread)",
    "worker": "segq worker CPU per job end to end (user + system)",
    "noop": "Celery no-op task's worker CPU per task",
}
HIDE_HIREDIS = "raise ImportError('hidden by bench_redis_client')\n"


def way_envs(tmp: Path) -> dict[str, dict[str, str]]:
    """Each way's additions to its children's environment."""
    hiding = tmp / "no-hiredis"
    hiding.mkdir()
    (hiding / "hiredis.py").write_text(HIDE_HIREDIS)
    python_path = os.pathsep.join([str(hiding), segq_env()["PYTHONPATH"]])
    return {HIREDIS: {}, PURE_PYTHON: {"PYTHONPATH": python_path}}


def check_parser(way: str, env: dict[str, str]) -> None:
    """A child with ``env`` uses hiredis exactly when ``way`` says so (else the run compares
    nothing)."""
    probe = "import redis.utils; print(redis.utils.HIREDIS_AVAILABLE)"
    seen = subprocess.run([sys.executable, "-c", probe], env=segq_env(**env), cwd=REPO,
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    if seen != str(way == HIREDIS):
        raise RuntimeError(f"{way}: a child's redis-py has HIREDIS_AVAILABLE={seen}")


def measure(jobs: int, rounds: int, concurrency: int) -> dict[str, dict[str, list[float]]]:
    samples = {way: {name: [] for name in FIGURES} for way in (HIREDIS, PURE_PYTHON)}
    with start_local_redis() as server, tempfile.TemporaryDirectory() as tmp:
        envs = way_envs(Path(tmp))
        for way, env in envs.items():
            check_parser(way, env)
        bench = Bench(server.url, Path(tmp), concurrency)
        for n in range(rounds):
            order = list(envs) if n % 2 == 0 else list(reversed(envs))
            for way in order:
                env = envs[way]
                figures = samples[way]
                figures["steps"].append(steps_alone_cpu_ms(bench, jobs, **env))
                figures["worker"].append(segq_jobs_per_s(bench, jobs, **env)["cpu_ms"])
                figures["noop"].append(celery_noop_per_s(bench, jobs, **env)["cpu_ms"])
                done = ", ".join(f"{name} {v[-1]:.2f} ms" for name, v in figures.items())
                print(f"round {n + 1} {way}: {done}", flush=True)
    return samples


def report(samples: dict[str, dict[str, list[float]]], jobs: int, rounds: int) -> None:
    median = {way: {name: statistics.median(v) for name, v in figures.items()}
              for way, figures in samples.items()}  # fmt: skip
    width = max(map(len, FIGURES.values()))
    print(f"{'CPU ms (median of rounds)':<{width}}  {HIREDIS:>8}  {'pure-Python':>11}  ratio")
    for name, label in FIGURES.items():
        ours, base = median[HIREDIS][name], median[PURE_PYTHON][name]
        print(f"{label:<{width}}  {ours:8.2f}  {base:11.2f}  x{ours / base:.2f}")
    for way, figures in median.items():
        print(f"{way}: (a) at most, from the steps alone (no-op CPU / steps CPU): "
              f"{figures['noop'] / figures['steps']:.2f}; worker CPU per job / no-op's: "
              f"x{figures['worker'] / figures['noop']:.2f}")  # fmt: skip
    print(f"{rounds} rounds of {jobs} jobs (and no-op tasks) each way")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs (and no-op tasks) per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int,
                        default=Settings.model_fields["worker_concurrency"].default)  # fmt: skip
    args = parser.parse_args()
    print("command:", command_line(), flush=True)
    report(measure(args.jobs, args.rounds, args.concurrency), args.jobs, args.rounds)


if __name__ == "__main__":
    main()

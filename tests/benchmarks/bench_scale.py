"""Scale: Redis memory per finished job, producer memory and speed on a huge batch, status latency
at a million jobs, and what the broker holds while they wait (issue 9).

Run:  .venv/bin/python tests/benchmarks/bench_scale.py [--quick]

Everything runs on private redis-servers on loopback ports (``start_local_redis``), started and
stopped here: one is the job store, another the broker, so each one's memory is its own. Figures
that depend on the machine are ratios to baselines measured in the same run:
- memory per finished job: ``used_memory`` growth over N jobs taken through every worker step to
  completed, against Celery's Redis result backend storing the same outputs and metrics as the
  return value of N tasks (the issue measured 1.07 KB per task);
- enqueue rate: lines per second of the producer (a subprocess, wall time) against a subprocess
  publishing the same lines one by one with plain ``apply_async``;
- broker memory with the big batch queued: after dispatcher steps (the workers' own code), against
  what the same number of plain Celery messages takes (bytes per message from the baseline).
The producer is ``segq batch`` when that command exists; until then it is the streamed enqueue
``segq batch`` performs, run here as a subprocess: the file read line by line, each line
validated as a ``GenerationRequest``, ``JobStore.add_jobs`` every 1,000 lines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from celery import Celery

from shared import redis_keys
from shared.dispatch_queue import DispatchQueue
from shared.job_store import JobOptions, JobStore, NewJob, batch_job_id
from shared.local_redis import start_local_redis
from shared.request_model import GenerationRequest
from shared.settings import load_settings
from tests.benchmarks.support import client_for, command_line, verdict
from tests.support.finished_jobs import METRICS, OUTPUT_URL, run_dispatched_jobs
from tests.support.fleet import REPO, segq_env

SELF = [sys.executable, "-m", "tests.benchmarks.bench_scale"]
"""This benchmark in a child process (the enqueue, publish and dispatcher runs measured apart)."""
PROMPT = (
    "a lighthouse on a basalt cliff at dusk, volumetric light through sea mist, "
    "35mm film photo, line {n}"
)
CHUNK = 1000
API_KEY = "SG_bench_scale_key"
BROKER_QUEUES = ("segq-submits", "segq-polls")
SIZES = {
    "full": {"jobs": 100_000, "lines": 1_000_000, "publish": 50_000, "window": 500},
    "quick": {"jobs": 2_000, "lines": 20_000, "publish": 5_000, "window": 500},
}
STREAMED_ENQUEUE = "streamed enqueue (JobStore.add_jobs per 1,000 lines; no segq batch yet)"
TARGETS = {"bytes_per_job": 1024, "producer_rss_mb": 150, "enqueue_ratio": 2, "status_s": 1.0}


def stored_bytes(client: redis.Redis) -> int:
    """used_memory less connections' buffers."""
    memory = client.info("memory")
    return memory["used_memory"] - memory["mem_clients_normal"]


def rate_log_bytes(client: redis.Redis) -> int:
    """The rate limiter's log of calls in the last minute: bounded by the call rate, expires
    two minutes after the last call, so not memory a finished job keeps."""
    keys = list(client.scan_iter(redis_keys.PREFIX + "rate:*"))
    return sum(client.memory_usage(key, samples=0) or 0 for key in keys)


def bench_settings(store_url: str, **env: str) -> dict[str, str]:
    return {"SEGQ_REDIS_URL": store_url, "SEGMIND_API_KEY": API_KEY, **env}


def segq_bytes_per_finished_job(url: str, jobs: int) -> dict[str, float]:
    """Redis memory per job after N jobs went through every worker step to completed."""
    client = client_for(url)
    settings = load_settings(bench_settings(url, SEGQ_BROKER_WINDOW="100000"))
    queue = DispatchQueue(JobStore(client, retention_s=settings.job_retention_s), settings)
    add_lines(queue.store, "warm", 1)
    run_dispatched_jobs(queue, 1)  # scripts loaded, fleet-wide counters made
    before = stored_bytes(client) - rate_log_bytes(client)
    add_lines(queue.store, "mem", jobs)
    ended = run_dispatched_jobs(queue, jobs)
    rate_log = rate_log_bytes(client)
    per_job = (stored_bytes(client) - rate_log - before) / jobs
    sample = redis_keys.job(batch_job_id("mem", jobs // 2))
    figures = {
        "jobs_finished": ended,
        "bytes_per_job": per_job,
        "sample_record_bytes": client.memory_usage(sample, samples=0),
        "sample_record_listpack": client.object("encoding", sample) == "listpack",
        "rate_log_kb": rate_log / 1024,
    }
    client.close()
    return figures


def add_lines(store: JobStore, batch_id: str, lines: int) -> None:
    store.open_batch(batch_id, defaults={}, options=JobOptions(), source=f"{batch_id}.txt")
    for first in range(1, lines + 1, CHUNK):
        chunk = range(first, min(first + CHUNK, lines + 1))
        store.add_jobs([NewJob(batch_job_id(batch_id, n), {"prompt": PROMPT.format(n=n)}, n)
                        for n in chunk], batch_id=batch_id, options=JobOptions())  # fmt: skip


def celery_result_bytes_per_task(url: str, tasks: int) -> float:
    """Celery's Redis result backend keeping N tasks' return values: the same outputs and
    metrics a finished segq job keeps (without its parameters, state or timestamps)."""
    client = client_for(url)
    app = Celery("baseline", broker=url, backend=url)
    backend = app.backend
    backend.mark_as_done("warm", {"outputs": [], "metrics": METRICS})
    before = stored_bytes(client)
    for n in range(tasks):
        task_id = f"0f1e2d3c-4b5a-6978-8796-{n:012x}"
        outputs = [OUTPUT_URL.format(request_id=task_id)]
        backend.mark_as_done(task_id, {"outputs": outputs, "metrics": METRICS})
    per_task = (stored_bytes(client) - before) / tasks
    client.close()
    return per_task


def write_batch_file(path: Path, lines: int) -> None:
    with path.open("w") as out:
        for n in range(1, lines + 1):
            out.write(PROMPT.format(n=n) + "\n")


def segq_has(command: str) -> bool:
    probe = [sys.executable, "-m", "producer", command, "--help"]
    return subprocess.run(probe, capture_output=True, env=segq_env(), cwd=REPO).returncode == 0


def producer_command(path: Path, batch_id: str, real_command: bool) -> list[str]:
    if real_command:
        return [sys.executable, "-m", "producer", "batch", str(path), "--batch-id", batch_id]
    return [*SELF, "--stream-enqueue", str(path), "--batch-id", batch_id]


def run_child(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Runs a producer subprocess; returns (wall seconds, its own peak RSS in MB)."""
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}")
    return elapsed, usage.ru_maxrss / 1024


def stream_enqueue(path: Path, batch_id: str) -> None:
    """What `segq batch` does with a file of prompts, until that command exists: flat memory
    (a line at a time, 1,000 jobs per pipelined round trip), every line validated."""
    store = JobStore.from_settings(load_settings())
    store.open_batch(batch_id, defaults={}, options=JobOptions(), source=str(path))
    chunk: list[NewJob] = []
    with path.open() as lines:
        for n, line in enumerate(lines, start=1):
            params = GenerationRequest(prompt=line.rstrip("\n")).stored_params()
            chunk.append(NewJob(batch_job_id(batch_id, n), params, n))
            if len(chunk) == CHUNK:
                store.add_jobs(chunk, batch_id=batch_id, options=JobOptions())
                chunk = []
    if chunk:
        store.add_jobs(chunk, batch_id=batch_id, options=JobOptions())


def publish_one_by_one(path: Path, broker_url: str) -> None:
    """The baseline: a plain Celery task per line, published with apply_async one by one."""
    app = Celery("baseline", broker=broker_url)

    @app.task(name="baseline.generate", ignore_result=True)
    def generate(prompt: str) -> None: ...

    with path.open() as lines:
        for line in lines:
            generate.apply_async(kwargs={"prompt": line.rstrip("\n")})


def run_dispatcher(steps: int) -> None:
    """Dispatcher steps as a worker takes them (its thread's code, its publishing), with no
    worker consuming: the broker fills to the window and no further."""
    from workers.dispatcher import Dispatcher
    from workers.runtime import runtime
    from workers.tasks import publish_plan

    rt = runtime()
    dispatcher = Dispatcher(rt.queue, publish_plan, idle_s=rt.settings.dispatch_idle_s)
    for _ in range(steps):
        dispatcher.step()


def enqueue_rates(store_url: str, broker_url: str, path: Path, real: bool) -> dict[str, float]:
    """The same lines enqueued by the producer and published one by one with apply_async."""
    broker = client_for(broker_url)
    before = stored_bytes(broker)
    publish = [*SELF, "--publish-one-by-one", str(path)]
    baseline_s, _ = run_child(
        publish, segq_env(**bench_settings(store_url, SEGQ_BROKER_URL=broker_url))
    )
    messages = broker.llen("celery")
    message_bytes = (stored_bytes(broker) - before) / messages
    broker.flushall()
    broker.close()
    segq_s, _ = run_child(
        producer_command(path, "rate", real), segq_env(**bench_settings(store_url))
    )
    lines = sum(1 for _ in path.open())
    return {
        "apply_async_per_s": lines / baseline_s,
        "producer_per_s": lines / segq_s,
        "ratio": baseline_s / segq_s,
        "celery_message_bytes": message_bytes,
    }


def status_latency_s(store_url: str, batch_id: str, real: bool) -> tuple[float, str]:
    """`segq status BATCH` wall time if the command exists, else the store call it makes."""
    if real:
        command = [sys.executable, "-m", "producer", "status", batch_id]
        start = time.perf_counter()
        subprocess.run(command, env=segq_env(**bench_settings(store_url)), cwd=REPO,
                       check=True, stdout=subprocess.DEVNULL, timeout=60)  # fmt: skip
        return time.perf_counter() - start, "segq status (subprocess, wall)"
    store = JobStore(client_for(store_url), retention_s=3600)
    timings = []
    for _ in range(20):
        start = time.perf_counter()
        store.get_batch(batch_id).eta_s(time.time())
        timings.append(time.perf_counter() - start)
    store.redis.close()
    return statistics.median(timings), "JobStore.get_batch (median of 20)"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument("--stream-enqueue", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--publish-one-by-one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--run-dispatcher", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stream_enqueue:
        return stream_enqueue(args.stream_enqueue, args.batch_id)
    if args.publish_one_by_one:
        return publish_one_by_one(args.publish_one_by_one, load_settings().effective_broker_url)
    if args.run_dispatcher:
        return run_dispatcher(args.run_dispatcher)
    sizes = SIZES["quick" if args.quick else "full"]
    print("command:", command_line(), flush=True)
    print(f"sizes: {sizes}", flush=True)
    results = run_all(sizes)
    print(json.dumps(results, default=str), flush=True)
    report(results)
    return None


def run_all(sizes: dict[str, int]) -> dict[str, object]:
    real = segq_has("batch")
    results: dict[str, object] = {"producer": "segq batch" if real else STREAMED_ENQUEUE}
    with start_local_redis() as store_redis, start_local_redis() as broker_redis, \
            tempfile.TemporaryDirectory() as tmp:  # fmt: skip
        store_url, broker_url = store_redis.url, broker_redis.url
        results["memory"] = segq_bytes_per_finished_job(store_url, sizes["jobs"])
        client_for(store_url).flushall()
        results["celery_result_bytes"] = celery_result_bytes_per_task(broker_url, sizes["jobs"])
        client_for(broker_url).flushall()
        small = Path(tmp) / "small.txt"
        write_batch_file(small, sizes["publish"])
        results["rates"] = enqueue_rates(store_url, broker_url, small, real)
        client_for(store_url).flushall()
        big = Path(tmp) / "big.txt"
        write_batch_file(big, sizes["lines"])
        env = segq_env(**bench_settings(store_url))
        big_s, peak_mb = run_child(producer_command(big, "big", real), env)
        store = client_for(store_url)
        results["big"] = {"lines": sizes["lines"], "per_s": sizes["lines"] / big_s,
                          "peak_rss_mb": peak_mb,
                          "queued": store.hget(redis_keys.batch("big"), "queued"),
                          "store_mb": stored_bytes(store) / 2**20}  # fmt: skip
        results["status"] = status_latency_s(store_url, "big", segq_has("status"))
        results["broker"] = broker_while_queued(store_url, broker_url, sizes["window"])
        start = time.perf_counter()
        JobStore(store, retention_s=3600).cancel_batch("big")
        results["cancel_s"] = time.perf_counter() - start
        store.close()
    return results


def broker_while_queued(store_url: str, broker_url: str, window: int) -> dict[str, float]:
    broker = client_for(broker_url)
    before = stored_bytes(broker)
    env = segq_env(**bench_settings(store_url, SEGQ_BROKER_URL=broker_url,
                                    SEGQ_BROKER_WINDOW=str(window)))  # fmt: skip
    run_child([*SELF, "--run-dispatcher", str(window // 64 + 5)], env)
    figures = {queue: broker.llen(queue) for queue in BROKER_QUEUES}
    figures["window"] = window
    figures["broker_kb"] = (stored_bytes(broker) - before) / 1024
    broker.close()
    return figures


def report(results: dict[str, object]) -> None:
    """The results table: figure, value, and the target or the same run's baseline."""
    memory, rates, big, broker = (results[k] for k in ("memory", "rates", "big", "broker"))
    celery_bytes = results["celery_result_bytes"]
    status_s, status_how = results["status"]
    plain_mb = rates["celery_message_bytes"] * big["lines"] / 2**20
    rows = [
        ("producer measured", results["producer"], ""),
        (f"Redis bytes per finished job ({memory['jobs_finished']:,} jobs, indexes included)",
         f"{memory['bytes_per_job']:.0f} B",
         verdict(memory["bytes_per_job"] <= TARGETS["bytes_per_job"], "<= 1024 B")),
        ("one finished record (MEMORY USAGE, encoding)",
         f"{memory['sample_record_bytes']} B, "
         f"{'listpack' if memory['sample_record_listpack'] else 'NOT listpack'}", ""),
        ("Celery Redis result backend, same outputs+metrics as return value",
         f"{celery_bytes:.0f} B/task", f"segq/celery {memory['bytes_per_job'] / celery_bytes:.2f}"),
        ("rate limiter's call log (last minute; not per job)", f"{memory['rate_log_kb']:.0f} KB",
         ""),
        (f"producer peak RSS, {big['lines']:,} lines", f"{big['peak_rss_mb']:.1f} MB",
         verdict(big["peak_rss_mb"] < TARGETS["producer_rss_mb"], "< 150 MB")),
        ("enqueue: producer lines/s vs apply_async one by one/s",
         f"{rates['producer_per_s']:,.0f} vs {rates['apply_async_per_s']:,.0f}",
         verdict(rates["ratio"] >= TARGETS["enqueue_ratio"], f"ratio {rates['ratio']:.2f} >= 2")),
        (f"enqueue of the {big['lines']:,}-line batch", f"{big['per_s']:,.0f} lines/s", ""),
        (f"job store with it queued ({big['queued']} queued)", f"{big['store_mb']:.0f} MB",
         f"{big['store_mb'] * 2**20 / big['lines']:.0f} B per queued job"),
        (f"status of that batch: {status_how}", f"{status_s * 1000:.1f} ms",
         verdict(status_s < TARGETS["status_s"], "< 1 s")),
        (f"broker with it queued (window {broker['window']})",
         f"{broker['segq-submits']} submits + {broker['segq-polls']} polls, "
         f"{broker['broker_kb']:.0f} KB",
         f"plain apply_async: {big['lines']:,} msgs, {plain_mb:,.0f} MB"),
        ("cancel of that batch", f"{results['cancel_s'] * 1000:.1f} ms", ""),
    ]  # fmt: skip
    width = max(len(row[0]) for row in rows)
    value_width = max(len(row[1]) for row in rows[1:])
    for figure, value, against in rows:
        print(f"{figure:<{width}}  {value:<{value_width}}  {against}")


if __name__ == "__main__":
    main()

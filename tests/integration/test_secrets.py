"""The API key never enters Redis, a Celery message, a log line or Flower (issue 7).

A real worker at debug log level and Flower run a batch with failures, retries and 429s on a
sandbox that accepts only one distinctive key (so the worker provably sent it). Then every
place segq writes is scanned for that key, plain and encoded (``tests/support/secret_scan``):
every Redis key and value of every type; every command sent to Redis during the run, through
``MONITOR``, which holds each broker message as it was published (kombu's LPUSH), each event
(PUBLISH) and each script's arguments, also those consumed and gone by the end; the worker's
and Flower's output; Flower's API and pages. The broker is the test's Redis, so ``MONITOR``
sees every message (RabbitMQ runs of the fleet tests carry the same task bodies: job ids).
The sandbox's own request log is not ours and is not scanned.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis
from celery import Celery

from shared.job_model import JobState
from shared.job_store import JobOptions, JobStore, NewJob
from shared.local_redis import free_port
from shared.sandbox import RunningSandbox, SandboxConfig, start_sandbox
from tests.support.fleet import STARTUP_S, Process, segq_env, wait_until
from tests.support.secret_scan import RedisMonitor, leaks_in, redis_leaks

pytestmark = pytest.mark.integration

SECRET = f"SG_secret+scan/{uuid.uuid4().hex}"
"""Distinctive, and with characters that URL-encoding changes, so that form is looked for too."""
FLOWER_AUTH = ("ops", "flower-secret-scan-password")
FAULTY_UPSTREAM = {
    "time_scale": 0.1, "random_seed": 17, "api_keys": [SECRET],
    "error_500_probability": 0.08, "error_503_probability": 0.05, "drop_probability": 0.05,
    "submit_rpm": 6, "rate_window_s": 2.0,
    "fail_error": "NSFW content detected. Try running it again, or try a different prompt.",
}  # fmt: skip
JOBS = 18
FAILING = 3
FLOWER_TASK_PAGES = 40


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(SandboxConfig.model_validate(FAULTY_UPSTREAM)) as running:
        yield running


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for process in started:
        process.stop()


def env(redis_url: str, sandbox: RunningSandbox, tmp_path: Path) -> dict[str, str]:
    return segq_env(SEGQ_REDIS_URL=redis_url, SEGMIND_API_KEY=SECRET,
                    SEGMIND_BASE_URL=sandbox.url, SEGQ_RESULTS_DIR=str(tmp_path / "results"),
                    SEGQ_LOG_LEVEL="DEBUG", SEGQ_MAX_ATTEMPTS="12",
                    SEGQ_FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH))  # fmt: skip


def start_flower(environ: dict[str, str], tmp_path: Path, processes: list[Process]) -> str:
    port = free_port()
    flower = Process(["flower", f"--port={port}"], environ, tmp_path / "flower.log")
    processes.append(flower)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(trust_env=False, timeout=5) as client:
        wait_until(lambda: client.get(f"{url}/healthcheck").status_code == 200,
                   "Flower answers", STARTUP_S, [flower])  # fmt: skip
    return url


def start_worker(environ: dict[str, str], tmp_path: Path, processes: list[Process]) -> str:
    hostname = f"secrets-{uuid.uuid4().hex[:6]}@127.0.0.1"
    args = ["worker", "--concurrency=8", f"--hostname={hostname}", "--loglevel=DEBUG"]
    worker = Process(args, environ, tmp_path / "worker.log")
    processes.append(worker)
    wait_until(lambda: "ready." in worker.output(1_000_000), "worker ready", STARTUP_S, [worker])
    return hostname


def enable_task_events(redis_url: str, hostname: str) -> None:
    """What Flower broadcasts every 5 s, sent once and confirmed by the worker."""
    control = Celery(broker=redis_url)
    try:
        replies = control.control.broadcast("enable_events", destination=[hostname],
                                            reply=True, timeout=10)  # fmt: skip
        assert replies and hostname in replies[0], replies
    finally:
        control.close()


def run_batch(store: JobStore, processes: list[Process]) -> list:
    prompts = [f"a quiet harbour at dawn, plate {n}" for n in range(JOBS - FAILING)]
    prompts += [f"a crowd at night [fail] {n}" for n in range(FAILING)]
    jobs = [NewJob(f"s{uuid.uuid4().hex[:12]}", {"prompt": p}) for p in prompts]
    store.add_jobs(jobs, batch_id=None, options=JobOptions())
    ids = [job.job_id for job in jobs]

    def all_ended() -> list | None:
        found = store.get_jobs(ids)
        return found if all(j is not None and j.is_terminal for j in found) else None

    return wait_until(all_ended, f"{JOBS} jobs ended", 180, processes)


def flower_tasks(url: str) -> int:
    with httpx.Client(auth=FLOWER_AUTH, trust_env=False, timeout=20) as flower:
        return len(flower.get(f"{url}/api/tasks").json())


def flower_answers(url: str, hostname: str) -> dict[str, str]:
    """Everything Flower shows about this run: its API and its pages, every task's details."""
    with httpx.Client(base_url=url, auth=FLOWER_AUTH, trust_env=False, timeout=20) as flower:
        paths = ["/api/workers?refresh=1", "/api/tasks", "/api/task/types", "/metrics", "/",
                 "/workers", "/tasks", "/broker", f"/worker/{hostname}"]  # fmt: skip
        answers = {path: flower.get(path).text for path in paths}
        task_ids = list(json.loads(answers["/api/tasks"]))[:FLOWER_TASK_PAGES]
        for task_id in task_ids:
            for path in (f"/api/task/info/{task_id}", f"/task/{task_id}"):
                answers[path] = flower.get(path).text
    return answers


@pytest.mark.timeout(360)
def test_the_key_is_nowhere_segq_writes(redis_url, sandbox, tmp_path, processes):
    # Given Flower and a worker at debug level, with Redis watched from before they start
    environ = env(redis_url, sandbox, tmp_path)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    with RedisMonitor(redis_url) as monitor:
        flower_url = start_flower(environ, tmp_path, processes)
        hostname = start_worker(environ, tmp_path, processes)
        with httpx.Client(auth=FLOWER_AUTH, trust_env=False, timeout=20) as api:
            wait_until(lambda: hostname in api.get(f"{flower_url}/api/workers?refresh=1").json(),
                       "Flower lists the worker", STARTUP_S, processes)  # fmt: skip
        # (Flower turns the worker's task events on within 5 s; do it now, so that it sees
        # every task of the batch: tests/integration/test_flower.py checks Flower's own way)
        enable_task_events(redis_url, hostname)
        # When a batch runs through 500s, 503s, dropped connections, 429s and FAILED jobs
        jobs = run_batch(JobStore(client, retention_s=3600), processes)
        wait_until(lambda: flower_tasks(flower_url) >= JOBS * 2, "Flower saw the tasks", 60,
                   processes)  # fmt: skip
        shown = flower_answers(flower_url, hostname)
        for process in processes:
            process.stop()
    # Then the batch did meet every kind of trouble, and the worker did use the key
    assert_the_batch_met_trouble(jobs, sandbox)
    assert monitor.commands and any(c.startswith("LPUSH segq-") for c in monitor.commands)
    assert "DEBUG" in processes[1].log.read_text()
    # And the key is in no Redis value, no command sent to Redis, no log and no Flower answer
    logs = {process.log.name: process.log.read_bytes() for process in processes}
    leaks = {
        "redis": redis_leaks(redis.Redis.from_url(redis_url), SECRET),
        "redis commands": monitor.leaks(SECRET),
        "logs": [f"{name}: {leaks_in(text, SECRET)}" for name, text in logs.items()
                 if leaks_in(text, SECRET)],
        "flower": [f"{path}: {leaks_in(text, SECRET)}" for path, text in shown.items()
                   if leaks_in(text, SECRET)],
    }  # fmt: skip
    assert leaks == {"redis": [], "redis commands": [], "logs": [], "flower": []}
    client.close()


def assert_the_batch_met_trouble(jobs: list, sandbox: RunningSandbox) -> None:
    totals = sandbox.truth(with_requests=False)["totals"]
    failed = [job for job in jobs if job.state is JobState.FAILED]
    assert len(failed) == FAILING and {job.error.kind for job in failed} == {"inference_failed"}
    assert sum(totals["errors_injected"].values()) + totals["dropped"] > 0
    assert sum(job.attempts for job in jobs) > 0
    assert totals["rate_limited"]["submit"] > 0
    assert totals["refused"].get("401", 0) == 0 and totals["submits"] == JOBS


def test_the_scanner_finds_a_planted_key_in_every_place_it_looks(redis_url):
    # Given the key planted in every Redis type, in a kombu-shaped message and in a published event
    raw = redis.Redis.from_url(redis_url)
    message = {"body": base64.b64encode(json.dumps([["job", SECRET]]).encode()).decode()}
    with RedisMonitor(redis_url) as monitor:
        raw.set("plain", f"x{SECRET}y")
        raw.hset("hash", "field", SECRET)
        raw.lpush("segq-submits", json.dumps(message))
        raw.sadd("set", f"key={SECRET}")
        raw.zadd("zset", {SECRET[5:] + "-not-all": 1})
        raw.xadd("stream", {"k": f"a{SECRET}"})
        raw.publish("celeryev", base64.urlsafe_b64encode(b"ab" + SECRET.encode()))
        # (counting commands is not enough: a new connection sends CLIENT SETINFO first)
        wait_until(lambda: any(c.startswith("PUBLISH celeryev") for c in monitor.commands),
                   "monitor saw the last plant", 10)  # fmt: skip
    # Then each place is found, in the form it took; a mere fragment is not
    assert [line.split(":")[0] for line in redis_leaks(raw, SECRET)] == [
        "hash", "plain", "segq-submits", "set", "stream"]  # fmt: skip
    assert any("PUBLISH celeryev" in line and "base64url+1" in line
               for line in monitor.leaks(SECRET))  # fmt: skip
    assert "url-encoded" in leaks_in(f"GET /?key={quote(SECRET, safe='')}", SECRET)
    assert leaks_in(b"nothing here", SECRET) == []
    raw.close()

"""`segq flower` for real: Flower against a real worker, Redis and the sandbox, over HTTP.

It lists the worker and the tasks of a finished job (job ids as arguments, never the API key),
serves Celery task counters on /metrics, and refuses requests without credentials.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from shared.job_model import JobState
from shared.job_store import JobOptions, JobStore, NewJob
from shared.local_redis import free_port
from shared.sandbox.runner import start_sandbox
from tests.support.fleet import STARTUP_S, Process, segq_env, wait_until

pytestmark = pytest.mark.integration

API_KEY = "SG_flower_test_key_0123456789"
CREDENTIALS = ("ops", "flower-test-password")


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    running = start_sandbox()
    try:
        yield running.url
    finally:
        running.stop()


@pytest.fixture
def flower(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, Process]]:
    port = free_port()
    env = segq_env(
        SEGQ_REDIS_URL=redis_url,
        SEGMIND_API_KEY=API_KEY,
        SEGQ_FLOWER_BASIC_AUTH=":".join(CREDENTIALS),
    )
    process = Process(["flower", "--port", str(port)], env, tmp_path / "flower.log")
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(trust_env=False, timeout=5) as client:
            wait_until(lambda: client.get(f"{url}/healthcheck").status_code == 200,
                       "Flower answers", STARTUP_S, [process])  # fmt: skip
        yield url, process
    finally:
        process.stop()


@pytest.fixture
def worker(redis_url: str, sandbox_url: str, tmp_path: Path) -> Iterator[tuple[str, Process]]:
    hostname = f"segq-flower-test-{uuid.uuid4().hex[:8]}@127.0.0.1"
    env = segq_env(
        SEGQ_REDIS_URL=redis_url,
        SEGMIND_API_KEY=API_KEY,
        SEGMIND_BASE_URL=sandbox_url,
        SEGQ_RESULTS_DIR=str(tmp_path / "results"),
        SEGQ_LOG_LEVEL="DEBUG",
    )
    args = ["worker", "--concurrency=4", f"--hostname={hostname}"]
    process = Process(args, env, tmp_path / "worker.log")
    try:
        yield hostname, process
    finally:
        process.stop()


@pytest.fixture
def api(flower: tuple[str, Process]) -> Iterator[httpx.Client]:
    url, _ = flower
    with httpx.Client(base_url=url, auth=CREDENTIALS, trust_env=False, timeout=10) as client:
        yield client


def run_one_job(redis_url: str) -> str:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = JobStore(client, retention_s=3600)
        job_id = f"j{uuid.uuid4().hex[:16]}"
        options = JobOptions(priority="interactive")
        store.add_jobs([NewJob(job_id, {"prompt": "a lighthouse at dusk"})], batch_id=None,
                       options=options)  # fmt: skip
        assert store.wait_job(job_id, timeout_s=60).state is JobState.COMPLETED
        return job_id
    finally:
        client.close()


def tasks_of(api: httpx.Client, job_id: str) -> dict[str, dict]:
    """Flower's finished tasks whose arguments name the job, by task name."""
    tasks = api.get("/api/tasks").json().values()
    return {
        task["name"]: task
        for task in tasks
        if job_id in (task.get("args") or "") and task["state"] == "SUCCESS"
    }


def shown_job(api: httpx.Client, job_id: str) -> tuple[str, dict[str, dict]] | None:
    """The job and its submit and poll tasks once Flower shows both, or None within 3 s."""
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        tasks = tasks_of(api, job_id)
        if {"segq.submit", "segq.poll"} <= set(tasks):
            return job_id, tasks
        time.sleep(0.2)
    return None


def test_flower_lists_the_worker_and_the_tasks_of_a_finished_job(flower, worker, api, redis_url):
    # Given Flower and a worker that Flower sees
    _, flower_process = flower
    hostname, worker_process = worker
    wait_until(lambda: hostname in api.get("/api/workers", params={"refresh": 1}).json(),
               "Flower lists the worker", STARTUP_S, [worker_process])  # fmt: skip
    # When jobs run to the end, one after another (workers start without task events, and
    # Flower turns them on within 5 s of starting: the first jobs may pass unseen)
    job_id, tasks = wait_until(lambda: shown_job(api, run_one_job(redis_url)),
                               "Flower shows a job's tasks", 40,
                               [flower_process, worker_process])  # fmt: skip
    # Then Flower shows its submit and poll tasks, with the job id as their argument
    assert tasks["segq.submit"]["args"] == repr((job_id,))
    assert tasks["segq.submit"]["worker"] == hostname
    # And /metrics counts them for Prometheus
    succeeded = counter_value(api.get("/metrics").text, "flower_events_total",
                              task="segq.submit", type="task-succeeded")  # fmt: skip
    assert succeeded >= 1
    # And nothing Flower serves contains the API key
    for path in ("/api/workers", "/api/tasks", "/metrics", "/api/task/types"):
        assert API_KEY not in api.get(path).text, path


def test_flower_sees_every_task_of_a_busy_worker_end(flower, worker, api, redis_url):
    # Given Flower seeing a worker's task events (one job shown end to end)
    _, flower_process = flower
    _, worker_process = worker
    wait_until(lambda: shown_job(api, run_one_job(redis_url)), "Flower shows a job's tasks",
               60, [flower_process, worker_process])  # fmt: skip
    # When 120 jobs run at once, four task threads sending events while the loop flushes them
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = JobStore(client, retention_s=3600)
        ids = [f"busy{n}" for n in range(120)]
        store.add_jobs([NewJob(job_id, {"prompt": f"a pebble {job_id}"}) for job_id in ids],
                       batch_id=None, options=JobOptions())  # fmt: skip
        assert all(store.wait_job(job_id, timeout_s=120).state is JobState.COMPLETED
                   for job_id in ids)  # fmt: skip
    finally:
        client.close()

    # Then Flower shows every one of their tasks ended (none left RECEIVED or STARTED)
    def states() -> Counter[str]:
        tasks = api.get("/api/tasks").json().values()
        return Counter(task["state"] for task in tasks if "'busy" in (task.get("args") or ""))

    time.sleep(3)  # the worker flushes its buffered events every second or 24 events
    seen = states()
    assert set(seen) == {"SUCCESS"} and seen["SUCCESS"] >= 2 * len(ids), seen


def counter_value(text: str, family_name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == family_name and labels.items() <= sample.labels.items():
                total += sample.value
    return total


@pytest.mark.parametrize("path", ["/", "/workers", "/api/workers", "/api/tasks"])
def test_requests_without_valid_credentials_are_refused(flower, path):
    url, _ = flower
    with httpx.Client(base_url=url, trust_env=False, timeout=10) as anonymous:
        assert anonymous.get(path).status_code == 401
        assert anonymous.get(path, auth=(CREDENTIALS[0], "wrong")).status_code == 401


def test_flower_listens_on_loopback_and_keeps_the_password_off_its_command_line(flower):
    url, process = flower
    assert url.startswith("http://127.0.0.1:")
    command_line = Path(f"/proc/{process.popen.pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"celery -A workers flower --address=127.0.0.1" in command_line
    assert CREDENTIALS[1].encode() not in command_line

"""What operators see of a real fleet: `segq metrics` scraped over HTTP after real workers ran
a batch against the sandbox, and the workers' own log lines (issue 6).

Every number is checked against what really happened: the job records in Redis and the
sandbox's ground truth (what Segmind would have seen), not what the workers believe.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.job_model import JobState
from shared.local_redis import free_port
from tests.support.fleet import API_KEY, STARTUP_S, Fleet, Process, wait_until

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
METRICS_SETTLE_S = 15.0
"""Workers write their metrics every second (``workers.runtime.METRICS_FLUSH_S``): a scrape
right after the jobs ended may not show the last second yet."""


@pytest.fixture
def exporter(tmp_path) -> Iterator[Any]:
    """``exporter(fleet)``: a real `segq metrics` process on the fleet's Redis; its URL."""
    processes: list[Process] = []

    def start(fleet: Fleet) -> str:
        port = free_port()
        process = Process(["metrics", "--port", str(port)], fleet.env(), tmp_path / "metrics.log")
        processes.append(process)
        url = f"http://127.0.0.1:{port}/metrics"
        wait_until(lambda: httpx.get(url, timeout=5).status_code == 200, "segq metrics answers",
                   STARTUP_S, [process])  # fmt: skip
        return url

    yield start
    for process in processes:
        process.stop()


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_once(url: str, settled: Callable[[Samples], bool]) -> Samples:
    """A scrape that shows what ``settled`` waits for (the workers' last flush)."""

    def settled_scrape() -> Samples | None:
        samples = scrape(url)
        return samples if settled(samples) else None

    return wait_until(settled_scrape, "metrics flushed", METRICS_SETTLE_S)


def answers(samples: Samples, kind: str, status_class: str = "2") -> float:
    """Answers to ``kind`` calls whose HTTP status starts with ``status_class``."""
    return sum(
        value
        for (name, labels), value in samples.items()
        if name == "segq_upstream_answers_total"
        and dict(labels)["kind"] == kind
        and dict(labels)["http_status"].startswith(status_class)
    )


def test_metrics_after_a_batch_match_the_job_records_and_the_sandbox(make_fleet, exporter):
    # Given two worker processes and the exporter on the same Redis
    fleet = make_fleet()
    fleet.start_worker(concurrency=2)
    fleet.start_worker(concurrency=2)
    url = exporter(fleet)
    # When a small batch runs to its end
    jobs = fleet.wait_all(fleet.add({"prompt": f"a harbour {n}"} for n in range(12)), 60)
    samples = scrape_once(url, lambda s: s[("segq_end_to_end_seconds_count", ())] == 12)
    truth = fleet.sandbox.truth(with_requests=False)["totals"]
    # Then the job counts and Segmind's answers are what happened
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    assert samples[("segq_jobs", (("state", "completed"),))] == 12
    assert samples[("segq_jobs", (("state", "queued"),))] == 0
    assert answers(samples, "submit") == truth["submits"] == 12
    assert answers(samples, "status") == truth["status_polls"]
    assert answers(samples, "result") == truth["result_fetches"] == 12
    # And each job is in the histograms once, with its own polls and inference time
    assert samples[("segq_end_to_end_seconds_count", ())] == 12
    assert samples[("segq_polls_per_job_count", ())] == 12
    assert samples[("segq_polls_per_job_sum", ())] == sum(job.polls for job in jobs)
    inference_s = sum(job.metrics["inference_time"] for job in jobs)
    assert samples[("segq_inference_seconds_sum", ())] == pytest.approx(inference_s, rel=1e-6)
    slowest_s = max(job.finished_at - job.created_at for job in jobs)
    assert samples[("segq_end_to_end_seconds_sum", ())] <= 12 * slowest_s + 1e-6
    assert samples[("segq_fleet_paused", ())] == 0
    assert samples[("segq_redis_up", ())] == 1


def test_429s_from_the_sandbox_are_counted_and_the_learned_rate_is_served(make_fleet, exporter):
    # Given a sandbox that admits 10 submits per 5 s, and workers not told so
    fleet = make_fleet(sandbox={"submit_rpm": 10, "rate_window_s": 5.0})
    fleet.start_worker(concurrency=8)
    # When more jobs arrive at once than one window admits
    jobs = fleet.wait_all(fleet.add({"prompt": f"a pier {n}"} for n in range(25)), 90)
    # (an exporter finds new budgets every few minutes: this one starts after the 429s)
    samples = scrape_once(exporter(fleet), lambda s: answers(s, "submit", "2") == 25)
    truth = fleet.sandbox.truth(with_requests=False)["totals"]
    # Then every 429 the sandbox sent is counted, as an answer and against the submit budget
    assert {job.state for job in jobs} == {JobState.COMPLETED}
    told_off = truth["rate_limited"]["submit"]
    assert told_off >= 1
    assert samples[("segq_rate_limited_total", (("kind", "submit"),))] == told_off
    assert answers(samples, "submit", "429") == told_off
    assert answers(samples, "submit", "2") == truth["submits"] == 25
    # And the rate the fleet learned for this account is served
    rates = [v for (name, _), v in samples.items() if name == "segq_fleet_rate_per_minute"]
    assert rates and all(rate > 0 for rate in rates)


def job_lines(output: str, job_id: str) -> list[str]:
    return [line for line in output.splitlines() if f"job {job_id} " in line]


def output_once_logged(worker: Process, job_ids: list[str]) -> str:
    """The worker's output once it logged every job's end (right after recording it)."""

    def logged() -> str:
        output = worker.output(1_000_000)
        return output if all(f"job {job_id} completed" in output for job_id in job_ids) else ""

    return wait_until(logged, "a completed line for every job", 30, [worker])


def test_worker_logs_one_line_per_transition_without_key_prompt_or_http_chatter(make_fleet):
    # Given a worker logging at DEBUG, plain text
    fleet = make_fleet()
    worker = fleet.start_worker(concurrency=4, SEGQ_LOG_LEVEL="DEBUG")
    # When a few jobs with recognisable prompts run
    prompts = [f"a secret garden {n}" for n in range(5)]
    jobs = fleet.wait_all(fleet.add({"prompt": p} for p in prompts), 60)
    output = output_once_logged(worker, [job.job_id for job in jobs])
    # Then each job has one submitted and one completed line with its request id and timing
    for job in jobs:
        lines = job_lines(output, job.job_id)
        for state in ("submitted", "completed"):
            (line,) = [line for line in lines if f" {state} request_id={job.request_id}" in line]
            assert "elapsed_s=" in line
        assert len([line for line in lines if " running request_id=" in line]) <= 1
    # And neither the API key nor a prompt nor a per-request line from httpx is written
    assert API_KEY not in output
    assert not any(prompt in output for prompt in prompts)
    assert "HTTP Request:" not in output and "httpcore" not in output


def test_json_logs_carry_the_job_fields_and_prompts_when_asked_for(make_fleet):
    # Given a worker logging JSON, told to include prompts
    fleet = make_fleet()
    worker = fleet.start_worker(concurrency=4, SEGQ_LOG_JSON="true", SEGQ_LOG_PROMPTS="true")
    # When a job runs
    (job,) = fleet.wait_all(fleet.add([{"prompt": "a lantern by the sea"}]), 60)
    output = output_once_logged(worker, [job.job_id])
    entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    # Then its transitions are JSON objects with the job's fields, the prompt on its submit
    mine = [e for e in entries if e.get("job_id") == job.job_id]
    by_state = {entry["state"]: entry for entry in mine}
    assert {"submitted", "completed"} <= set(by_state)
    assert by_state["submitted"]["prompt"] == "a lantern by the sea"
    assert by_state["completed"]["request_id"] == job.request_id
    assert by_state["completed"]["elapsed_s"] >= 0
    assert all(entry["logger"] == "segq.jobs" for entry in mine)
    assert API_KEY not in json.dumps(entries)

"""`segq` as a person drives it: subprocesses against a real Redis, a real worker and the
sandbox. A 200-line file with bad lines is refused whole, `--skip-invalid` enqueues the rest, a
re-run adds nothing, status and export show every job, cancel and retry do what they say."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from shared import redis_keys
from tests.support.fleet import REPO, Fleet

pytestmark = pytest.mark.integration

COMMAND_TIMEOUT_S = 60
JOB_KEYS = {"job_id", "state", "request_id", "outputs", "metrics", "attempts", "error",
            "created_at", "finished_at"}  # fmt: skip
BAD_LINES = {
    7: ('{"prompt": "a bird", "steps": 99}', "steps"),
    30: ('{"prompt": ""}', "prompt"),
    51: ('{"prompt": "a cat", "colour": "red"}', "colour"),
    88: ('{"prompt": "a dog", "width": "wide"}', "width"),
    120: ('{"prompt": "unclosed"', None),
    150: ('["a list"]', None),
    199: ('{"prompt": "a seed", "seed": -1}', "seed"),
}


def segq(fleet: Fleet, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """Runs `segq ARGS` as a user would; fails with its output unless it exits with ``expect``."""
    done = subprocess.run([sys.executable, "-m", "producer", *args], env=fleet.env(), cwd=REPO,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)  # fmt: skip
    assert done.returncode == expect, f"segq {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def mixed_file(tmp_path: Path) -> Path:
    lines = [BAD_LINES.get(n, (json.dumps({"prompt": f"a harbour at dawn, line {n}"}), None))[0]
             for n in range(1, 201)]  # fmt: skip
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_mixed_file_is_refused_whole_then_skip_invalid_runs_the_valid_lines_once(
    make_fleet, tmp_path
):
    # Given a 200-line file with 7 invalid lines of different kinds
    fleet = make_fleet()
    path = mixed_file(tmp_path)
    # When it is submitted: refused (status 1), every bad line named, nothing enqueued
    refused = segq(fleet, "batch", str(path), "--json", expect=1)
    verdict = json.loads(refused.stdout)
    assert (verdict["batch_id"], verdict["lines"], verdict["invalid"]) == (None, 200, 7)
    assert {p["line"] for p in verdict["problems"]} == set(BAD_LINES)
    for line, (_, field) in BAD_LINES.items():
        assert f"line {line}: {field + ': ' if field else ''}" in refused.stderr
    assert not list(fleet.store.redis.scan_iter(redis_keys.BATCH_PREFIX + "*"))
    # Then --skip-invalid enqueues the 193 valid lines, and a re-run enqueues nothing new
    first = json.loads(segq(fleet, "batch", str(path), "--skip-invalid", "--json").stdout)
    again = json.loads(segq(fleet, "batch", str(path), "--skip-invalid", "--json").stdout)
    assert (first["created"], first["existing"]) == (193, 0)
    assert (again["batch_id"], again["created"], again["existing"]) == (first["batch_id"], 0, 193)
    # And lines written to another file for that batch id, on lines its jobs hold, are told
    # apart from a re-run: counted and warned about, the jobs left as they were
    moved = tmp_path / "moved.txt"
    moved.write_text("a moved line\nanother\n")
    rerun = segq(fleet, "batch", str(moved), "--batch-id", first["batch_id"], "--json")
    assert json.loads(rerun.stdout)["differing"] == 2 and "keep each line where" in rerun.stderr
    # And a worker runs each of them once, and status --json shows every job
    fleet.start_worker(concurrency=16)
    batch_id = first["batch_id"]
    fleet.wait_all([f"{batch_id}.{n}" for n in range(1, 201) if n not in BAD_LINES], 180)
    status = json.loads(segq(fleet, "status", batch_id, "--json").stdout)
    assert status["batch_id"] == batch_id and status["counts"]["completed"] == 193
    assert len(status["jobs"]) == 193 and all(set(job) >= JOB_KEYS for job in status["jobs"])
    assert sorted(fleet.submits_per_request().values()) == [1] * 193
    assert_exports_match(fleet, batch_id, status["jobs"], tmp_path)


def assert_exports_match(fleet: Fleet, batch_id: str, jobs: list[dict], tmp_path: Path) -> None:
    """Both export formats read back to the jobs status shows: line, input, state, outputs."""
    expected = [(j["line"], j["params"]["prompt"], j["state"], j["outputs"], j["error"])
                for j in jobs]  # fmt: skip
    out = tmp_path / "export.jsonl"
    segq(fleet, "export", batch_id, "--format", "jsonl", "--output", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["line"], r["params"]["prompt"], r["state"], r["outputs"], r["error"])
            for r in rows] == expected  # fmt: skip
    exported = segq(fleet, "export", batch_id, "--format", "csv")
    nowhere = segq(fleet, "export", batch_id, "--output", str(tmp_path / "no" / "x.csv"), expect=1)
    assert "cannot write it (No such file or directory)" in nowhere.stderr
    assert "expire" in exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(int(r["line"]), r["prompt"], r["state"], r["outputs"].split(), r["error_kind"] or None)
            for r in rows] == expected  # fmt: skip


def test_pause_shows_in_status_cancel_ends_queued_work_and_resume_runs_the_rest(
    make_fleet, tmp_path
):
    # Given a paused fleet with a worker, a text batch and a single job waiting
    fleet = make_fleet()
    fleet.start_worker()
    segq(fleet, "pause", "card", "expired")
    path = tmp_path / "five.txt"
    path.write_text("".join(f"a quiet lake {n}\n" for n in range(5)))
    batch_id = segq(fleet, "batch", str(path)).stdout.strip()
    job_id = segq(fleet, "submit", "--prompt", "a lone pine", "--set", "steps=6").stdout.strip()
    status = segq(fleet, "status", batch_id).stdout  # piped: one line, not wrapped at 80
    assert re.search(r"\n(fleet paused by hand since .+: card expired; segq resume .+)\n", status)
    assert "fleet paused by hand since" in segq(fleet, "status", job_id).stdout
    # When the batch is cancelled and the fleet resumed
    assert "5 of 5 jobs cancelled" in segq(fleet, "cancel", batch_id).stderr
    segq(fleet, "resume")
    # Then the single job runs to completion and the batch never reached the upstream
    fleet.wait_all([job_id], timeout_s=60)
    shown = json.loads(segq(fleet, "status", job_id, "--json").stdout)
    assert (shown["state"], shown["params"]["steps"]) == ("completed", 6)
    counts = json.loads(segq(fleet, "status", batch_id, "--json").stdout)["counts"]
    assert counts["cancelled"] == 5
    assert fleet.submits_per_request() == {"a lone pine": 1}
    # And a job cancelled while queued ends cancelled
    segq(fleet, "pause")
    queued = segq(fleet, "submit", "--prompt", "never drawn").stdout.strip()
    assert json.loads(segq(fleet, "cancel", queued, "--json").stdout)["state"] == "cancelled"


def test_retry_runs_a_batchs_failed_jobs_again_once_the_upstream_is_back(make_fleet, tmp_path):
    # Given an upstream outage longer than a one-attempt retry budget
    fleet = make_fleet(sandbox={"outage": True}, SEGQ_MAX_ATTEMPTS="1")
    fleet.start_worker()
    path = tmp_path / "lines.csv"
    path.write_text("prompt,steps\n" + "".join(f"a windmill {n},5\n" for n in range(4)))
    batch_id = json.loads(segq(fleet, "batch", str(path), "--json").stdout)["batch_id"]
    ids = [f"{batch_id}.{n}" for n in range(2, 6)]
    assert {job.state.value for job in fleet.wait_all(ids, timeout_s=60)} == {"failed"}
    # When status groups the failures, the upstream comes back and the batch is retried
    status = json.loads(segq(fleet, "status", batch_id, "--json").stdout)
    [reason] = status["failure_reasons"]
    assert (reason["kind"], reason["http_status"], reason["jobs"]) == ("retries_exhausted", 503, 4)
    assert "retries_exhausted" in segq(fleet, "status", batch_id).stdout
    fleet.sandbox.set_faults(outage=False)
    assert json.loads(segq(fleet, "retry", batch_id, "--json").stdout)["retried"] == 4
    # Then every job completes
    assert {job.state.value for job in fleet.wait_all(ids, timeout_s=60)} == {"completed"}
    assert json.loads(segq(fleet, "retry", ids[0], "--json").stdout)["retried"] == 0

"""`segq worker` refuses to start without what every task needs."""

from __future__ import annotations

from tests.support.fleet import segq_env
from tests.support.segq_cli import run_segq


def test_a_worker_without_an_api_key_refuses_to_start_instead_of_pausing_the_fleet():
    done = run_segq(segq_env(SEGQ_REDIS_URL="redis://127.0.0.1:1/0"), "worker")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("Error: SEGMIND_API_KEY is not set")


def test_worker_help_needs_no_api_key_and_says_what_segq_runs():
    done = run_segq(segq_env(SEGQ_REDIS_URL="redis://127.0.0.1:1/0"), "worker", "--help")
    assert done.returncode == 0, done.stderr
    assert "segq worker runs: celery worker --pool=threads --concurrency=" in done.stdout
    assert "--concurrency" in done.stdout.split("Celery's help:")[1]

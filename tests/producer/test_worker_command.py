"""`segq worker` refuses to start without what every task needs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from producer.commands.worker import refuse_unworkable_options
from tests.support.fleet import REPO, segq_env
from tests.support.segq_cli import run_segq


def test_a_worker_without_an_api_key_refuses_to_start_instead_of_pausing_the_fleet():
    done = run_segq(segq_env(SEGQ_REDIS_URL="redis://127.0.0.1:1/0"), "worker")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("Error: SEGMIND_API_KEY is not set")


@pytest.mark.parametrize("options", [(), ("--pool=gevent",)], ids=["plain", "refused-pool"])
def test_worker_help_needs_no_api_key_and_says_what_segq_runs(options):
    env = segq_env(SEGQ_REDIS_URL="redis://127.0.0.1:1/0")
    done = run_segq(env, "worker", *options, "--help")
    assert done.returncode == 0, done.stderr
    assert "segq worker runs: celery worker --pool=threads --concurrency=" in done.stdout
    assert "--concurrency" in done.stdout.split("Celery's help:")[1]


def test_celery_s_own_worker_command_refuses_to_start_without_an_api_key_too():
    """`celery -A workers worker` (workers/__init__.py names it) skipped segq worker's check:
    it started, and its first submit's 401 paused every worker of the fleet."""
    env = segq_env(SEGQ_REDIS_URL="redis://127.0.0.1:1/0")
    command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "--pool=solo"]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert "SEGMIND_API_KEY is not set" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        (["--pool=gevent"], "Error: --pool=gevent needs the standard library patched"),
        (["-P", "eventlet"], "Error: --pool=eventlet needs the standard library patched"),
        (["--autoscale=8,2"], "Error: --autoscale needs --pool=prefork (the threads pool"),
        (["-Psolo", "--autoscale", "4,1"], "Error: --autoscale needs --pool=prefork (the solo"),
    ],
)
def test_celery_options_that_would_fail_at_the_first_task_are_refused_at_start(options, refusal):
    """A green pool without its patching received tasks and never ran them; --autoscale on a
    pool that cannot grow ended the worker at its first busy moment, after "ready"."""
    env = segq_env(SEGQ_REDIS_URL="redis://127.0.0.1:1/0", SEGMIND_API_KEY="SG_test")
    done = run_segq(env, "worker", *options)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(refusal)


@pytest.mark.parametrize("options", [("--pool=prefork", "--autoscale=8,2"),
                                     ("-P", "processes", "--autoscale", "8,2")])  # fmt: skip
def test_autoscale_on_prefork_by_either_of_its_names_is_let_through(options):
    refuse_unworkable_options(options)  # "processes" is Celery's other name for prefork

"""The `segq` command in a pipeline whose reader stops early (`| head`): no error, no trace."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from shared import redis_keys
from tests.support.fleet import REPO, segq_env
from tests.support.segq_cli import enqueue_batch


def test_export_into_a_reader_that_stops_early_ends_quietly_with_sigpipes_status(redis_url):
    enqueue_batch(redis_url, "piped", [{"prompt": f"a pebble {n}"} for n in range(3000)])
    export = subprocess.Popen(
        [sys.executable, "-m", "producer", "export", "piped", "--format", "jsonl"],
        env=segq_env(SEGQ_REDIS_URL=redis_url), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert export.stdout is not None and export.stderr is not None
    assert export.stdout.read(100)
    export.stdout.close()  # what `head -c 100` does once it has its bytes
    status = export.wait(timeout=60)
    errors = export.stderr.read().decode()
    export.stderr.close()
    assert (status, errors) == (141, "")


def test_a_batch_interrupted_half_way_names_the_batch_that_holds_what_is_in(
    redis_url, redis_client, tmp_path
):
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"a pebble {n}\n" for n in range(200_000)))
    batch = subprocess.Popen(
        [sys.executable, "-m", "producer", "batch", str(path), "--batch-id", "halfway"],
        env=segq_env(SEGQ_REDIS_URL=redis_url), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not int(redis_client.hget(redis_keys.batch("halfway"), "total") or 0):
            assert time.monotonic() < deadline and batch.poll() is None
            time.sleep(0.02)
        batch.send_signal(signal.SIGINT)  # Ctrl-C while the second pass enqueues
        stdout, stderr = batch.communicate(timeout=60)
    finally:
        batch.kill()
    assert batch.returncode == 130 and stdout == ""
    assert "batch halfway: stopped before every line was enqueued" in stderr

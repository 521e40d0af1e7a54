"""The `segq` command at its edges: in a pipeline whose reader stops early (`| head`) no error,
no trace; a `segq batch` stopped part way names the batch that holds what is in; arguments
that are not UTF-8 get one clear line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from shared import redis_keys
from shared.job_store import JobStore
from tests.support.fleet import REPO, segq_env
from tests.support.segq_cli import enqueue_batch, run_segq


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


def stop_part_way(
    redis_url: str, path: Path, options: list[str], stop: Callable[[subprocess.Popen], None]
) -> tuple[int, str, str]:
    """Runs `segq batch` on a 200,000-line file and ``stop``s it once jobs are in (the second
    pass is enqueueing); returns its exit status, stdout and stderr."""
    path.write_text("".join(f"a pebble {n}\n" for n in range(200_000)))
    batch = subprocess.Popen(
        [sys.executable, "-m", "producer", "batch", str(path), *options],
        env=segq_env(SEGQ_REDIS_URL=redis_url), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with redis.Redis.from_url(redis_url) as client:
            deadline = time.monotonic() + 60
            batches = redis_keys.batch("*")
            while not any(int(client.hget(key, "total") or 0)
                          for key in client.scan_iter(batches, _type="HASH")):  # fmt: skip
                assert time.monotonic() < deadline and batch.poll() is None
                time.sleep(0.02)
        stop(batch)
        stdout, stderr = batch.communicate(timeout=60)
    finally:
        batch.kill()
    return batch.returncode, stdout, stderr


def test_a_batch_interrupted_half_way_names_the_batch_that_holds_what_is_in(redis_url, tmp_path):
    status, stdout, stderr = stop_part_way(
        redis_url, tmp_path / "prompts.txt", ["--batch-id", "halfway"],
        lambda batch: batch.send_signal(signal.SIGINT),  # Ctrl-C
    )  # fmt: skip
    assert status == 130 and stdout == ""
    assert "batch halfway: stopped before every line was enqueued" in stderr


def test_a_file_changed_while_enqueued_names_the_batch_its_first_lines_are_in(redis_url, tmp_path):
    # Given a batch file that is written to while its lines are enqueued (default batch id)
    path = tmp_path / "prompts.txt"

    def append_a_line(_: subprocess.Popen) -> None:
        with path.open("a") as more:
            more.write("one prompt more\n")

    status, stdout, stderr = stop_part_way(redis_url, path, ["--json"], append_a_line)
    # Then it stops, and names the batch that holds the jobs already in: a re-run without
    # that id would be a new batch (the file's content changed) and pay for them again
    assert status == 1 and "the file changed while its lines were enqueued" in stderr
    batch_id = json.loads(stdout)["batch_id"]
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    in_batch = JobStore(client, retention_s=3600).get_batch(batch_id)
    client.close()
    assert f"{in_batch.total:,} jobs of this run are in it" in stderr
    assert f"--batch-id {batch_id}" in stderr and f"segq cancel {batch_id}" in stderr


def test_an_argument_that_is_not_utf8_gets_one_clear_line_not_a_traceback(redis_url, tmp_path):
    env = segq_env(SEGQ_REDIS_URL=redis_url)
    latin1_name = tmp_path / "caf\udce9.txt"  # the bytes of "café.txt" in Latin-1
    latin1_name.write_text("a pebble\n")
    for args in (["status", "x\udce9"], ["batch", str(latin1_name)]):
        done = run_segq(env, *args)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert "\\xe9" in done.stderr and "is not UTF-8 text" in done.stderr

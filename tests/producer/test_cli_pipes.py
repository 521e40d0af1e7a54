"""The `segq` command in a pipeline whose reader stops early (`| head`): no error, no trace."""

from __future__ import annotations

import subprocess
import sys

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

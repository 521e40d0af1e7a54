"""Driving `segq` as a user does: a subprocess with its own environment, and batches to act on."""

from __future__ import annotations

import subprocess
import sys

from producer import Producer
from tests.support.fleet import REPO

SEGQ_TIMEOUT_S = 150


def run_segq(
    env: dict[str, str], *args: str, timeout_s: float = SEGQ_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """`python -m producer ARGS` to its end; its exit status, stdout and stderr."""
    return subprocess.run([sys.executable, "-m", "producer", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout_s)  # fmt: skip


def enqueue_batch(redis_url: str, batch_id: str, lines: list[dict]) -> list[str]:
    """A batch whose line n is ``lines[n-1]``, through the producer API; its job ids in order."""
    with Producer(redis_url) as producer:
        receipt = producer.enqueue_many(lines, batch_id=batch_id)
    return list(receipt.job_ids())

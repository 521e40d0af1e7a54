"""Looking for a secret everywhere segq writes: Redis (every key, every type), every command
sent to Redis while it runs (``MONITOR``: broker messages, events, script arguments), logs and
HTTP answers, in the forms a leak takes (plain, URL-encoded, base64 at any alignment, hex).

kombu puts a task's body in its Redis message base64-encoded, so a key inside a message shows
only as base64; at an unknown byte offset its encoding differs, but the groups of three bytes
that lie wholly inside the key always encode the same, so each alignment gives one needle.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import redis

MIN_BASE64_BYTES = 12
"""A base64 needle must cover at least this many bytes of the key, or it could match by chance."""


def needles(secret: str) -> dict[str, bytes]:
    """The byte strings whose presence means ``secret`` leaked, by the form they catch."""
    raw = secret.encode()
    found = {
        "plain": raw,
        "url-encoded": quote(secret, safe="").encode(),
        "form-encoded": quote_plus(secret).encode(),
        "hex": raw.hex().encode(),
    }
    for skip in range(3):
        usable = (len(raw) - skip) // 3 * 3
        core = raw[skip : skip + usable]
        if len(core) >= MIN_BASE64_BYTES:
            found[f"base64+{skip}"] = base64.b64encode(core)
            found[f"base64url+{skip}"] = base64.urlsafe_b64encode(core)
    return found


def leaks_in(content: bytes | str, secret: str) -> list[str]:
    """The forms of ``secret`` that ``content`` holds (empty: none)."""
    data = content.encode("utf-8", "surrogateescape") if isinstance(content, str) else content
    return sorted({form for form, needle in needles(secret).items() if needle in data})


def redis_values(client: redis.Redis) -> Iterable[tuple[str, bytes]]:
    """Every key of the database and everything it holds, whatever its type: (key, bytes)."""
    for key in client.scan_iter(count=500):
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        yield name, key if isinstance(key, bytes) else str(key).encode()
        for part in _contents(client, key):
            yield name, part


def _contents(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key)
    kind = kind.decode() if isinstance(kind, bytes) else kind
    if kind == "string":
        return [client.get(key) or b""]
    if kind == "hash":
        return [part for pair in client.hgetall(key).items() for part in pair]
    if kind == "list":
        return list(client.lrange(key, 0, -1))
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
    if kind == "stream":
        return [part for _, entry in client.xrange(key) for pair in entry.items() for part in pair]
    return [f"unscanned type {kind}".encode()]


def redis_leaks(client: redis.Redis, secret: str) -> list[str]:
    """``key: forms`` for each Redis key that holds the secret in any form."""
    leaks = {}
    for name, value in redis_values(client):
        forms = leaks_in(value, secret)
        if forms:
            leaks.setdefault(name, set()).update(forms)
    return [f"{name}: {sorted(forms)}" for name, forms in sorted(leaks.items())]


@dataclass
class RedisMonitor:
    """Every command any client sends to a Redis while it runs (``MONITOR``), scripts' own
    commands included: what was published and passed through, not only what stayed."""

    url: str
    commands: list[str] = field(default_factory=list)
    _client: redis.Redis | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> RedisMonitor:
        # No read timeout: a quiet spell longer than the URL's (a loaded machine between two
        # dispatcher steps) ended the reading thread and left nothing to scan.
        self._client = redis.Redis.from_url(self.url, socket_timeout=None)
        monitor = self._client.monitor()
        self._monitor = monitor.__enter__()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            for command in self._monitor.listen():
                self.commands.append(command["command"])
        except (redis.ConnectionError, OSError, ValueError, AttributeError):
            return

    def __exit__(self, *exc_info: object) -> None:
        self._monitor.connection.disconnect()
        if self._thread is not None:
            self._thread.join(5)
        if self._client is not None:
            self._client.close()

    def leaks(self, secret: str) -> list[str]:
        found = []
        for command in self.commands:
            forms = leaks_in(command, secret)
            if forms:
                found.append(f"{command[:200]}: {forms}")
        return found

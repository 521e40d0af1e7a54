"""Redis clients from segq's URLs: one Redis, a managed one over TLS, or one behind Sentinel.

``SEGQ_REDIS_URL`` (the job store) and ``SEGQ_BROKER_URL`` (Celery) take the same forms:

- ``redis://[:password@]host:6379/0``: one Redis; ``redis://user:password@...`` with ACL users.
- ``rediss://:password@host:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ssl/ca.pem``: TLS,
  as managed Redis services offer (Celery insists on ``ssl_cert_reqs`` in a rediss:// broker
  URL; ``none``, ``optional`` or ``required``).
- ``sentinel://[:password@]host1:26379/0;sentinel://host2:26379;sentinel://host3:26379``: the
  Sentinels to ask for the master named by ``SEGQ_REDIS_SENTINEL_MASTER``, kombu's own form,
  so the same URL serves the broker. The password (and user) are the master's; the database is
  the first URL's path. ``SEGQ_REDIS_SENTINEL_PASSWORD`` is for Sentinels that require one.
  After a failover, clients find the new master through the Sentinels by themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.backoff
import redis.retry
import redis.sentinel

from shared.errors import ConfigurationError
from shared.settings import Settings

SENTINEL_SCHEME = "sentinel"
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelAddress:
    """A sentinel:// URL read: where the Sentinels are, and how to log in to the master."""

    sentinels: list[tuple[str, int]]
    db: int = 0
    username: str | None = None
    password: str | None = None

    def master_kwargs(self) -> dict[str, Any]:
        logins = {"username": self.username, "password": self.password}
        return {"db": self.db, **{name: value for name, value in logins.items() if value}}


def is_sentinel_url(url: str) -> bool:
    return url.partition(";")[0].lower().startswith(SENTINEL_SCHEME + "://")


def parse_sentinel_url(url: str) -> SentinelAddress:
    """``sentinel://[user:pass@]host:port[/db];sentinel://host:port...``, kombu's form."""
    sentinels: list[tuple[str, int]] = []
    db, username, password = 0, None, None
    for index, part in enumerate(p for p in url.split(";") if p.strip()):
        parts = urlsplit(part.strip())
        if parts.scheme.lower() != SENTINEL_SCHEME or not parts.hostname:
            raise ConfigurationError(f"{part!r} is not a sentinel://host:port URL")
        try:
            sentinels.append((parts.hostname, parts.port or SENTINEL_PORT))
            if index == 0 and parts.path.strip("/"):
                db = int(parts.path.strip("/"))
        except ValueError as exc:
            raise ConfigurationError(f"{part!r}: {exc}") from None
        if password is None and parts.password is not None:
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password)
    if not sentinels:
        raise ConfigurationError(f"{url!r} names no Sentinel")
    return SentinelAddress(sentinels, db, username, password)


def redis_client(settings: Settings, url: str | None = None, **options: Any) -> redis.Redis:
    """A client of the job store's Redis (``url`` defaults to SEGQ_REDIS_URL), decoding
    replies to text unless ``decode_responses=False`` is given."""
    url = url or settings.redis_url
    options.setdefault("decode_responses", True)
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **options)
    address = parse_sentinel_url(url)
    sentinel = redis.sentinel.Sentinel(
        address.sentinels, sentinel_kwargs=_to_sentinels(settings, options)
    )
    return sentinel.master_for(_master_name(settings), **address.master_kwargs(), **options)


ASYNC_POOL_CONNECTIONS = 2000
"""Connections one asyncio client may open: a wait holds its subscription's and, while it
reads the job, a second, so about 1,000 waits started at once (Redis allows 10,000 clients by
default, shared by every process)."""
PRODUCER_POOL_CONNECTIONS = ASYNC_POOL_CONNECTIONS
"""The same for a sync ``Producer`` shared by an app's threads: redis-py 8 caps a pool at 100
connections, and a wait holds two while it reads the job, so some 50 threads waiting at once
made the rest fail with StoreError."""
RECONNECTS = 2
"""Times a producer's call reconnects when Redis closed its connection (a restart, a failover,
Redis' idle ``timeout``). redis.asyncio's pool lends a closed connection without noticing, and
a subscription (a wait) is cut the same way in both flavours, so without this the first call
on each pooled connection, and every wait in progress, failed. Only on ConnectionError: a
timeout is not retried."""


def async_redis_client(
    settings: Settings, url: str | None = None, **options: Any
) -> redis.asyncio.Redis:
    """``redis_client`` for asyncio code (``redis.asyncio``). Each wait in progress holds a
    connection for its subscription, and an asyncio app may run thousands of them at once, so
    the pool is ``ASYNC_POOL_CONNECTIONS``, not redis-py's 100."""
    url = url or settings.redis_url
    options.setdefault("decode_responses", True)
    options.setdefault("max_connections", ASYNC_POOL_CONNECTIONS)
    options.setdefault("retry", reconnects(redis.asyncio.retry.Retry))
    if not is_sentinel_url(url):
        return redis.asyncio.Redis.from_url(url, **options)
    address = parse_sentinel_url(url)
    sentinel = redis.asyncio.sentinel.Sentinel(
        address.sentinels, sentinel_kwargs=_to_sentinels(settings, options)
    )
    return sentinel.master_for(_master_name(settings), **address.master_kwargs(), **options)


def reconnects(retry_class: Any) -> Any:
    """redis-py's ``Retry`` (``redis.retry.Retry``, or the asyncio one) for ``RECONNECTS``."""
    backoff = redis.backoff.ExponentialBackoff(cap=0.5, base=0.05)
    return retry_class(backoff, RECONNECTS, (redis.ConnectionError,))


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """What kombu needs besides a sentinel:// broker URL (nothing for other URLs)."""
    if not is_sentinel_url(settings.effective_broker_url):
        return {}
    options: dict[str, Any] = {"master_name": _master_name(settings)}
    if logins := _sentinel_logins(settings):
        options["sentinel_kwargs"] = logins
    return options


def _master_name(settings: Settings) -> str:
    if not settings.redis_sentinel_master:
        raise ConfigurationError(
            "a sentinel:// URL needs SEGQ_REDIS_SENTINEL_MASTER, the name the Sentinels "
            "monitor the master by (`sentinel monitor NAME host port quorum`)"
        )
    return settings.redis_sentinel_master


def _sentinel_logins(settings: Settings) -> dict[str, Any]:
    secret = settings.redis_sentinel_password
    return {"password": secret.get_secret_value()} if secret else {}


def _to_sentinels(settings: Settings, options: dict[str, Any]) -> dict[str, Any]:
    """How to talk to the Sentinels: their password, and the caller's socket timeouts."""
    names = ("socket_timeout", "socket_connect_timeout")
    timeouts = {name: options[name] for name in names if name in options}
    return {**timeouts, **_sentinel_logins(settings)}

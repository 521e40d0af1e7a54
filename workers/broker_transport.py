"""kombu's Redis transport, with one Redis client per channel instead of one per call, and
Redis refusing writes taken for the passing trouble it is.

kombu's Redis channel builds a new ``redis.Redis`` for every call it makes outside its event
loop (``Channel.conn_or_acquire``), and a worker makes two per task: the unacked entry when a
message is delivered, and the ack. redis-py 8 fills a case-insensitive table of response
callbacks in every ``Redis.__init__``, so in the throughput benchmark (``bench_pipeline``)
py-spy put 10% of the worker's GIL time in those constructors alone. ``redis.Redis`` is
thread-safe (each command takes a connection from the channel's pool), so one client per
channel does the same work; a channel whose pool was replaced (after a reconnect) gets a new
client for the new pool.

Redis refusing a write (out of memory under ``noeviction``, a replica after a failover, a
master down) is a ``ResponseError`` to kombu, which Celery calls unrecoverable: every worker
exited, with status 0, which systemd's ``Restart=on-failure`` does not restart. Here those
errors are connection errors, so the consumer reconnects (finding a new master through the
Sentinels) and goes on when Redis takes writes again.

Otherwise the pool, the connections, the keys and the commands are kombu's.
``workers.celery_app`` selects these classes for ``redis://`` and ``sentinel://`` brokers;
``rediss://`` keeps kombu's own transport, which is also what turns TLS on for that scheme.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import MasterDownError, OutOfMemoryError, ReadOnlyError

WRITES_REFUSED = (OutOfMemoryError, ReadOnlyError, MasterDownError)


class _OneClientPerChannel:
    _reused_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # type: ignore[attr-defined]
        client = self._reused_client
        if client is None or client.connection_pool is not pool:
            client = super()._create_client()  # type: ignore[misc]
            self._reused_client = client
        return client


class Channel(_OneClientPerChannel, kombu_redis.Channel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel
    connection_errors = (*kombu_redis.Transport.connection_errors, *WRITES_REFUSED)


class SentinelChannel(_OneClientPerChannel, kombu_redis.SentinelChannel):
    pass


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
    connection_errors = (*kombu_redis.SentinelTransport.connection_errors, *WRITES_REFUSED)

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
master down, a master short of the replicas ``min-replicas-to-write`` asks for) is a
``ResponseError`` to kombu, which Celery calls unrecoverable: every worker exited, with status
0, which systemd's ``Restart=on-failure`` does not restart. Here those errors are connection
errors, so the consumer reconnects (finding a new master through the Sentinels) and goes on
when Redis takes writes again. redis-py has no class for NOREPLICAS (a plain
``ResponseError``, like a mistyped command), so this module registers one with its parsers.

Otherwise the pool, the connections, the keys and the commands are kombu's.
``workers.celery_app`` selects these classes for ``redis://``, ``unix://`` and ``sentinel://``
brokers; ``rediss://`` keeps kombu's own transport, which is also what turns TLS on for that
scheme.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis._parsers.base import BaseParser
from redis.exceptions import MasterDownError, OutOfMemoryError, ReadOnlyError, ResponseError


class NoReplicasError(ResponseError):
    """NOREPLICAS: the master takes no write while it has fewer replicas than
    ``min-replicas-to-write`` (the guard against writes lost in a Sentinel failover)."""


BaseParser.EXCEPTION_CLASSES.setdefault("NOREPLICAS", NoReplicasError)
WRITES_REFUSED = (OutOfMemoryError, ReadOnlyError, MasterDownError, NoReplicasError)


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


class QoS(kombu_redis.QoS):
    """An ack that Redis refuses still frees the message's prefetch slot: kombu's leaves it
    taken, and once the worker's prefetch count of acks had failed, its consumer asked the
    broker for nothing more, for good (the messages stay in the unacked index, which kombu
    restores after the visibility timeout; their jobs' leases publish them sooner)."""

    def ack(self, delivery_tag: str) -> None:
        try:
            super().ack(delivery_tag)
        except WRITES_REFUSED:
            super(kombu_redis.QoS, self).ack(delivery_tag)
            raise


class Channel(_OneClientPerChannel, kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel
    connection_errors = (*kombu_redis.Transport.connection_errors, *WRITES_REFUSED)


class SentinelChannel(_OneClientPerChannel, kombu_redis.SentinelChannel):
    QoS = QoS


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
    connection_errors = (*kombu_redis.SentinelTransport.connection_errors, *WRITES_REFUSED)

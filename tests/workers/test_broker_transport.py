"""The Redis broker transport that reuses one client per channel, against a real Redis."""

from __future__ import annotations

import pytest
from kombu.transport import pyamqp
from kombu.transport import redis as kombu_redis

from shared.settings import load_settings
from tests.support.brokers import round_trip
from workers import broker_transport
from workers.celery_app import create_app

SENTINELS = "sentinel://127.0.0.1:26379/0;sentinel://127.0.0.1:26380"


@pytest.mark.parametrize(
    ("broker_url", "transport"),
    [
        ("redis://127.0.0.1:6379/0", broker_transport.Transport),
        (SENTINELS, broker_transport.SentinelTransport),
        ("rediss://h:6380/0?ssl_cert_reqs=required", kombu_redis.Transport),
        ("amqp://guest:guest@127.0.0.1:5672//", pyamqp.Transport),
    ],
    ids=["redis", "sentinel", "rediss keeps kombu's (it turns TLS on)", "amqp"],
)
def test_redis_and_sentinel_brokers_get_the_reusing_transport(broker_url, transport):
    settings = load_settings({}, broker_url=broker_url, redis_sentinel_master="mymaster")
    with create_app(settings).connection_for_write() as connection:
        assert type(connection.transport) is transport  # made, not connected


def test_a_channel_reuses_its_client_until_its_pool_is_replaced(redis_url):
    app = create_app(load_settings({}, redis_url=redis_url))
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, broker_transport.Channel)
        # Two calls outside the event loop (what an ack and a delivery make) share one client
        first = channel._create_client()
        assert channel._create_client() is first
        # And the client works: a message goes through the queue and is acknowledged
        payload = round_trip(connection, "segq-transport-check")
        assert payload == {"job_id": "j1"}
        # After a reconnect replaces the pool, the channel makes a client for the new pool
        channel._disconnect_pools()
        renewed = channel._create_client()
        assert renewed is not first and renewed.connection_pool is channel.pool


@pytest.mark.parametrize("refusal", ["maxmemory", "replica"])
def test_redis_refusing_writes_is_a_connection_error_the_consumer_waits_out(redis_url, refusal):
    # Given a worker's broker channel consuming a queue
    app = create_app(load_settings({}, redis_url=redis_url))
    with app.connection_for_write() as connection:
        consumer = connection.SimpleQueue("segq-refusal-check")
        admin = connection.default_channel.client
        try:
            # When Redis refuses writes (out of memory under noeviction, or a demoted master)
            if refusal == "maxmemory":
                admin.config_set("maxmemory", "1")
            else:
                admin.config_set("replica-read-only", "yes")
                admin.replicaof("127.0.0.1", "1")  # a master that is not there: a read-only replica
            # Then kombu's periodic restore of unacked messages (a write) fails with what the
            # consumer takes for a lost connection, where it had ended the worker for good
            with pytest.raises(tuple(connection.transport.connection_errors)):
                connection.default_channel.qos.restore_visible(num=1, interval=1)
        finally:
            admin.config_set("maxmemory", "0")
            admin.replicaof("NO", "ONE")
            consumer.close()

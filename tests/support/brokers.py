"""The Celery broker of an integration test: the test's Redis, or a RabbitMQ virtual host of its
own (created and removed here, so runs never see each other's queues).

Where no RabbitMQ answers on 127.0.0.1:5672, RabbitMQ cases skip with the reason; on CI (``CI``
set) they fail instead, because CI is where both brokers must pass.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterable, Iterator
from urllib.parse import unquote, urlsplit

import pytest
from kombu import Connection

RABBITMQ_ADDRESS = ("127.0.0.1", 5672)
RABBITMQ_USER = "guest"
RABBITMQCTL_TIMEOUT_S = 30
BROKERS = ("redis", "rabbitmq")


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                   timeout=RABBITMQCTL_TIMEOUT_S)  # fmt: skip


def rabbitmq_missing() -> str | None:
    """Why RabbitMQ cannot be used here, or None when it can."""
    if shutil.which("rabbitmqctl") is None:
        return "rabbitmqctl is not on the PATH"
    try:
        socket.create_connection(RABBITMQ_ADDRESS, timeout=2).close()
    except OSError as exc:
        return f"no RabbitMQ at {RABBITMQ_ADDRESS[0]}:{RABBITMQ_ADDRESS[1]} ({exc})"
    return None


def rabbitmq_vhost(url: str) -> str:
    """The virtual host an ``amqp://`` URL names."""
    return unquote(urlsplit(url).path.lstrip("/"))


def close_rabbitmq_connections(url: str, why: str) -> None:
    """RabbitMQ closes every connection of the URL's virtual host (and no other host's), as a
    broker restart or a network cut does to the clients; they have to reconnect."""
    rabbitmqctl("close_all_connections", "--vhost", rabbitmq_vhost(url), why)


def rabbitmq_consumers(url: str) -> dict[str, int]:
    """Consumers per queue of the URL's virtual host."""
    listing = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", rabbitmq_vhost(url), "name", "consumers",
         "--no-table-headers"],
        check=True, capture_output=True, text=True, timeout=RABBITMQCTL_TIMEOUT_S,
    ).stdout  # fmt: skip
    rows = (line.split("\t") for line in listing.splitlines() if "\t" in line)
    return {name: int(count) for name, count in rows}


@pytest.fixture(scope="session")
def rabbitmq_ready() -> None:
    reason = rabbitmq_missing()
    if reason and os.environ.get("CI"):
        pytest.fail(f"RabbitMQ is required on CI: {reason}")
    if reason:
        pytest.skip(f"RabbitMQ cases need a RabbitMQ: {reason}")


@pytest.fixture
def rabbitmq_vhost_url(rabbitmq_ready: None) -> Iterator[str]:
    vhost = f"segq-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    try:
        rabbitmqctl("set_permissions", "-p", vhost, RABBITMQ_USER, ".*", ".*", ".*")
        host, port = RABBITMQ_ADDRESS
        yield f"amqp://{RABBITMQ_USER}:{RABBITMQ_USER}@{host}:{port}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(params=BROKERS)
def broker_url(request: pytest.FixtureRequest) -> str | None:
    """The broker the fleet's workers use: None for the test's Redis, else a RabbitMQ vhost.

    Every fleet test runs on both: the same guarantees must hold whichever carries the tasks."""
    if request.param == "rabbitmq":
        return request.getfixturevalue("rabbitmq_vhost_url")
    return None


class BrokerQueues:
    """Messages waiting in broker queues (taken by no worker yet), on Redis or RabbitMQ alike.

    A passive ``queue_declare`` answers with the count on both: on RabbitMQ the ready messages
    of the queue, on kombu's Redis transport the lengths of its lists. A queue nobody declared
    holds nothing; Redis says so with NOT_FOUND whenever its list is empty, and RabbitMQ closes
    the channel after NOT_FOUND, so the next count opens another.
    """

    def __init__(self, url: str) -> None:
        self.connection = Connection(url)
        self._channel = None

    def lengths(self, queues: Iterable[str]) -> dict[str, int]:
        return {queue: self.length(queue) for queue in queues}

    def length(self, queue: str) -> int:
        if self._channel is None:
            self._channel = self.connection.channel()
        try:
            return self._channel.queue_declare(queue, passive=True).message_count
        except self.connection.channel_errors:
            if not getattr(self._channel, "is_open", True):
                self._channel = None
            return 0

    def close(self) -> None:
        self.connection.close()


def round_trip(connection: Connection, queue_name: str) -> dict:
    """Puts a message on ``queue_name`` through ``connection``, takes it back and acks it;
    returns its payload (a broker check: the connection really carries messages)."""
    queue = connection.SimpleQueue(queue_name)
    try:
        queue.put({"job_id": "j1"})
        message = queue.get(timeout=5)
        message.ack()
    finally:
        queue.close()
    return message.payload

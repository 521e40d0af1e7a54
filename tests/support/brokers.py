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
from collections.abc import Iterator

import pytest

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
    """The broker the fleet's workers use: None for the test's Redis, else a RabbitMQ vhost."""
    if request.param == "rabbitmq":
        return request.getfixturevalue("rabbitmq_vhost_url")
    return None

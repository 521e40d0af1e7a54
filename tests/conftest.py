"""Fixtures every suite shares: a real redis-server of the tests' own, on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from shared.local_redis import LocalRedis, start_local_redis

pytest_plugins = ["tests.support.fleet"]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """One private redis-server for the whole run; each test gets it empty (see redis_url)."""
    with start_local_redis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()

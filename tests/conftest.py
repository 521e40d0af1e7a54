"""Fixtures every suite shares: a real redis-server of the tests' own, on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from shared.local_redis import LocalRedis, start_local_redis

pytest_plugins = ["tests.support.brokers", "tests.support.fleet"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        type=float,
        default=None,
        metavar="MINUTES",
        help="run the chaos suite (tests/integration/test_chaos.py) as a soak of this many "
        "minutes, with more jobs and repeated faults and kills; without it, the CI size runs",
    )
    parser.addoption(
        "--chaos-figures",
        default=None,
        metavar="PATH",
        help="also write the chaos suite's figures (JSON, one object per broker) to PATH",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: the chaos suite; --soak MINUTES makes it a soak")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A soak outlasts the default per-test timeout: give the chaos tests its length plus 20 min
    (its last round, up to 10 min, still finishes; then the jobs settle and are retried)."""
    minutes = config.getoption("--soak")
    if minutes is None:
        return
    for item in items:
        if item.get_closest_marker("chaos"):
            item.add_marker(pytest.mark.timeout(minutes * 60 + 1200), append=False)


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

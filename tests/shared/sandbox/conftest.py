"""A sandbox per test on a free loopback port, fast simulated time, and a client with a key."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from shared.sandbox import RunningSandbox, SandboxConfig, start_sandbox

FAST = {"time_scale": 0.02, "random_seed": 7}
"""Jobs take about 50 ms instead of 2.5 s; fault draws repeat from run to run."""

API_KEY = "test-key"


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., RunningSandbox]]:
    """Start sandboxes with FAST plus the given knobs; every one is stopped after the test."""
    started: list[RunningSandbox] = []

    def make(**knobs: object) -> RunningSandbox:
        started.append(start_sandbox(SandboxConfig.model_validate({**FAST, **knobs})))
        return started[-1]

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(make_sandbox: Callable[..., RunningSandbox]) -> RunningSandbox:
    return make_sandbox()


@pytest.fixture
def make_client(sandbox: RunningSandbox) -> Iterator[Callable[..., httpx.Client]]:
    """httpx clients on ``sandbox`` (or the given URL); closed after the test."""
    clients: list[httpx.Client] = []

    def make(url: str | None = None, api_key: str | None = API_KEY) -> httpx.Client:
        headers = {"x-api-key": api_key} if api_key else {}
        clients.append(httpx.Client(base_url=url or sandbox.url, headers=headers, timeout=10))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., httpx.Client]) -> httpx.Client:
    return make_client()

"""What a worker process talks to, made once per process after any fork.

An httpx client or Redis pool made before a prefork fork would share sockets between children
(celery-notes), so nothing here is built at import time: ``runtime()`` builds it on first use
in the process that uses it.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

import httpx

from shared.dispatch_queue import DispatchQueue
from shared.fleet_durations import FleetDurations
from shared.fleet_limiter import FleetLimiter
from shared.http_deadline import deadline_client
from shared.job_store import JobStore
from shared.metrics import FleetMetrics
from shared.segmind_client import SegmindClient
from shared.settings import Settings, get_settings

WEBHOOK_TIMEOUT_S = 10.0
"""A webhook's whole delivery, up to its status line (``shared.http_deadline``)."""
METRICS_FLUSH_S = 1.0
"""Workers add their metrics up in memory and write them this often (``FleetMetrics``)."""


@dataclass
class Runtime:
    settings: Settings
    store: JobStore
    queue: DispatchQueue
    limiter: FleetLimiter
    client: SegmindClient
    durations: FleetDurations
    webhooks: httpx.Client
    metrics: FleetMetrics
    rng: random.Random = field(default_factory=random.Random)


@functools.cache
def runtime() -> Runtime:
    settings = get_settings()
    store = JobStore.from_settings(settings)
    metrics = FleetMetrics(store.redis, flush_every_s=METRICS_FLUSH_S)
    return Runtime(
        settings=settings,
        store=store,
        queue=DispatchQueue(store, settings),
        limiter=FleetLimiter(store.redis, settings),
        client=SegmindClient.from_settings(settings, on_answer=metrics.upstream_answer),
        durations=FleetDurations(store.redis),
        webhooks=deadline_client(timeout=WEBHOOK_TIMEOUT_S, follow_redirects=False),
        metrics=metrics,
    )

"""Worker lifecycle: logging, the dispatcher and heartbeat threads that start and stop with
the worker, and the buffered metrics written as it exits.

On SIGTERM (Celery's warm shutdown) the dispatcher stops publishing, the health file says
``shutting_down`` at once (readiness fails), and tasks that start from then on give their jobs
back unstarted (``workers.draining``); Celery finishes the calls under way, and the heartbeat
goes on until the process ends, so liveness holds while the worker drains.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery.signals import setup_logging, worker_ready, worker_shutdown, worker_shutting_down

from shared.redis_connection import is_sentinel_url
from shared.settings import Settings, get_settings
from workers.celery_app import ALL_QUEUES
from workers.dispatcher import Dispatcher
from workers.draining import start_draining
from workers.health import Heartbeat
from workers.runtime import WEBHOOK_TIMEOUT_S, runtime

log = logging.getLogger("segq.worker")

REPLICA_GUARD = ("min-replicas-to-write", "min-replicas-max-lag")
"""A master's guard against writes a failover throws away; either at 0 turns it off."""

_dispatchers: list[Dispatcher] = []
_heartbeats: list[Heartbeat] = []


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    from shared.logging_setup import configure_logging

    configure_logging(get_settings())


@worker_ready.connect
def _start_dispatcher(sender: Any = None, **_: Any) -> None:
    from workers.tasks import publish_plan

    rt = runtime()
    dispatcher = Dispatcher(rt.queue, publish_plan, idle_s=rt.settings.dispatch_idle_s)
    dispatcher.start()
    _dispatchers.append(dispatcher)
    hostname = getattr(sender, "hostname", None) or "segq-worker"
    heartbeat = Heartbeat(rt.settings.health_file, hostname, lambda: dispatcher.last_step_at)
    heartbeat.start()
    _heartbeats.append(heartbeat)


@worker_ready.connect
def _warn_of_risky_settings(sender: Any = None, **_: Any) -> None:
    consumed = sender.app.amqp.queues.consume_from if sender is not None else ALL_QUEUES
    settings = get_settings()
    warnings = settings_warnings(settings)
    sentinel = is_sentinel_url(settings.redis_url)
    config_names = ("maxmemory-policy", *(REPLICA_GUARD if sentinel else ()))
    warnings += setup_warnings(set(consumed), _store_config(config_names), sentinel=sentinel)
    for warning in warnings:
        log.warning("%s", warning)


def setup_warnings(
    consumed: set[str], store_config: dict[str, str], *, sentinel: bool
) -> list[str]:
    """What this worker sees of the fleet's setup that loses or strands jobs, or pays for them
    twice, without an error: a segq queue it does not consume (``-Q``; a fleet where no worker
    does leaves those jobs waiting while their messages pile up, one more each lease); a Redis
    that may evict (an evicted record is a lost job, an evicted index strands every job it
    held); behind Sentinel, a master that takes writes no replica has (a failover throws them
    away: a request id just recorded is lost, and its job submitted again). ``store_config``
    is what ``CONFIG GET`` said of the job store's Redis (nothing where it refused)."""
    warnings = []
    missing = [queue for queue in ALL_QUEUES if queue not in consumed]
    if missing:
        warnings.append(
            f"this worker does not consume {', '.join(missing)}: unless other workers do, "
            "their jobs never move and the broker gains a message for each every lease"
        )
    policy = store_config.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        warnings.append(
            f"the job store's Redis has maxmemory-policy {policy}: under memory "
            "pressure it may evict job records (lost jobs) or segq's indexes (stuck jobs); "
            "set noeviction, as deploy/redis.conf does"
        )
    guard = [f"{name} 0" for name in REPLICA_GUARD if store_config.get(name) == "0"]
    if sentinel and guard:
        warnings.append(
            f"the job store's Redis master (Sentinel) has {' and '.join(guard)}: it takes "
            "writes no replica has, which a failover throws away, and a job whose request id "
            "was lost so is submitted (and paid for) again; set min-replicas-to-write 1 and "
            "min-replicas-max-lag 10"
        )
    return warnings


def _store_config(names: tuple[str, ...]) -> dict[str, str]:
    """Nothing where Redis does not say (``CONFIG`` renamed or refused, as managed ones may).
    One name a ``CONFIG GET``: Redis before 7 takes only one."""
    found: dict[str, str] = {}
    for name in names:
        try:
            found |= runtime().store.redis.config_get(name)
        except redis.RedisError:
            break
    return found


def settings_warnings(settings: Settings) -> list[str]:
    """Settings a worker runs with but an operator should hear about: not refused, since
    recovery tests want short leases on purpose, and a fleet may have no webhooks at all."""
    warnings = []
    if settings.lease_s < 2 * settings.http_timeout_s:
        warnings.append(
            f"SEGQ_LEASE_S={settings.lease_s:g} is less than twice SEGQ_HTTP_TIMEOUT_S="
            f"{settings.http_timeout_s:g}: a submit still waiting on Segmind when its lease "
            "runs out is published again, and Segmind may bill the job twice"
        )
    elif settings.lease_s < 2 * WEBHOOK_TIMEOUT_S:
        warnings.append(
            f"SEGQ_LEASE_S={settings.lease_s:g} is less than twice a webhook delivery's "
            f"{WEBHOOK_TIMEOUT_S:g} s: a webhook still answering when its notice's lease runs "
            "out is told of the same ending again"
        )
    if settings.job_retention_s < settings.upstream_retention_s:
        warnings.append(
            f"SEGQ_JOB_RETENTION_S={settings.job_retention_s} is less than "
            f"SEGQ_UPSTREAM_RETENTION_S={settings.upstream_retention_s}: an ended job's record "
            "(its result URLs, its request id) is gone while Segmind still keeps its result, so "
            "segq retry cannot resume polling a job that gave up, and submits (and pays) again"
        )
    if settings.webhook_secret is None:
        warnings.append(
            "SEGQ_WEBHOOK_SECRET is not set: jobs with a webhook_url are not told they ended "
            "(their deliveries say why); callbacks are not affected"
        )
    return warnings


@worker_shutting_down.connect
def _stop_dispatcher(**_: Any) -> None:
    start_draining()
    for heartbeat in _heartbeats:
        heartbeat.shutting_down()
    while _dispatchers:
        _dispatchers.pop().stop()


@worker_shutdown.connect
def _stop_heartbeat(**_: Any) -> None:
    """The worker has drained and is about to exit: its health file goes with it."""
    while _heartbeats:
        heartbeat = _heartbeats.pop()
        heartbeat.stop()
        heartbeat.path.unlink(missing_ok=True)


@worker_shutdown.connect
def _write_buffered_metrics(**_: Any) -> None:
    """The worker has drained: the metrics it added up since the last flush reach Redis."""
    runtime().metrics.close()

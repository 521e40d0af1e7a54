"""The Celery app, configured from segq's settings for I/O-bound work that never sleeps.

The broker is Redis (``SEGQ_REDIS_URL``, or ``SEGQ_BROKER_URL=redis://...``) or RabbitMQ
(``SEGQ_BROKER_URL=amqp://...``); the job store is Redis either way. Why these settings (see
``shared/celery-notes.md`` in the steering repo):

- Jobs wait in Redis, not in the broker: the dispatcher publishes only what can run now, so
  no message carries a countdown and kombu's visibility timeout never redelivers a delayed
  task. Recovery after a SIGKILL does not wait for the visibility timeout either: leases in
  the job store run out after ``lease_s`` and the work is published again; a late duplicate
  finds its claim or poll token taken and does nothing.
- ``task_acks_late``: a message is acknowledged after its task ran, so a broker restart or a
  lost connection redelivers instead of dropping. ``task_reject_on_worker_lost`` stays off:
  re-queueing without limit loops a task that kills its worker; leases already cover it.
- ``worker_cancel_long_running_tasks_on_connection_loss`` off: the threads pool cannot stop a
  running thread, and Celery's attempt raises NotImplementedError and takes the whole worker
  down (seen in ``tests/integration/test_broker_restart.py``). A task that was running when the
  connection went finishes; its late ack fails on the dead channel ("Couldn't ack", logged),
  the broker has already put the message back, and its redelivery finds the job store's claim
  or poll token taken and does nothing.
- Prefetch: ``worker_prefetch_multiplier`` 2, so a worker reserves at most twice its threads.
  On Redis that is one limit for the worker's channel; on RabbitMQ quorum queues have no
  global QoS, so Celery sets it per consumer, i.e. per queue (up to 2 x threads of each of the
  four queues), and cannot raise it later; nothing needs raising, as no message has a countdown.
  ``worker_enable_prefetch_count_reduction`` off: its restore step runs in task threads on the
  threads pool and stalled workers for good after a RabbitMQ reconnect (see the comment below).
- Reconnecting: ``broker_connection_retry`` and ``broker_connection_max_retries`` None: a worker
  outlives a broker outage of any length and consumes again when the broker is back (in the
  meantime the dispatcher's publishes fail and the leases republish that work later).
  ``broker_heartbeat`` 30 s (AMQP only): a connection whose peer vanished without closing it
  (a cut network, a frozen host) is noticed within about a minute, not the four of the default.
- No publisher confirms: a message RabbitMQ loses before it reaches its disk (a crash right
  after the publish) is published again when its job's lease runs out; confirms would make
  every dispatcher publish wait for a quorum write for no guarantee the leases do not give.
- Four queues, so polls are never stuck behind a window of submits, nor an interactive job's
  submit behind a window of bulk ones (the consumer takes from each queue in turn).
- Task messages carry job ids only (and a poll token): Flower shows what runs, not prompts.

RabbitMQ specifics are in ``broker_queues`` and ``workers/consumer.py``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from celery import Celery, bootsteps
from kombu import Queue

from shared.errors import ConfigurationError
from shared.redis_connection import broker_transport_options, is_sentinel_url
from shared.settings import Settings, get_settings
from workers.health import ConsumerStamp

SUBMIT_QUEUE = "segq-submits"
INTERACTIVE_SUBMIT_QUEUE = "segq-submits-interactive"
"""Interactive jobs' submits: in SUBMIT_QUEUE they waited behind a window of bulk submits."""
POLL_QUEUE = "segq-polls"
NOTIFY_QUEUE = "segq-notify"
ALL_QUEUES = (INTERACTIVE_SUBMIT_QUEUE, SUBMIT_QUEUE, POLL_QUEUE, NOTIFY_QUEUE)
QUORUM_DELIVERY_LIMIT = 10
BROKER_HEARTBEAT_S = 30
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
REDIS_SCHEME = "redis://"
UNIX_SCHEME = "unix"
SOCKET_SCHEME = "redis+socket"
REDIS_URL_SCHEMES = ("redis", "rediss", UNIX_SCHEME)


def celery_config(settings: Settings) -> dict[str, object]:
    """Celery's settings for segq; the same values are used by every process on the broker."""
    transport = {
        "visibility_timeout": settings.visibility_timeout_s,
        **broker_transport_options(settings),
    }
    config: dict[str, object] = {
        "broker_url": kombu_broker_url(settings.effective_broker_url),
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        "broker_heartbeat": BROKER_HEARTBEAT_S,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_prefetch_multiplier": 2,
        # After a reconnect Celery lowers the prefetch count and raises it back from the ack
        # callbacks, which on the threads pool run in task threads: on RabbitMQ that sends
        # basic_qos and reads the reply on the connection the consumer thread is draining,
        # and both stall for good (seen in test_broker_restart). Restore it at once instead.
        "worker_enable_prefetch_count_reduction": False,
        "worker_detect_quorum_queues": True,
        "worker_consumer": "workers.consumer:SegqConsumer",
        "task_serializer": "json",
        "accept_content": ["json"],
        # Task events only while a monitor asks for them: Flower turns them on in every worker
        # within 5 s of starting (and in workers started after it), as Celery intends. Sent
        # unconditionally they cost every job CPU (bench_pipeline's "with task events on").
        "worker_send_task_events": False,
        # No task-sent event: Flower lists a task from task-received on, and the event cost the
        # dispatcher a second publish per task (bench_pipeline).
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "task_queues": broker_queues(settings),
        "task_default_queue": SUBMIT_QUEUE,
        "task_routes": {
            "segq.submit": {"queue": SUBMIT_QUEUE},
            "segq.poll": {"queue": POLL_QUEUE},
            "segq.notify": {"queue": NOTIFY_QUEUE},
        },
    }
    transport_class = broker_transport(settings.effective_broker_url)
    if transport_class:
        config["broker_transport"] = transport_class
    if settings.rate_limiter == "celery" and settings.submit_rate_limit:
        config["task_annotations"] = {
            "segq.submit": {"rate_limit": f"{settings.submit_rate_limit}/m"}
        }
    return config


def kombu_broker_url(url: str) -> str:
    """The broker URL as kombu reads it, for the Redis and database the job store's redis-py
    reads from the same URL. redis-py also takes a login as a query (``?password=``), which
    kombu refuses (it reads, and masks in what it logs, only the userinfo): the login moves
    there. redis-py takes ``?db=`` before the path, kombu only the path: the database moves
    there. And kombu knows no ``unix://``, redis-py's scheme for a socket: the same socket is
    ``redis+socket://`` to kombu, its database the virtual host."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme not in REDIS_URL_SCHEMES or not (
        {"password", "db"} & query.keys() or parts.scheme == UNIX_SCHEME
    ):
        return url
    scheme, netloc, path = parts.scheme, parts.netloc, parts.path
    if "password" in query:
        user = quote(query.pop("username", None) or unquote(parts.username or ""), safe="")
        host = netloc.rpartition("@")[2]
        netloc = f"{user}:{quote(query.pop('password'), safe='')}@{host}"
    if scheme == UNIX_SCHEME:
        scheme = SOCKET_SCHEME
        query["virtual_host"] = query.pop("db", "0")
    elif "db" in query:
        path = f"/{query.pop('db')}"
    rest = f"?{urlencode(query)}" if query else ""
    return f"{scheme}://{netloc}{path}{rest}"


def broker_transport(broker_url: str) -> str | None:
    """kombu's transport with a reused Redis client (``workers/broker_transport.py``) for
    ``redis://``, ``unix://`` and ``sentinel://`` brokers; None (the URL's own) for any other."""
    if broker_url.startswith((REDIS_SCHEME, f"{UNIX_SCHEME}://")):
        return "workers.broker_transport:Transport"
    if is_sentinel_url(broker_url):
        return "workers.broker_transport:SentinelTransport"
    return None


def broker_queues(settings: Settings) -> list[Queue]:
    """segq's four queues; on RabbitMQ, durable quorum queues on direct exchanges.

    Why quorum: in a cluster they are replicated (Raft), so a node's loss loses no message and
    the queue stays available; classic mirrored queues are deprecated (gone in RabbitMQ 4).
    Each message counts its deliveries: ``x-delivery-limit`` drops one returned more than 10
    times (a message that keeps killing its worker, or keeps being cut off by a flapping
    connection) instead of looping; the job itself is not lost, its lease republishes it.
    A message whose worker dies unacked goes back to its queue the moment the worker's
    connection closes (no visibility timeout on RabbitMQ), and a RabbitMQ restart keeps every
    queued message (quorum queues are durable and their messages persistent).

    Celery detects quorum queues (``worker_detect_quorum_queues``) and turns global QoS off,
    which they do not support. Its native delayed delivery would need topic exchanges and 28
    extra quorum queues; segq has no countdowns, so its queues keep direct exchanges and the
    worker runs without that step (``workers/consumer.py``).
    """
    arguments = None
    if settings.effective_broker_url.startswith(AMQP_SCHEMES):
        arguments = {"x-queue-type": "quorum", "x-delivery-limit": QUORUM_DELIVERY_LIMIT}
    return [Queue(name, queue_arguments=arguments) for name in ALL_QUEUES]


MISSING_API_KEY = (
    "SEGMIND_API_KEY is not set: a worker calls Segmind with it (the sandbox takes any key)"
)


class RequireApiKey(bootsteps.Step):
    """A worker without the API key stops before it connects, however it was started
    (``segq worker`` says so earlier, ``celery -A workers worker`` only here): its first
    submit's 401 would pause the whole fleet, workers with a good key included."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        if get_settings().segmind_api_key is None:
            raise ConfigurationError(MISSING_API_KEY)


def create_app(settings: Settings | None = None) -> Celery:
    app = Celery("segq", include=["workers.tasks", "workers.signals"],
                 events="workers.task_events:SegqEvents")  # fmt: skip
    app.conf.update(celery_config(settings or get_settings()))
    app.steps["worker"].add(RequireApiKey)
    app.steps["consumer"].add(ConsumerStamp)
    return app


app = create_app()

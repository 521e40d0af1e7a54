"""The Celery app, configured from segq's settings for I/O-bound work that never sleeps.

Why these settings (see ``shared/celery-notes.md`` in the steering repo):
- Jobs wait in Redis, not in the broker: the dispatcher publishes only what can run now, so
  no message carries a countdown and kombu's visibility timeout never redelivers a delayed
  task. Recovery after a SIGKILL does not wait for the visibility timeout either: leases in
  the job store run out after ``lease_s`` and the work is published again; a late duplicate
  finds its claim or poll token taken and does nothing.
- ``task_acks_late``: a message is acknowledged after its task ran, so a broker restart or a
  lost connection redelivers instead of dropping. ``task_reject_on_worker_lost`` stays off:
  re-queueing without limit loops a task that kills its worker; leases already cover it.
- Three queues, so polls are never stuck behind a window of submits.
- Task messages carry job ids only (and a poll token): Flower shows what runs, not prompts.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from shared.settings import Settings, get_settings

SUBMIT_QUEUE = "segq-submits"
POLL_QUEUE = "segq-polls"
NOTIFY_QUEUE = "segq-notify"
ALL_QUEUES = (SUBMIT_QUEUE, POLL_QUEUE, NOTIFY_QUEUE)
QUORUM_DELIVERY_LIMIT = 10


def celery_config(settings: Settings) -> dict[str, object]:
    """Celery's settings for segq; the same values are used by every process on the broker."""
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    config: dict[str, object] = {
        "broker_url": settings.effective_broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        # Celery 6's default: a task cut off by a lost broker connection is not acked late
        # against a new connection; its job's lease republishes it.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_prefetch_multiplier": 2,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "task_queues": broker_queues(settings),
        "task_default_queue": SUBMIT_QUEUE,
        "task_routes": {
            "segq.submit": {"queue": SUBMIT_QUEUE},
            "segq.poll": {"queue": POLL_QUEUE},
            "segq.notify": {"queue": NOTIFY_QUEUE},
        },
    }
    if settings.rate_limiter == "celery" and settings.submit_rate_limit:
        config["task_annotations"] = {
            "segq.submit": {"rate_limit": f"{settings.submit_rate_limit}/m"}
        }
    return config


def broker_queues(settings: Settings) -> list[Queue]:
    """segq's three queues; on RabbitMQ, quorum queues.

    Quorum queues are replicated and survive a broker node's loss, and Celery (5.5+) detects them:
    it turns off global QoS, which they lack, and holds countdowns (only the webhook retries have
    any) in RabbitMQ's native delayed-delivery queues instead of in the worker's memory. A message
    whose worker dies unacked goes back to its queue the moment the connection drops; the
    ``x-delivery-limit`` stops a message that keeps killing workers from looping forever (the
    job's lease still republishes the job itself).
    """
    arguments = None
    if settings.effective_broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        arguments = {"x-queue-type": "quorum", "x-delivery-limit": QUORUM_DELIVERY_LIMIT}
    return [Queue(name, queue_arguments=arguments) for name in ALL_QUEUES]


def create_app(settings: Settings | None = None) -> Celery:
    app = Celery("segq", include=["workers.tasks", "workers.signals"])
    app.conf.update(celery_config(settings or get_settings()))
    return app


app = create_app()

"""segq's Celery consumer: Celery's own, less the native delayed delivery step, and with a
connection's close that outlives task threads changing what it reads.

Celery (5.5+) adds a ``DelayedDelivery`` bootstep whenever one of the app's queues is a RabbitMQ
quorum queue. At every connect and reconnect it declares 28 ``celery_delayed_*`` quorum queues
and 29 topic exchanges in the virtual host, and binds the app's queues to them, so that
countdown and ETA messages can wait in RabbitMQ (a message with a countdown of n seconds walks
down the levels of n's binary digits) instead of in a worker whose prefetch is fixed (quorum
queues have no global QoS, so Celery cannot raise the prefetch for a message it holds).

segq publishes no message with a countdown: due polls, retries and notices wait in the job
store and the dispatcher publishes them when due. The step would only declare queues nothing
ever uses (and warn three times per connect that segq's direct exchanges cannot use them), so
the worker runs without it. Should a countdown ever be published, it is held by the worker
that receives it, as on Redis.
"""

from __future__ import annotations

from celery.worker.consumer import Consumer

DELAYED_DELIVERY_STEP = "celery.worker.consumer.delayed_delivery:DelayedDelivery"
ON_CLOSE_TRIES = 10


class SegqConsumer(Consumer):
    class Blueprint(Consumer.Blueprint):
        default_steps = [
            step for step in Consumer.Blueprint.default_steps if step != DELAYED_DELIVERY_STEP
        ]

    def on_close(self) -> None:
        """Celery's, tried again when a task thread changed the reserved requests meanwhile.

        Celery 5.6 iterates ``reserved_requests``, a WeakSet that task threads add to and
        discard from, without a lock: on the threads pool, a broker connection lost while
        tasks ran ended the worker with "Set changed size during iteration" (celery#7162;
        seen once in test_broker_restart, RabbitMQ closing every connection). Each of its steps
        (clearing the semaphore, the buckets, the reserved requests) can be taken again."""
        for attempt in range(1, ON_CLOSE_TRIES + 1):
            try:
                super().on_close()
                return
            except RuntimeError:
                if attempt == ON_CLOSE_TRIES:
                    raise

"""The worker's side of ``shared.worker_health``: who stamps what, and the thread that writes.

``ConsumerStamp`` is a bootstep of Celery's consumer: its timer ticks inside the consumer's
event loop, so a stale ``consumer_at`` means the loop is not running (no broker connection, or
stuck). The dispatcher stamps ``dispatcher_at`` after each step (``Dispatcher.last_step_at``).
``Heartbeat`` is a thread that writes the file every HEARTBEAT_INTERVAL_S from those stamps.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import bootsteps

from shared.worker_health import HEARTBEAT_INTERVAL_S, HealthReport, write_report

log = logging.getLogger("segq.health")

consumer_stamp = {"at": 0.0}
"""When the consumer loop last ticked (one worker per process, so one value per process)."""


class ConsumerStamp(bootsteps.StartStopStep):
    """Stamps ``consumer_at`` from the consumer's own timer while it consumes."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_entry: Any = None

    def start(self, parent: Any) -> None:
        consumer_stamp["at"] = time.time()
        self.timer_entry = parent.timer.call_repeatedly(HEARTBEAT_INTERVAL_S, _stamp_consumer)

    def stop(self, parent: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    shutdown = stop


def _stamp_consumer() -> None:
    consumer_stamp["at"] = time.time()


class Heartbeat:
    """Writes the health file every HEARTBEAT_INTERVAL_S until stopped; ``shutting_down()``
    writes at once, so readiness fails the moment SIGTERM arrives."""

    def __init__(self, path: Path, hostname: str, dispatcher_at: Callable[[], float]) -> None:
        self.path = path
        self.hostname = hostname
        self.dispatcher_at = dispatcher_at
        self._shutting_down = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="segq-heartbeat", daemon=True)

    def start(self) -> None:
        self.write()
        self._thread.start()

    def shutting_down(self) -> None:
        self._shutting_down = True
        self.write()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(HEARTBEAT_INTERVAL_S)

    def write(self) -> None:
        report = HealthReport(
            pid=os.getpid(),
            hostname=self.hostname,
            written_at=time.time(),
            consumer_at=consumer_stamp["at"],
            dispatcher_at=self.dispatcher_at(),
            shutting_down=self._shutting_down,
        )
        try:
            write_report(self.path, report)
        except OSError as exc:
            log.warning("could not write the health file %s: %s", self.path, exc)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_INTERVAL_S):
            self.write()

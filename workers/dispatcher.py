"""The dispatcher: a thread in every worker process that feeds the broker from the job store.

Each step is one script call (``DispatchQueue.dispatch``) that decides, atomically for the
whole fleet, which submits the budget allows and which polls are due; the thread publishes
them and sleeps until the next step is worth taking (the next due poll, the next budget slot)
or ``dispatch_idle_s`` at most, so an interactive job waits a fraction of a second. Several
dispatchers (one per worker) are safe: the script hands each job to one of them. As it starts,
and every ``REPAIR_EVERY_S`` after, it also gives back the next poll of in-flight jobs that
lost it (``DispatchQueue.repair_due``), off the step's path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from shared.dispatch_queue import DispatchPlan, DispatchQueue
from shared.errors import StoreError

log = logging.getLogger("segq.dispatcher")

MAX_ITEMS_PER_STEP = 64
STORE_ERROR_PAUSE_S = 1.0
REPAIR_EVERY_S = 300.0
"""How often a dispatcher looks for in-flight jobs without a next poll: only a Redis that
evicted (or lost) ``segq:due`` leaves any, and then no step would poll them again."""


class Dispatcher:
    def __init__(
        self,
        queue: DispatchQueue,
        publish: Callable[[DispatchPlan], None],
        *,
        idle_s: float,
    ) -> None:
        self.queue = queue
        self.publish = publish
        self.idle_s = idle_s
        self.last_step_at = 0.0
        """When a step last got through to the job store (epoch seconds; the health file)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="segq-dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def step(self) -> float:
        """One dispatch and publish; returns how long to wait before the next."""
        plan = self.queue.dispatch(MAX_ITEMS_PER_STEP)
        if plan.size:
            self.publish(plan)
        if plan.size >= MAX_ITEMS_PER_STEP:
            return 0.0
        return min(plan.wake_in_s, self.idle_s)

    def repair(self) -> None:
        if made_due := self.queue.repair_due():
            log.warning(
                "dispatcher: %d in-flight jobs had lost their next poll (segq:due was evicted "
                "or deleted; the job store's Redis needs maxmemory-policy noeviction); they are "
                "polled now", made_due,
            )  # fmt: skip

    def _run(self) -> None:
        repair_at = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= repair_at:
                    repair_at = time.monotonic() + REPAIR_EVERY_S
                    self.repair()
                wait_s = self.step()
                self.last_step_at = time.time()
            except StoreError as exc:
                log.warning("dispatcher: %s; trying again in %.0fs", exc, STORE_ERROR_PAUSE_S)
                wait_s = STORE_ERROR_PAUSE_S
            except Exception:
                log.exception("dispatcher step failed; leases will republish what it held")
                wait_s = STORE_ERROR_PAUSE_S
            if wait_s > 0:
                self._stop.wait(wait_s)

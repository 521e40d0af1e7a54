"""Worker lifecycle: logging, and the dispatcher thread that starts and stops with the worker."""

from __future__ import annotations

from typing import Any

from celery.signals import setup_logging, worker_ready, worker_shutting_down

from shared.settings import get_settings
from workers.dispatcher import Dispatcher
from workers.runtime import runtime

_dispatchers: list[Dispatcher] = []


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    from shared.logging_setup import configure_logging

    configure_logging(get_settings())


@worker_ready.connect
def _start_dispatcher(**_: Any) -> None:
    from workers.tasks import publish_plan

    rt = runtime()
    dispatcher = Dispatcher(rt.queue, publish_plan, idle_s=rt.settings.dispatch_idle_s)
    dispatcher.start()
    _dispatchers.append(dispatcher)


@worker_shutting_down.connect
def _stop_dispatcher(**_: Any) -> None:
    while _dispatchers:
        _dispatchers.pop().stop()

"""Whether this worker process is draining after SIGTERM.

Celery's thread pool runs every message it has reserved before it exits, so a warm shutdown
would start up to twice the pool's size of new upstream calls, each as slow as Segmind is,
after the signal. Tasks that start while draining give their jobs back to the job store
(``DispatchQueue.hand_back``) for the other workers instead, and the worker leaves as soon as
the calls already under way have ended.
"""

from __future__ import annotations

import threading

_draining = threading.Event()


def start_draining() -> None:
    _draining.set()


def is_draining() -> bool:
    return _draining.is_set()

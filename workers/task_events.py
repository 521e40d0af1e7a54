"""Task events that reach Flower whole under the threads pool.

A worker with an event loop buffers its task events (``buffer_group=['task']``): pool threads
append to the buffer, and the loop thread's ``flush`` publishes it and then empties it
(``events[:] = []``, Celery 5.6), dropping every event a thread appended in between. In a
helper's 300-job run a third of Flower's tasks stayed STARTED or RECEIVED for good, and its
counters were wrong. Here a flush removes only what it published: an event appended meanwhile
stays for the next one.
"""

from __future__ import annotations

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher


class SegqEventDispatcher(EventDispatcher):
    def flush(self, errors: bool = True, groups: bool = True) -> None:
        super().flush(errors=errors, groups=False)
        if not groups:
            return
        with self.mutex:
            for group, events in self._group_buffer.items():
                published = events[:]
                if published:
                    self._publish(published, self.producer, f"{group}.multi")
                    del events[: len(published)]


class SegqEvents(Events):
    """The app's events (``Celery(events=...)``), with the dispatcher above."""

    dispatcher_cls = "workers.task_events:SegqEventDispatcher"

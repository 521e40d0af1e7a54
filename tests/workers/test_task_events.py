"""Task events buffered by a worker reach the broker whole, even when a pool thread sends
one while the event loop is flushing the buffer."""

from __future__ import annotations

from workers import app
from workers.task_events import SegqEventDispatcher


def test_an_event_sent_during_a_flush_is_kept_for_the_next_one():
    dispatcher = app.events.Dispatcher(
        connection=app.connection_for_write("memory://"), hostname="w", enabled=True,
        buffer_group=["task"], buffer_limit=1000,
    )  # fmt: skip
    assert isinstance(dispatcher, SegqEventDispatcher)
    published: list[list[str]] = []

    def publish(events, producer, routing_key):  # a pool thread sends while this one publishes
        published.append([event["uuid"] for event in events])
        if len(published) == 1:
            dispatcher.send("task-started", uuid="during")

    dispatcher._publish = publish
    try:
        for uuid in ("a", "b"):
            dispatcher.send("task-received", uuid=uuid)
        dispatcher.flush()
        dispatcher.flush()
    finally:
        dispatcher.close()
    assert published == [["a", "b"], ["during"]]

"""segq's consumer against Celery's: a lost connection's close survives task threads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.worker.consumer import consumer as celery_consumer

from workers.consumer import SegqConsumer


class ReservedChangedOnce:
    """The reserved requests as a task thread leaves them: changed during the first read."""

    def __init__(self, request_ids: list[str]) -> None:
        self.request_ids = request_ids
        self.reads = 0

    def __iter__(self) -> Iterator[str]:
        self.reads += 1
        if self.reads == 1:
            raise RuntimeError("Set changed size during iteration")
        return iter(self.request_ids)

    def clear(self) -> None:
        self.request_ids = []


def test_a_close_while_task_threads_change_the_reserved_requests_does_not_end_the_worker(
    monkeypatch: pytest.MonkeyPatch,
):
    # Given a consumer whose connection closes while a task thread changes what it reads
    reserved = ReservedChangedOnce(["r1"])
    requests = {"r1": object(), "r2": object()}
    monkeypatch.setattr(celery_consumer, "reserved_requests", reserved)
    monkeypatch.setattr(celery_consumer, "requests", requests)
    consumer = object.__new__(SegqConsumer)  # on_close reads only these
    consumer.controller, consumer.task_buckets, consumer.pool = None, {}, None
    # Then the close is done, as Celery's would have done it unchanged
    consumer.on_close()
    assert reserved.reads == 2 and list(requests) == ["r2"] and reserved.request_ids == []

"""A notice whose task starts after SIGTERM is given back, due at once, undelivered: a
webhook try may take its whole 10 s, and the worker is on its way out."""

from __future__ import annotations

from types import SimpleNamespace

from workers import tasks


def test_a_notice_started_while_draining_is_due_again_at_once_and_not_delivered(monkeypatch):
    handed_back: list[tuple[str, float]] = []
    queue = SimpleNamespace(
        notice_later=lambda job_id, delay_s: handed_back.append((job_id, delay_s))
    )
    monkeypatch.setattr(tasks, "runtime", lambda: SimpleNamespace(queue=queue))
    monkeypatch.setattr(tasks, "deliver_notifications", lambda *args: handed_back.append(args))
    monkeypatch.setattr(tasks, "is_draining", lambda: True)
    tasks.notify.run("job-1")
    assert handed_back == [("job-1", 0.0)]

"""Telling others that a job ended: a Celery callback task and/or a signed webhook.

Both get the job object (``Job.to_json()``). The callback task is published by name on segq's
broker to Celery's default queue, where the app's own workers pick it up (segq's workers never
consume it). The webhook gets the same object as a JSON POST signed with
``SEGQ_WEBHOOK_SECRET`` (``shared.webhook_signing``), from an HTTP client that holds no API key,
so the key never reaches a webhook. A target that fails is tried again with backoff, up to
``SEGQ_WEBHOOK_MAX_ATTEMPTS`` tries; every try is recorded on the job (``deliveries``) and
none ever changes the job's own outcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from kombu.exceptions import OperationalError

from shared.job_codec import compact_json
from shared.upstream_timing import compute_backoff_s
from shared.webhook_signing import SIGNATURE_HEADER, sign
from workers.runtime import Runtime

log = logging.getLogger("segq.notify")

CALLBACK_QUEUE = "celery"
"""Celery's default queue: an app's worker on segq's broker consumes it unless told otherwise."""
CALLBACK_TASK = "callback_task"
WEBHOOK = "webhook"
WEBHOOK_BACKOFF_BASE_S = 1.0
WEBHOOK_BACKOFF_CAP_S = 60.0
"""Well under the broker's visibility timeout: a retried delivery is a countdown message."""


@dataclass(frozen=True)
class NextTry:
    """The targets that failed this time, and when to try them again."""

    targets: list[str]
    in_s: float


def deliver_notifications(
    rt: Runtime,
    job_id: str,
    attempt: int,
    send_task: Callable[..., Any],
    targets: Sequence[str] | None = None,
) -> NextTry | None:
    """Tells ``targets`` (first try: every target the job or its batch names, less those
    already told of this ending) that the job ended; returns what to try again, or None."""
    payload = rt.store.get_job(job_id).to_json()
    named = dict(zip((CALLBACK_TASK, WEBHOOK), rt.store.notification_targets(job_id), strict=True))
    pending = _untold_targets(named, payload) if targets is None else targets
    failed = []
    for target in pending:
        where = named.get(target)
        if where and not _deliver(rt, target, where, payload, attempt, send_task):
            failed.append(target)
    if not failed or attempt >= rt.settings.webhook_max_attempts:
        return None
    backoff_s = compute_backoff_s(attempt, WEBHOOK_BACKOFF_BASE_S, WEBHOOK_BACKOFF_CAP_S, rt.rng)
    return NextTry(failed, backoff_s)


def _untold_targets(named: dict[str, str | None], payload: dict[str, Any]) -> list[str]:
    """Targets not yet told of this ending: a redelivered message tells nobody twice, and a
    job retried after failing tells everybody again when it ends again."""
    told = {
        d["target"]
        for d in payload["deliveries"]
        if d.get("ok") and d.get("finished_at") == payload["finished_at"]
    }
    return [target for target, where in named.items() if where and target not in told]


def _deliver(
    rt: Runtime,
    target: str,
    where: str,
    payload: dict[str, Any],
    attempt: int,
    send_task: Callable[..., Any],
) -> bool:
    if target == CALLBACK_TASK:
        return _send_callback(rt, where, payload, attempt, send_task)
    return _post_webhook(rt, where, payload, attempt)


def _send_callback(
    rt: Runtime,
    task_name: str,
    payload: dict[str, Any],
    attempt: int,
    send_task: Callable[..., Any],
) -> bool:
    try:
        send_task(task_name, args=[payload], queue=CALLBACK_QUEUE)
    except OperationalError as exc:
        _record(rt, payload, CALLBACK_TASK, attempt, ok=False, detail=f"broker: {exc}")
        return False
    _record(rt, payload, CALLBACK_TASK, attempt, ok=True, detail=task_name)
    return True


def _post_webhook(rt: Runtime, url: str, payload: dict[str, Any], attempt: int) -> bool:
    secret = rt.settings.webhook_secret
    if secret is None:
        detail = "not sent: SEGQ_WEBHOOK_SECRET is not set on the workers"
        _record(rt, payload, WEBHOOK, attempt, ok=False, detail=detail)
        return False
    body = compact_json(payload).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(body, secret.get_secret_value()),
    }
    try:
        response = rt.webhooks.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        detail = f"{type(exc).__name__}: {exc}"
        _record(rt, payload, WEBHOOK, attempt, ok=False, detail=detail)
        return False
    ok = response.is_success
    _record(rt, payload, WEBHOOK, attempt, ok=ok, http_status=response.status_code)
    return ok


def _record(
    rt: Runtime, payload: dict[str, Any], target: str, attempt: int, **outcome: Any
) -> None:
    """One try on the job's record; ``finished_at`` names the ending it told of."""
    job_id = payload["job_id"]
    delivery = {
        "target": target,
        "attempt": attempt,
        "at": round(time.time(), 3),
        "finished_at": payload["finished_at"],
        **outcome,
    }
    rt.store.record_delivery(job_id, delivery)
    log.info("job %s: %s delivery %d %s", job_id, target, attempt, outcome)

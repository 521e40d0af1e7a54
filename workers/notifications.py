"""Telling others that a job ended: a Celery callback task and/or a signed webhook.

Both get the job object (``Job.to_json()``). The callback task is published by name on segq's
broker to Celery's default queue, where the app's own workers pick it up (segq's workers never
consume it). The webhook gets the same object as a JSON POST signed with
``SEGQ_WEBHOOK_SECRET`` (``shared.webhook_signing``), from an HTTP client that holds no API key,
so the key never reaches a webhook. A target that fails is tried again with backoff, up to
``SEGQ_WEBHOOK_MAX_ATTEMPTS`` tries; every try is recorded on the job (``deliveries``) and
none ever changes the job's own outcome.

Why no Celery retry: the ending script puts the job in ``segq:notify`` in the same step that
ends it, and the dispatcher publishes (and leases) what is due there. A worker killed between
ending a job and telling anybody, or a countdown message lost with a broker, therefore loses
no notice; the record's deliveries say who was told already, so nobody is told twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from shared.errors import JobNotFound
from shared.http_deadline import call_deadline
from shared.job_codec import compact_json
from shared.job_model import TERMINAL_STATES
from shared.upstream_timing import compute_backoff_s
from shared.webhook_signing import SIGNATURE_HEADER, sign
from workers.runtime import WEBHOOK_TIMEOUT_S, Runtime

log = logging.getLogger("segq.notify")

CALLBACK_QUEUE = "celery"
"""Celery's default queue: an app's worker on segq's broker consumes it unless told otherwise."""
CALLBACK_TASK = "callback_task"
WEBHOOK = "webhook"
WEBHOOK_BACKOFF_BASE_S = 1.0
WEBHOOK_BACKOFF_CAP_S = 60.0


def deliver_notifications(rt: Runtime, job_id: str, send_task: Callable[..., Any]) -> None:
    """Tells every target the job or its batch names, less those already told of this ending,
    that the job ended; then takes the notice off the schedule, or puts it back for the
    targets that failed (with backoff, until ``webhook_max_attempts`` tries are spent)."""
    try:
        job = rt.store.get_job(job_id)
    except JobNotFound:
        rt.queue.settle_notice(job_id, None)  # expired: nobody is left to tell about
        return
    if job.state not in TERMINAL_STATES:
        rt.queue.settle_notice(job_id, None)  # retried meanwhile: its next ending schedules one
        return
    payload = job.to_json()
    named = dict(zip((CALLBACK_TASK, WEBHOOK), rt.store.notification_targets(job_id), strict=True))
    ending = [d for d in payload["deliveries"] if d.get("finished_at") == payload["finished_at"]]
    told = {d["target"] for d in ending if d.get("ok")}
    attempt = 1 + max((d["attempt"] for d in ending), default=0)
    failed = [
        target
        for target, where in named.items()
        if where and target not in told
        and not _deliver(rt, target, where, payload, attempt, send_task)
    ]  # fmt: skip
    if not failed or attempt >= rt.settings.webhook_max_attempts:
        rt.queue.settle_notice(job_id, job.finished_at)
        return
    backoff_s = compute_backoff_s(attempt, WEBHOOK_BACKOFF_BASE_S, WEBHOOK_BACKOFF_CAP_S, rt.rng)
    rt.queue.settle_notice(job_id, job.finished_at, backoff_s)


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
    except Exception as exc:  # any broker refusal is one failed try, recorded
        # Not only kombu's OperationalError: RabbitMQ refuses to declare the queue when the
        # app made it another type (a quorum `celery` queue: PRECONDITION_FAILED), and that
        # escaping the task left the notice to be published again every lease, unrecorded.
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
        request = rt.webhooks.build_request("POST", url, content=body, headers=headers)
        # The status line is the answer, due within WEBHOOK_TIMEOUT_S in all, and the body is
        # never read: a target that trickles either cannot hold this thread past the notice's
        # lease (and be told again) nor a draining worker past its grace period.
        with call_deadline(WEBHOOK_TIMEOUT_S):
            response = rt.webhooks.send(request, stream=True)
        response.close()
    except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:  # a URL it cannot use too
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

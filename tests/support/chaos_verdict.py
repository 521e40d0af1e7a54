"""The chaos suite's verdict: every job compared with what the sandbox really did.

Ground truth is the sandbox's ledger (``truth()["requests"]``): one record per request id it
accepted, with the prompt it was given (each job's prompt is unique), how it ended and its
outputs. A job is judged by the request id its record names:

- ``completed``: that request COMPLETED upstream, and the job's outputs are its URLs.
- ``failed``, kind ``inference_failed``: that request ended FAILED, and the job keeps the
  upstream's detail verbatim with HTTP status 422.
- ``failed``, kind ``retries_exhausted``: justified only by transient trouble, so its last error
  is a 5xx gateway answer or no answer at all (dropped connection, timeout). Allowed while the
  faults are on (``final=False``: the outage is longer than the retry budget of some jobs);
  after the upstream healed and the jobs were retried (``final=True``) none may be left.
- anything else (another failure kind, cancelled, a request id the upstream never issued, a
  job that is not terminal or has no record) is a mismatch, a stuck job or a lost job.

Paying twice: each job's requests upstream beyond the one its record names are duplicates;
every duplicate must be covered by the job's ``interrupted_submits`` (a submit cut off between
Segmind's answer and the store's write). Duplicates beyond that are ``unexplained``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from shared.job_model import TERMINAL_STATES, Job, JobFailure, JobState

TRANSIENT_STATUSES = frozenset({None, 500, 502, 503, 504})
MAX_SHOWN = 20


@dataclass
class Verdict:
    jobs: int = 0
    states: Counter[str] = field(default_factory=Counter)
    gave_up_before_submit: int = 0
    gave_up_polling: int = 0
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    upstream_requests: int = 0
    duplicate_submits: int = 0
    duplicated_jobs: list[str] = field(default_factory=list)
    duplicate_details: dict[str, Any] = field(default_factory=dict)
    """Each duplicated job's record and upstream requests (written beside the figures)."""
    interrupted_submits: int = 0
    interrupted_jobs: list[str] = field(default_factory=list)
    unexplained_duplicates: list[str] = field(default_factory=list)
    strangers: list[str] = field(default_factory=list)

    def failures(self) -> list[str]:
        """What breaks a promise, one line each (the first few of each kind)."""
        lines = [f"lost: {job_id}" for job_id in self.lost[:MAX_SHOWN]]
        lines += [f"stuck: {line}" for line in self.stuck[:MAX_SHOWN]]
        lines += [f"mismatch: {line}" for line in self.mismatches[:MAX_SHOWN]]
        lines += [f"paid twice: {line}" for line in self.unexplained_duplicates[:MAX_SHOWN]]
        lines += [f"unknown upstream request: {line}" for line in self.strangers[:MAX_SHOWN]]
        return lines

    def figures(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "states": dict(sorted(self.states.items())),
            "lost_jobs": len(self.lost),
            "stuck_jobs": len(self.stuck),
            "mismatches": len(self.mismatches),
            "upstream_requests": self.upstream_requests,
            "duplicate_submits": self.duplicate_submits,
            "duplicated_jobs": self.duplicated_jobs[:MAX_SHOWN],
            "interrupted_submits": self.interrupted_submits,
            "interrupted_jobs": self.interrupted_jobs[:MAX_SHOWN],
            "unexplained_duplicates": len(self.unexplained_duplicates),
        }


def judge(
    job_ids: list[str], jobs: list[Job | None], truth: dict[str, Any], *, final: bool
) -> Verdict:
    """Compares every job with the sandbox's ground truth (see the module docstring)."""
    verdict = Verdict(jobs=len(job_ids), upstream_requests=len(truth["requests"]))
    by_prompt: dict[str, dict[str, dict[str, Any]]] = {}
    for request_id, request in truth["requests"].items():
        by_prompt.setdefault(request["prompt"], {})[request_id] = request
    for job_id, job in zip(job_ids, jobs, strict=True):
        if job is None:
            verdict.lost.append(job_id)
            continue
        requests = by_prompt.pop(job.params.get("prompt", ""), {})
        verdict.states[job.state.value] += 1
        _judge_payments(verdict, job, requests)
        if job.state not in TERMINAL_STATES:
            verdict.stuck.append(f"{job_id} is {job.state.value}")
            continue
        problem = _judge_outcome(verdict, job, requests, final)
        if problem:
            verdict.mismatches.append(f"{job_id}: {problem}")
    verdict.strangers = [f"{len(r)} request(s) for {p!r}" for p, r in by_prompt.items()]
    return verdict


def _judge_payments(verdict: Verdict, job: Job, requests: dict[str, dict[str, Any]]) -> None:
    named = 1 if job.request_id in requests else 0
    extra = len(requests) - named
    if len(requests) > 1:
        verdict.duplicate_submits += len(requests) - 1
        verdict.duplicated_jobs.append(job.job_id)
        verdict.duplicate_details[job.job_id] = {"job": job.to_json(), "requests": requests}
    verdict.interrupted_submits += job.interrupted_submits
    if job.interrupted_submits:
        verdict.interrupted_jobs.append(job.job_id)
    if extra > job.interrupted_submits:
        verdict.unexplained_duplicates.append(
            f"{job.job_id}: {len(requests)} upstream requests, record names "
            f"{job.request_id}, interrupted_submits={job.interrupted_submits}"
        )


def _judge_outcome(
    verdict: Verdict, job: Job, requests: dict[str, dict[str, Any]], final: bool
) -> str | None:
    """None if the job's end matches the upstream, else what does not."""
    request = requests.get(job.request_id or "")
    if job.request_id and request is None:
        return f"request id {job.request_id} was never issued for its prompt"
    if job.state is JobState.COMPLETED:
        return _judge_completed(job, request)
    error = job.error
    if job.state is not JobState.FAILED or error is None:
        return f"ended {job.state.value} with error {error}"
    if error.kind == "inference_failed":
        return _judge_inference_failed(error, request)
    if error.kind == "retries_exhausted" and error.http_status in TRANSIENT_STATUSES:
        if final:
            return f"still retries_exhausted after the retry: {error.detail}"
        if request is None:
            verdict.gave_up_before_submit += 1
        else:
            verdict.gave_up_polling += 1
        return None
    return f"failed {error.kind} {error.http_status}: {error.detail}"


def _judge_completed(job: Job, request: dict[str, Any] | None) -> str | None:
    if request is None or request["state"] != "COMPLETED":
        return f"completed, but upstream says {request and request['state']}"
    if job.outputs != request["outputs"]:
        return f"outputs {job.outputs} != upstream's {request['outputs']}"
    return None


def _judge_inference_failed(error: JobFailure, request: dict[str, Any] | None) -> str | None:
    if request is None or request["state"] != "FAILED":
        return f"inference_failed, but upstream says {request and request['state']}"
    if (error.http_status, error.detail) != (422, request["error"]):
        return f"error {error.http_status} {error.detail!r} != upstream's {request['error']!r}"
    return None


def fault_figures(truth: dict[str, Any]) -> dict[str, Any]:
    """What the sandbox injected, by kind, from its own counters."""
    totals = truth["totals"]
    injected = totals["errors_injected"]
    return {
        "http_500": injected["500"],
        "html_502": injected["502"],
        "html_503": injected["503"],
        "html_504": injected["504"],
        "outage_503": injected["outage"],
        "dropped_connections": totals["dropped"],
        "slow_answers": totals["slowed"],
        "rate_limited_429": dict(totals["rate_limited"]),
        "failed_upstream": totals["jobs"]["FAILED"],
    }

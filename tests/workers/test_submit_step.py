"""The submit step against its claim's time, and what it keeps of a FAILED answer, with
stand-ins for the job store and Segmind."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from shared.dispatch_queue import Ending, SubmitClaim
from shared.errors import InferenceFailed, StoreError
from shared.settings import load_settings
from shared.upstream_answers import SubmitAccepted
from workers.job_steps import submit_job

CLAIM_S = 1.0
SEGMIND_ANSWERS_AFTER_S = 0.6


def test_a_request_id_is_stored_only_while_the_claim_taken_before_the_call_holds():
    # Given a claim of 1 s, a submit Segmind answers 0.6 s after it, and a job store that
    # then refuses every write (a Redis restart)
    settings = load_settings({"SEGMIND_API_KEY": "test-key"}).model_copy(
        update={"lease_s": CLAIM_S}
    )
    tries: list[float] = []

    def record_submitted(*_: object) -> None:
        tries.append(time.monotonic())
        raise StoreError("Redis did not answer")

    def submit(_: dict) -> SubmitAccepted:
        time.sleep(SEGMIND_ANSWERS_AFTER_S)
        return SubmitAccepted(request_id="req-1")

    claim = SubmitClaim(outcome="go", params={"prompt": "a plate"})
    queue = SimpleNamespace(begin_submit=lambda _: claim, record_submitted=record_submitted)
    durations = SimpleNamespace(next_poll_delay_s=lambda *_, **__: 1.0)
    rt = SimpleNamespace(settings=settings, queue=queue, durations=durations,
                         client=SimpleNamespace(submit=submit))  # fmt: skip
    claimed_at = time.monotonic()
    # Then the task stops trying before the claim runs out, counted from before the call, not
    # from the answer: past it another task may submit the job again, and a late write here
    # would replace that submit's request id
    with pytest.raises(StoreError):
        submit_job(rt, "j1")  # type: ignore[arg-type]
    assert tries and tries[-1] < claimed_at + CLAIM_S


def test_a_submit_answered_failed_keeps_the_metrics_segmind_sent():
    # Given a submit that Segmind answers FAILED at once, saying how long the model ran
    settings = load_settings({"SEGMIND_API_KEY": "test-key"})
    ended: list[dict] = []

    def finish(job_id: str, state: object, **stored: object) -> Ending:
        ended.append(stored)
        return Ending(ended=False)

    def submit(_: dict) -> None:
        raise InferenceFailed("NSFW content detected", 200, {"inference_time": 1.25})

    claim = SubmitClaim(outcome="go", params={"prompt": "a plate"})
    queue = SimpleNamespace(begin_submit=lambda _: claim, finish=finish)
    rt = SimpleNamespace(settings=settings, queue=queue, client=SimpleNamespace(submit=submit))
    # Then the job fails with Segmind's words and its metrics, as a poll's FAILED answer does
    assert submit_job(rt, "j1") is False  # type: ignore[arg-type]
    [stored] = ended
    assert stored["metrics"] == {"inference_time": 1.25}
    assert stored["failure"].detail == "NSFW content detected"

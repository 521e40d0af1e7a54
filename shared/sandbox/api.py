"""The v2 API the sandbox serves: submit, status, result, and the media its outputs point to.

Each v2 call first passes :meth:`UpstreamApi.gate`: transport faults (outage, dropped
connection, injected 5xx, slowness), then the API key (401), then the key's rate limit (429).
Submits then meet the model checks (404 slug, 403, 410), the content type (406), the body
(400, validated by ``GenerationRequest``) and the balance (406). Polls are kept cheap: a dict
lookup and a comparison of timestamps; images are rendered only for media and base64 results.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from shared.request_model import MODEL_SLUG, GenerationRequest
from shared.sandbox.account import forbidden_refusal, key_refusal
from shared.sandbox.answers import (
    NOT_JSON,
    error_answer,
    html_page,
    json_answer,
    json_body,
    not_found_answer,
    plain_text_answer,
    rate_limited_answer,
)
from shared.sandbox.faults import DROP, OUTAGE
from shared.sandbox.images import FORMAT_BY_EXTENSION
from shared.sandbox.jobs import COMPLETED, FAILED, Output, SimulatedJob
from shared.sandbox.state import SandboxState

SUBMIT = "submit"
POLL = "poll"


def validation_message(exc: ValidationError) -> str:
    """``field: problem`` for each invalid field, as a 400's ``error``."""
    return "; ".join(
        f"{'.'.join(map(str, err['loc'])) or 'body'}: {err['msg']}" for err in exc.errors()
    )


def output_of(params: GenerationRequest, seed: int) -> Output:
    width, height = params.image_size()
    return Output(
        params.prompt, seed, width, height, params.batch_size,
        params.image_format, params.image_quality, params.base64,
    )  # fmt: skip


class UpstreamApi:
    """Handlers for ``/v2/...`` and ``/media/...`` over one :class:`SandboxState`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def refuse(self, answer: web.Response) -> web.Response:
        """Count an error answer in the totals by its status code."""
        self.state.totals.refused[str(answer.status)] += 1
        return answer

    async def gate(self, request: web.Request, kind: str) -> web.StreamResponse | None:
        """The answer that stops this call before the API proper, or None to go on."""
        state = self.state
        config = state.current_config(time.time())
        fault = state.faults.transport_fault(config)
        if fault is not None:
            return self._fault_answer(request, fault)
        delay_s = state.faults.slow_s(config)
        if delay_s:
            state.totals.slowed += 1
            await asyncio.sleep(delay_s)
        await state.hold.wait(config)
        return self._admission(request, kind)

    def _fault_answer(self, request: web.Request, fault: str) -> web.StreamResponse:
        totals = self.state.totals
        if fault == DROP:
            totals.dropped += 1
            return self._dropped(request)
        totals.errors_injected[fault] += 1
        if fault == OUTAGE:
            return html_page(503)
        if fault == "500":
            return error_answer(500, "Internal Server Error")
        return html_page(int(fault))

    @staticmethod
    def _dropped(request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.close()
        return web.Response()  # aiohttp cannot write it and lets the connection go quietly

    def _admission(self, request: web.Request, kind: str) -> web.Response | None:
        """401 without a valid key, 429 past the key's limit for this kind of call."""
        state = self.state
        config = state.config
        api_key = request.headers.get("x-api-key", "")
        refusal = key_refusal(api_key, config)
        if refusal is not None:
            return self.refuse(error_answer(401, refusal))
        limit = config.submit_rpm if kind == SUBMIT else config.poll_rpm
        if limit is None:
            return None
        now = time.time()
        reset_at = state.limiter.admit(api_key, kind, limit, config.rate_window_s, now)
        if reset_at is None:
            return None
        state.totals.rate_limited[kind] += 1
        job = state.jobs.get(request.match_info.get("request_id", ""))
        if job is not None:
            job.rate_limited += 1
        return rate_limited_answer(reset_at, now, config.retry_after_header)

    async def submit(self, request: web.Request) -> web.StreamResponse:
        """``POST /v2/{slug}``: create a job and answer its id and absolute URLs."""
        stopped = await self.gate(request, SUBMIT)
        if stopped is not None:
            return stopped
        refusal = self._model_refusal(request)
        if refusal is None and request.content_type != "application/json":
            refusal = plain_text_answer(406, "Invalid content type")
        if refusal is not None:
            return self.refuse(refusal)
        output = await self._output_or_answer(request)
        if isinstance(output, web.Response):
            return self.refuse(output)
        return self._accept(request, *output)

    def _model_refusal(self, request: web.Request) -> web.Response | None:
        slug = request.match_info["slug"]
        if slug != MODEL_SLUG:
            return error_answer(404, f"Model {slug} not found")
        forbidden = forbidden_refusal(request.headers["x-api-key"], slug, self.state.config)
        if forbidden is not None:
            return error_answer(403, forbidden)
        if self.state.config.model_retired:
            return error_answer(410, f"Model {slug} has been retired and is no longer available")
        return None

    async def _output_or_answer(
        self, request: web.Request
    ) -> tuple[Output, str | None] | web.Response:
        """The job's output and its late failure (late validation), or the 400 that refuses it."""
        body = await json_body(request)
        if body is NOT_JSON:
            return error_answer(400, "Request body is not valid JSON")
        if not isinstance(body, dict):
            return error_answer(400, "body: the request body must be a JSON object")
        try:
            params = GenerationRequest.model_validate(body)
        except ValidationError as exc:
            if not self.state.config.late_validation:
                return error_answer(400, validation_message(exc))
            return self._unrunnable_output(body), validation_message(exc)
        seed = params.seed if params.seed is not None else self.state.pick_seed()
        return output_of(params, seed), None

    def _unrunnable_output(self, body: dict[str, Any]) -> Output:
        """What ground truth shows for a body that only fails when it runs (late validation)."""
        prompt = body.get("prompt")
        text = prompt if isinstance(prompt, str) else ""
        return Output(text, self.state.pick_seed(), 1024, 1024, 1, "jpeg", 95, False)

    def _accept(self, request: web.Request, output: Output, late_error: str | None) -> web.Response:
        state = self.state
        cost = state.config.cost_per_image * output.batch_size
        refusal = None if late_error else state.ledger.refusal(cost, state.config)
        if refusal is not None:
            return self.refuse(plain_text_answer(406, refusal))
        origin = sys.intern(state.config.public_url or f"{request.scheme}://{request.host}")
        job = state.create_job(output, origin, time.time(), late_error)
        if state.faults.loses_answer(state.config):
            state.totals.lost_answers += 1
            return self._dropped(request)
        urls = f"{origin}/v2/requests/{job.request_id}"
        return json_answer(
            200,
            {
                "request_id": job.request_id,
                "status": "QUEUED",
                "status_url": f"{urls}/status",
                "response_url": urls,
            },
        )

    async def status(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2/requests/{id}/status``: the state; 422 with the detail once FAILED."""
        stopped = await self.gate(request, POLL)
        if stopped is not None:
            return stopped
        self.state.totals.status_polls += 1
        job, now = self._polled_job(request)
        if job is None:
            return self.refuse(not_found_answer(request.match_info["request_id"]))
        job.status_polls += 1
        state = job.state_at(now)
        if state == FAILED:
            return json_answer(422, self._failed_body(job))
        return json_answer(200, {"request_id": job.request_id, "status": state})

    async def result(self, request: web.Request) -> web.StreamResponse:
        """``GET /v2/requests/{id}``: the final body (outputs, metrics, billing) once finished."""
        stopped = await self.gate(request, POLL)
        if stopped is not None:
            return stopped
        self.state.totals.result_fetches += 1
        job, now = self._polled_job(request)
        if job is None:
            return self.refuse(not_found_answer(request.match_info["request_id"]))
        job.result_fetches += 1
        state = job.state_at(now)
        if state == FAILED:
            return json_answer(422, self._failed_body(job))
        if state != COMPLETED:
            body = {"request_id": job.request_id, "status": state, "output": None, "error": None}
            return json_answer(200, body)
        return json_answer(200, await self._completed_body(job))

    def _polled_job(self, request: web.Request) -> tuple[SimulatedJob | None, float]:
        now = time.time()
        return self.state.live_job(request.match_info["request_id"], now), now

    @staticmethod
    def _failed_body(job: SimulatedJob) -> dict[str, Any]:
        return {
            "request_id": job.request_id,
            "status": FAILED,
            "error": job.error,
            "metrics": job.metrics(),
        }

    async def _completed_body(self, job: SimulatedJob) -> dict[str, Any]:
        outputs: list[str] = job.media_urls()
        if job.output.base64:
            images = [self.state.images.get(job.output.spec(n)) for n in range(len(outputs))]
            outputs = [base64.b64encode(data).decode() for data in await asyncio.gather(*images)]
        return {
            "request_id": job.request_id,
            "status": COMPLETED,
            "output": outputs[0] if len(outputs) == 1 else outputs,
            "metrics": job.metrics(),
            "error": None,
            "cost": job.cost,
            "remaining_credits": round(self.state.ledger.balance, 6),
        }

    async def media(self, request: web.Request) -> web.StreamResponse:
        """``GET /media/{id}/{index}.{ext}``: a COMPLETED job's image; no key, no faults, like a
        CDN. Served until ``media_retention_s``, after the request id itself has expired."""
        now = time.time()
        job = self.state.jobs.get(request.match_info["request_id"])
        index, _, extension = request.match_info["name"].partition(".")
        if (
            job is None
            or job.state_at(now) != COMPLETED
            or now >= job.finishes_at + self.state.config.media_retention_s
            or not (index.isascii() and index.isdigit() and str(int(index)) == index)
            or int(index) >= job.output.batch_size
            or FORMAT_BY_EXTENSION.get(extension) != job.output.image_format
        ):
            return self.refuse(error_answer(404, "Media not found"))
        self.state.totals.media_fetches += 1
        spec = job.output.spec(int(index))
        return web.Response(body=await self.state.images.get(spec), content_type=spec.media_type)

    async def not_allowed(self, request: web.Request) -> web.Response:
        """A wrong verb on a v2 path: an HTML page, not JSON."""
        return self.refuse(html_page(405))

    async def unknown_path(self, request: web.Request) -> web.Response:
        return self.refuse(error_answer(404, f"Not found: {request.path}"))

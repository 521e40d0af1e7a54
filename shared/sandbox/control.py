"""The control API under ``/_sandbox/``: ground truth, faults on demand, reset.

Never faulty, never rate limited, no API key: tests and benchmarks script the sandbox with it.

- ``GET /_sandbox/truth``: ``{"now", "held", "totals", "requests"}`` (see ``truth.py``; ``held``:
  v2 calls waiting on ``hold_s`` now); query
  ``requests=0`` leaves the per-request map out, ``request_id=ID`` (repeatable) narrows it.
- ``GET /_sandbox/faults``: the configuration in force (every ``SandboxConfig`` field).
- ``POST /_sandbox/faults``: a JSON object with any ``SandboxConfig`` fields; answers the new
  configuration, or 400 ``{"error": ...}`` naming the invalid field (nothing is changed then).
- ``POST /_sandbox/reset``: forgets jobs, counters, rate windows and spend, restores the balance
  to ``credits``; answers ``{"forgotten_jobs": N}``.
"""

from __future__ import annotations

import time

from aiohttp import web
from pydantic import ValidationError

from shared.sandbox.answers import error_answer, json_answer, json_body
from shared.sandbox.api import validation_message
from shared.sandbox.state import SandboxState

FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class ControlApi:
    """Handlers for ``/_sandbox/...`` over one :class:`SandboxState`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    async def truth(self, request: web.Request) -> web.Response:
        request_ids = request.query.getall("request_id", []) or None
        with_requests = request.query.get("requests", "1").lower() not in FALSE_WORDS
        return json_answer(200, self.state.truth(request_ids, with_requests))

    async def faults(self, request: web.Request) -> web.Response:
        config = self.state.current_config(time.time())
        return json_answer(200, config.model_dump())

    async def patch_faults(self, request: web.Request) -> web.Response:
        patch = await json_body(request)
        if not isinstance(patch, dict):
            return error_answer(400, "the body must be a JSON object of sandbox settings")
        try:
            config = self.state.apply_patch(patch)
        except ValidationError as exc:
            return error_answer(400, validation_message(exc))
        return json_answer(200, config.model_dump())

    async def reset(self, request: web.Request) -> web.Response:
        return json_answer(200, {"forgotten_jobs": self.state.reset()})

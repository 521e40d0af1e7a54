"""The fleet's shared request budgets, one per API key and kind (submit, poll), in Redis.

Spending happens in the dispatcher's script (a GCRA slot per published task, at the configured
rate or the learned one). A task may have waited in the broker while a 429 put the fleet on
hold or an account error paused it; then it must not call: the scripts that begin a submit or
a poll check that in the same step (``shared/lua/gate.lua``). This module holds what tasks do
themselves otherwise:

- ``rate_limited``: report a 429, so every worker holds off together and the budget learns
  the account's real rate from what it accepted.
- ``take_slot``: spend a slot for a call the dispatcher did not pay for (a result fetch).

Why our own GCRA in Lua rather than the ``limits`` library: spending a slot has to happen in
the same atomic step that pops a job from its lane, checks the broker window, the in-flight
cap and the pause (``dispatch.lua``); ``limits`` offers a separate Redis call per hit and no
learned rate. ``shared/lua/rate.lua`` documents the state.

With ``SEGQ_RATE_LIMITER=celery`` (kept as the benchmark's comparison) submits are left to
Celery's per-worker ``rate_limit``: 429s neither hold nor teach the fleet, only pauses apply.
"""

from __future__ import annotations

from typing import Any

import redis

from shared import redis_keys
from shared.job_store import store_errors
from shared.lua_scripts import Scripts
from shared.redis_keys import RateKind
from shared.settings import Settings


class FleetLimiter:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.settings = settings
        self.scripts = Scripts(client)
        self.fingerprint = settings.api_key_fingerprint()

    def max_rate(self, kind: RateKind) -> float:
        limit = (
            self.settings.submit_rate_limit if kind == "submit" else self.settings.poll_rate_limit
        )
        return limit or 0

    def uses_budget(self, kind: RateKind) -> bool:
        """False for submits under ``SEGQ_RATE_LIMITER=celery``: Celery paces them instead."""
        return kind == "poll" or self.settings.rate_limiter == "fleet"

    def rate_limited(self, kind: RateKind, retry_after_s: float | None) -> float:
        """Records a 429; returns how long the fleet now holds off (0 when Celery paces)."""
        if not self.uses_budget(kind):
            return 0.0
        keys = [
            redis_keys.rate(self.fingerprint, kind),
            redis_keys.rate_accepted(self.fingerprint, kind),
            redis_keys.RATE_LIMITED,
        ]
        retry = -1 if retry_after_s is None else retry_after_s
        args = [retry, self.max_rate(kind), self.settings.rate_safety]
        with store_errors():
            return float(self.scripts["rate_limited"](keys=keys, args=args))

    def take_slot(self, kind: RateKind) -> float:
        """Spends a slot now; returns the seconds to wait before using it."""
        keys = [
            redis_keys.rate(self.fingerprint, kind),
            redis_keys.rate_accepted(self.fingerprint, kind),
        ]
        with store_errors():
            reply = self.scripts["take_slot"](
                keys=keys, args=[self.max_rate(kind), self.settings.rate_safety]
            )
        return float(reply)

    def status(self, kind: RateKind) -> dict[str, Any]:
        """The budget's state as a person reads it: rate in use, learned rate, hold."""
        with store_errors():
            fields = self.redis.hgetall(redis_keys.rate(self.fingerprint, kind))
        return {
            "configured_per_min": self.max_rate(kind) or None,
            "rate_per_min": float(fields["rate_per_min"]) if "rate_per_min" in fields else None,
            "learned_per_min": float(fields["learned"]) if "learned" in fields else None,
            "hold_until": float(fields["hold_until"]) if "hold_until" in fields else None,
        }

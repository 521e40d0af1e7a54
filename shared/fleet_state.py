"""The fleet's state as producers read it: a pause of its submits, and what 429s left on its
rate budgets (a hold that stops every call of a kind, a learned rate below the configured one).

The budgets are found through ``segq:rate_limited``, which the workers' 429s fill, not through
the API key: a producer (``segq status``, ``segq resume``) usually does not have the key.
"""

from __future__ import annotations

from pydantic import BaseModel

from shared import redis_keys
from shared.redis_keys import RateKind

REPORT_FIELDS = 5
"""Entries of one budget report of the scripts (``budget_report`` in ``shared/lua/rate.lua``)."""


class RateLimitState(BaseModel):
    """One budget (an API key's submits, or its status and result calls) that a 429 reached in
    the last day: whether it holds every call of its kind, and at what rate it spends."""

    kind: RateKind
    account: str
    """The API key's fingerprint (a hash: never the key), as in the metrics' ``account``."""
    hold_until: float | None = None
    hold_left_s: float | None = None
    learned_per_min: float | None = None
    """The rate learned from 429s, as grown back by now, while the fleet spends at it: below
    the configured rate in use, or with nothing configured. None once that rate applies again."""
    configured_per_min: float | None = None
    """The workers' ``SEGQ_{KIND}_RATE_LIMIT`` when the last 429 came (None: none)."""

    @property
    def matters(self) -> bool:
        """True while it slows the fleet: a hold, or a learned rate in use."""
        return self.hold_until is not None or self.learned_per_min is not None


class FleetState(BaseModel):
    """Whether the fleet submits: a pause (manual, or automatic: account trouble or an outage,
    see ``shared/lua/fleet_pause.lua``) and why; and the budgets 429s slow (``rate_limits``)."""

    paused: bool
    reason: str | None = None
    since: float | None = None
    manual: bool = False
    rate_limits: list[RateLimitState] = []


class Resumed(BaseModel):
    """What ``resume`` ended: the fleet's pause (if it was paused) and the holds of 429s, as
    they were. The learned rates stay: they are what Segmind said the account allows."""

    was_paused: bool
    holds_lifted: list[RateLimitState]


def decode_rate_limits(reply: list[str]) -> list[RateLimitState]:
    """The budgets of a reply of budget reports (see ``REPORT_FIELDS``)."""
    states = []
    for start in range(0, len(reply), REPORT_FIELDS):
        key, hold_until, hold_left_s, learned, configured = reply[start : start + REPORT_FIELDS]
        account, kind = redis_keys.rate_owner(key)
        states.append(RateLimitState(kind=kind, account=account, hold_until=_number(hold_until),
                                     hold_left_s=_number(hold_left_s),
                                     learned_per_min=_number(learned),
                                     configured_per_min=_number(configured)))  # fmt: skip
    return states


def decode_fleet_state(fields: dict[str, str], reports: list[str]) -> FleetState:
    """From the fleet hash and the rate_limits script's reply."""
    rate_limits = [state for state in decode_rate_limits(reports) if state.matters]
    if not fields.get("paused"):
        return FleetState(paused=False, rate_limits=rate_limits)
    since = fields.get("since")
    return FleetState(paused=True, reason=fields.get("reason"),
                      since=float(since) if since else None,
                      manual=fields.get("manual") == "1", rate_limits=rate_limits)  # fmt: skip


def decode_resumed(reply: list[str]) -> Resumed:
    """From the pause script's reply to a resume."""
    return Resumed(was_paused=reply[0] == "1", holds_lifted=decode_rate_limits(reply[1:]))


def _number(text: str) -> float | None:
    return float(text) if text else None

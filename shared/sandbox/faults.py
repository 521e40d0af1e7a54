"""Transport faults drawn per v2 call: outage, dropped connection, injected error, slowness;
and the hold that keeps calls waiting until a test lets them go.

They are drawn before the sandbox looks at the request (key, limits, body), like a gateway in
front of the service would fail: an injected fault never creates a job or counts against a
rate limit, so ground truth holds exactly the work that was really done.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

from shared.sandbox.config import SandboxConfig

OUTAGE = "outage"
DROP = "drop"


class FaultDraws:
    """Which fault, if any, hits the next call; also keeps the outage's end time."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.outage_ends_at: float | None = None

    def start_outage(self, config: SandboxConfig, now: float) -> None:
        """(Re)start the outage clock when the outage is switched on or its duration changes."""
        self.outage_ends_at = now + config.outage_s if config.outage and config.outage_s else None

    def outage_over(self, config: SandboxConfig, now: float) -> bool:
        """True once an outage with a duration has run out (the caller switches it off)."""
        return config.outage and self.outage_ends_at is not None and now >= self.outage_ends_at

    def transport_fault(self, config: SandboxConfig) -> str | None:
        """``outage``, ``drop``, ``"500"``, ``"502"``, ``"503"``, ``"504"`` or None."""
        if config.outage:
            return OUTAGE
        if config.drop_probability and self._rng.random() < config.drop_probability:
            return DROP
        for status, probability in config.error_probabilities():
            if probability and self._rng.random() < probability:
                return str(status)
        return None

    def loses_answer(self, config: SandboxConfig) -> bool:
        """Whether this accepted submit's answer is lost on the way back."""
        probability = config.lost_answer_probability
        return bool(probability) and self._rng.random() < probability

    def slow_s(self, config: SandboxConfig) -> float:
        """How long to hold this answer back (0 for most)."""
        if config.slow_probability and self._rng.random() < config.slow_probability:
            return config.slow_s
        return 0.0


class CallHold:
    """Calls waiting while ``hold_s`` is set. Unlike a slow answer, whose delay is fixed when
    the call comes in, a held call ends when the hold is lifted: a test knows every call it
    counts here is still under way until it says otherwise."""

    def __init__(self, config: SandboxConfig) -> None:
        self.waiting = 0
        self._lifted = asyncio.Event()
        self.switch(config)

    def switch(self, config: SandboxConfig) -> None:
        """Lifts the hold when ``hold_s`` is unset; a new hold holds only calls that come later."""
        if config.hold_s is None:
            self._lifted.set()
        elif self._lifted.is_set():
            self._lifted = asyncio.Event()

    async def wait(self, config: SandboxConfig) -> None:
        if config.hold_s is None:
            return
        lifted = self._lifted
        self.waiting += 1
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lifted.wait(), config.hold_s)
        finally:
            self.waiting -= 1

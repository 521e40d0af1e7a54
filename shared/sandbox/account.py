"""The simulated account: which API keys are valid or forbidden, and what it can still pay.

Messages follow Segmind's wording where it is known (protocol file, 401 and 406 rows), because
clients and people read them verbatim.
"""

from __future__ import annotations

from shared.sandbox.config import SandboxConfig

MISSING_KEY = "Missing Authorization or x-api-key in header"
INVALID_KEY = (
    "Unauthorized. API key is invalid or may have expired. Please check your API key and try again."
)


def key_refusal(api_key: str, config: SandboxConfig) -> str | None:
    """The 401 message for this ``x-api-key`` value, or None when the key is accepted."""
    if not api_key:
        return MISSING_KEY
    if config.api_keys and api_key not in config.api_keys:
        return INVALID_KEY
    return None


def forbidden_refusal(api_key: str, model_slug: str, config: SandboxConfig) -> str | None:
    """The 403 message when this key's account may not call the model."""
    if api_key in config.forbidden_keys:
        return f"Forbidden. Your account does not have access to {model_slug}."
    return None


class Ledger:
    """Balance and spend. A job is billed when submitted if it will complete (FAILED jobs are
    not billed), so the balance a result reports already includes it."""

    def __init__(self, balance: float) -> None:
        self.balance = balance
        self.spent = 0.0

    def refusal(self, cost: float, config: SandboxConfig) -> str | None:
        """The 406 plain-text message when the account cannot pay ``cost``, else None."""
        if cost > self.balance:
            return (
                f"Insufficient credits. Your balance is ${self.balance:.4f} "
                f"but this request costs ${cost:.4f}. Please add credits to continue."
            )
        if config.spend_limit is not None and self.spent + cost > config.spend_limit:
            return (
                f"Team spend limit reached: ${self.spent:.4f} spent of the "
                f"${config.spend_limit:.4f} limit. Raise the limit to continue."
            )
        return None

    def charge(self, cost: float) -> None:
        self.balance -= cost
        self.spent += cost

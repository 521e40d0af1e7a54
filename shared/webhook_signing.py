"""Webhook signatures: HMAC-SHA256 over the timestamp and the body, Stripe-style.

Header ``X-Segq-Signature: t=<unix seconds>,v1=<hex digest>`` where the digest is
HMAC-SHA256(secret, f"{t}.".encode() + body). A receiver recomputes it over the raw body it
received, compares in constant time, and refuses a timestamp more than a few minutes away from
its own clock, so a captured delivery cannot be replayed later. Several ``v1=`` entries may be
present (a secret being rotated); one match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Segq-Signature"
DEFAULT_TOLERANCE_S = 300


def signature_digest(body: bytes, secret: str, timestamp: int) -> str:
    """The hex HMAC-SHA256 that ``v1=`` carries for ``body`` sent at ``timestamp``."""
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The header value for ``body``, stamped now unless ``timestamp`` is given."""
    ts = int(time.time()) if timestamp is None else timestamp
    return f"t={ts},v1={signature_digest(body, secret, ts)}"


def verify(
    body: bytes,
    header: str,
    secret: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and its timestamp is within
    ``tolerance_s`` of ``now`` (default: this machine's clock)."""
    timestamps: list[str] = []
    digests: list[str] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            timestamps.append(value)
        elif name == "v1":
            digests.append(value)
    if len(timestamps) != 1 or not digests:
        return False
    try:
        ts = int(timestamps[0])
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = signature_digest(body, secret, ts)
    return any(hmac.compare_digest(expected, digest) for digest in digests)

"""Webhook signatures: HMAC-SHA256 over the timestamp and the body, Stripe-style.

Header ``X-Segq-Signature: t=<unix seconds>,v1=<hex digest>`` where the digest is
HMAC-SHA256(secret, f"{t}.".encode() + body). A receiver recomputes it, compares in constant
time, and refuses timestamps older than a few minutes (replay).
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Segq-Signature"
DEFAULT_TOLERANCE_S = 300


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The header value for ``body``."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


def verify(
    body: bytes, header: str, secret: str, *, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and is no older than ``tolerance_s``."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(body, secret, ts), header)

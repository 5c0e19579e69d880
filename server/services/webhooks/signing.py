"""How a delivery is signed, so a receiver can tell it came from this server and was not replayed.

The signature covers the timestamp as well as the body: a receiver that
rejects old timestamps cannot be fed a recorded delivery later, and the
timestamp cannot be changed without breaking the signature. The scheme is
``v1=`` + hex HMAC-SHA256(secret, f"{timestamp}.{body}"); the version prefix
leaves room for another scheme without breaking receivers of this one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
SCHEME = "v1"


def new_secret() -> str:
    """A signing secret: 256 random bits, prefixed so it is recognisable in a secrets scanner."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: str) -> str:
    signed = f"{timestamp}.{body}".encode()
    return f"{SCHEME}=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def headers(secret: str, *, delivery_id: str, event: str, timestamp: int, body: str) -> dict[str, str]:
    """The headers of one attempt; the timestamp is the attempt's own, so a retry is signed afresh."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "HarmonyCompanion-Webhooks/1",
        "X-Harmony-Event": event,
        "X-Harmony-Delivery": delivery_id,
        "X-Harmony-Timestamp": str(timestamp),
        "X-Harmony-Signature": signature(secret, timestamp, body),
    }

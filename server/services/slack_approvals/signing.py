"""Slack's request signatures (version 0): how Companion knows an interaction request comes from Slack.

Slack signs ``v0:<X-Slack-Request-Timestamp>:<raw body>`` with HMAC-SHA256 under the app's signing secret and
sends ``v0=<hex>`` as ``X-Slack-Signature``. The signature is compared in constant time, and a timestamp more
than five minutes from now is refused, so an old request cannot be replayed later; a replay within those minutes
is refused by the digest kept in ``store.seen_requests``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

#: How far a request's timestamp may be from now, either way, in seconds.
WINDOW_SECONDS = 5 * 60


class BadSignature(Exception):
    """The request is not Slack's, or not now; ``code`` says which check refused it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` Slack sends for ``body`` at ``timestamp``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str | None, sent: str | None, body: bytes, *, now: float | None = None) -> str:
    """Check a request's timestamp and signature; return the SHA-256 of the signature, by which a replay is known.

    Raises BadSignature.
    """
    if not timestamp or not sent:
        raise BadSignature("unsigned", "The request carries no Slack signature.")
    try:
        stamped = int(timestamp)
    except ValueError:
        raise BadSignature("invalid_signature", "The request's timestamp is not a number.") from None
    if abs((time.time() if now is None else now) - stamped) > WINDOW_SECONDS:
        raise BadSignature("stale_request", "The request's timestamp is more than five minutes from now.")
    if not hmac.compare_digest(signature(secret, timestamp, body).encode(), sent.encode()):
        raise BadSignature("invalid_signature", "The request's Slack signature does not match.")
    return hashlib.sha256(sent.encode()).hexdigest()

"""Checking that a webhook delivery came from Harmony, unaltered and recently, before acting on it.

A delivery carries ``X-Harmony-Timestamp`` (Unix seconds, when it was signed)
and ``X-Harmony-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>``.
The signature covers the timestamp, so a recorded delivery cannot be replayed
later with a fresh one; a timestamp outside ``tolerance`` is refused. The
body is checked as raw bytes, exactly as received: parsed and re-serialised
JSON would not be the bytes that were signed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from harmony_client.errors import SignatureError

TIMESTAMP_HEADER = "X-Harmony-Timestamp"
SIGNATURE_HEADER = "X-Harmony-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE = 300


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``X-Harmony-Signature`` value for ``body`` signed at ``timestamp``: for tests and for proxies re-signing."""
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + raw, hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header by name in any case: Starlette, Flask and http.server headers ignore case, a plain dict does not."""
    wanted = name.lower()
    return next((str(value) for key, value in headers.items() if key.lower() == wanted), "")


def verify(
    secret: str, headers: Mapping[str, str], body: bytes | str, tolerance: int = DEFAULT_TOLERANCE
) -> dict[str, Any]:
    """The delivery's event (``{"event", "timestamp", "data"}``) when it is authentic and fresh.

    Raises ``SignatureError`` when a header is missing, the timestamp is more
    than ``tolerance`` seconds away from now (either way: a replay, or a clock
    that is off), or the signature does not match, compared in constant time.
    Harmony retries a delivery with the same ``X-Harmony-Delivery`` id: keep the
    ids you processed if acting twice would hurt.
    """
    timestamp = _header(headers, TIMESTAMP_HEADER).strip()
    signature = _header(headers, SIGNATURE_HEADER).strip()
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise SignatureError(f"missing or malformed {TIMESTAMP_HEADER}")
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    if abs(time.time() - int(timestamp)) > tolerance:
        raise SignatureError("signed too long ago (or ahead): a replay, or a clock that is off")
    if not hmac.compare_digest(sign(secret, timestamp, body).encode(), signature.encode()):
        raise SignatureError("signature mismatch")
    event: dict[str, Any] = json.loads(body)
    return event

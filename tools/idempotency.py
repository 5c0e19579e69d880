"""Idempotency keys for approved calls, derived from the approval id.

An approved call runs once; when the process running it dies, its outcome is unknown and the person may
choose to run it once more. A provider that lets the client name what it creates can then be given the
same name both times, so it refuses the second create instead of making a duplicate, and the adapter
returns what the first run made.

A key is a SHA-256 of the approval id under a scope naming what is created (``"linear.issue"``), so the
same approval always gives the same key, and keys for different kinds of objects never coincide. Each
function shapes that digest into the format one provider accepts.
"""

from __future__ import annotations

import base64
import hashlib
import uuid

NAMESPACE = "harmony-companion.approval"


def _digest(approval_id: str, scope: str) -> bytes:
    return hashlib.sha256(f"{NAMESPACE}:{scope}:{approval_id}".encode()).digest()


def uuid4_key(approval_id: str, scope: str) -> str:
    """A UUID with the version 4 and RFC 4122 variant bits set, the same for the same approval and scope.

    For providers that take a client id "in UUID v4 format" (Linear): the bits of a v4 UUID are random
    apart from those six, and a hash is as good as random for that.
    """
    return str(uuid.UUID(bytes=_digest(approval_id, scope)[:16], version=4))


def base32hex_key(approval_id: str, scope: str) -> str:
    """52 characters of lowercase base32hex (``0-9`` and ``a-v``), the same for the same approval and scope.

    For providers whose ids allow only those characters (Google Calendar events: 5 to 1024 of them).
    """
    return base64.b32hexencode(_digest(approval_id, scope)).decode().rstrip("=").lower()

"""Opaque cursors for keyset pagination.

A cursor carries the sort key of the last row a page returned, so the next
page starts right after it however the data changed in between, and a deep
page costs what the first one does.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tools.errors import InvalidArguments


def encode_cursor(*key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int, *, field: str = "cursor") -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidArguments({field: "not a cursor returned by this tool; pass next_cursor from the previous page"})
    return key

"""The identity of a call's arguments: SHA-256 of their canonical JSON.

Key order and whitespace do not change the digest; any change to a value does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def arguments_digest(arguments: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(arguments).encode()).hexdigest()


def loose_digest(arguments: Any) -> str:
    """A digest of arguments that may not even be valid JSON text (a lone surrogate, NaN), for auditing a refusal."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()

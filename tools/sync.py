"""What a sync adapter yields: provider records, in the provider's own field names.

The sync engine maps those fields onto Harmony's with the connection's
mappings, so an adapter never needs to know how a person configured them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SyncRecord:
    external_id: str
    fields: dict[str, Any] = field(default_factory=dict)
    deleted: bool = False

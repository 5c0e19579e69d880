"""The audit trail: one appended row per tool call, whatever its outcome.

Only digests of arguments are kept, never the arguments themselves, so no
secret a caller passes can land here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from store.models import AuditEntry


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    INVALID = "invalid"


@dataclass(frozen=True)
class AuditRecord:
    workspace_id: str
    user_id: str
    api_key_id: str | None
    connection_id: str | None
    app: str
    tool: str
    args_digest: str
    decision: str
    reasons: tuple[str, ...]
    outcome: Outcome
    error: str | None
    duration_ms: float


def append(session: AsyncSession, record: AuditRecord) -> None:
    session.add(
        AuditEntry(
            workspace_id=record.workspace_id,
            user_id=record.user_id,
            api_key_id=record.api_key_id,
            connection_id=record.connection_id,
            app=record.app,
            tool=record.tool,
            args_digest=record.args_digest,
            decision=record.decision,
            reasons=list(record.reasons),
            outcome=record.outcome.value,
            error=record.error,
            duration_ms=record.duration_ms,
        )
    )

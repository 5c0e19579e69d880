"""How many approvals wait for a person: the number in the console's tab title and beside "Approvals".

One COUNT over the approvals the person may see (``visible_clause``) that wait for them: a call to approve whose
time is not up, or one whose outcome only they can settle. Each page asks once.
"""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.sql import ColumnElement

from server.services.approval_flow import visible_clause
from store.db import Database
from store.models import Approval, ApprovalStatus, utcnow
from store.principal import Principal

#: What waits for a person: a call to approve, or one whose outcome only they can settle.
WAITING = (ApprovalStatus.PENDING, ApprovalStatus.OUTCOME_UNKNOWN)


def waiting_clause(actor: Principal) -> ColumnElement[bool]:
    """The approvals waiting for ``actor``, as a WHERE clause: pending ones not yet expired, and unknown outcomes."""
    return visible_clause(actor) & or_(
        (Approval.status == ApprovalStatus.PENDING) & (Approval.expires_at > utcnow()),
        Approval.status == ApprovalStatus.OUTCOME_UNKNOWN,
    )


async def waiting_count(db: Database, actor: Principal) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Approval).where(waiting_clause(actor))) or 0)

"""How many approvals wait for a person: the number in the console's tab title and beside "Approvals".

The approvals the person may see (``visible_clause``) that wait for them: a call to approve whose time is not up,
or one whose outcome only they can settle. An approval whose approvers a rule names waits for a person only while
their vote is wanted: not once they voted, nor when they asked and may not approve it. That is judged as the vote
would judge it (``approvals.group``), so the rows are read rather than counted; what waits in a workspace at once
is bounded by each key's limit on pending calls. Each page asks once.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.sql import ColumnElement

from approvals import group
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
        waiting = await session.execute(
            select(Approval.approvers, Approval.user_id, Approval.no_self_approval, Approval.status).where(
                waiting_clause(actor)
            )
        )
        return sum(
            1
            for approvers, asker_id, no_self_approval, status in waiting
            if approvers is None
            or status is ApprovalStatus.OUTCOME_UNKNOWN
            or group.waits_for(
                approvers,
                asker_id=asker_id,
                actor_id=actor.user_id,
                actor_is_admin=actor.is_admin,
                no_self_approval=no_self_approval,
            )
        )

"""The messages sent about waiting approvals, and what each last showed, so each can be updated once the approval
is decided anywhere, or its time is up.

A message shows one of a few words (``pending``, ``approved``, ``denied``, ``expired``, ``withdrawn``), not every
status: an approved call that then runs does not need its message changed again. ``stale`` finds the messages
whose word no longer matches their approval, an expiry that no step has written yet included; ``claim`` takes one
with a conditional UPDATE, so of several replicas sweeping at once exactly one updates each message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from store.db import rows_matched
from store.models import Approval, ApprovalNotice, ApprovalStatus, utcnow

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
EXPIRED = "expired"
WITHDRAWN = "withdrawn"

#: Statuses an expiry still applies to: the call has not started.
_UNRUN = (ApprovalStatus.PENDING, ApprovalStatus.APPROVED)


def shown_as(approval: Approval, now: datetime | None = None) -> str:
    """The word a message about ``approval`` should show now."""
    status = approval.status
    if status is ApprovalStatus.EXPIRED or (status in _UNRUN and approval.expires_at <= (now or utcnow())):
        return EXPIRED
    if status is ApprovalStatus.PENDING:
        return PENDING
    if status is ApprovalStatus.DENIED:
        return DENIED
    if status is ApprovalStatus.CANCELLED:
        return WITHDRAWN
    return APPROVED


def _shown_clause(now: datetime) -> ColumnElement[str]:
    """``shown_as`` in SQL."""
    return case(
        (
            (Approval.status == ApprovalStatus.EXPIRED) | (Approval.status.in_(_UNRUN) & (Approval.expires_at <= now)),
            EXPIRED,
        ),
        (Approval.status == ApprovalStatus.PENDING, PENDING),
        (Approval.status == ApprovalStatus.DENIED, DENIED),
        (Approval.status == ApprovalStatus.CANCELLED, WITHDRAWN),
        else_=APPROVED,
    )


async def record(
    session: AsyncSession, *, approval_id: str, user_id: str, channel: str, ref: dict[str, Any]
) -> ApprovalNotice:
    notice = ApprovalNotice(approval_id=approval_id, user_id=user_id, channel=channel, ref=ref, shown_status=PENDING)
    session.add(notice)
    await session.flush()
    return notice


async def of_approval(session: AsyncSession, approval_id: str, channel: str) -> list[ApprovalNotice]:
    rows = await session.scalars(
        select(ApprovalNotice).where(ApprovalNotice.approval_id == approval_id, ApprovalNotice.channel == channel)
    )
    return list(rows)


async def stale(
    session: AsyncSession, channel: str, *, limit: int, approval_id: str | None = None
) -> list[tuple[ApprovalNotice, str]]:
    """Up to ``limit`` of ``channel``'s messages that show another word than their approval's, oldest first, each
    with the word it should show."""
    shown = _shown_clause(utcnow())
    query = (
        select(ApprovalNotice, shown)
        .join(Approval, Approval.id == ApprovalNotice.approval_id)
        .where(ApprovalNotice.channel == channel, ApprovalNotice.shown_status != shown)
        .order_by(ApprovalNotice.updated_at)
        .limit(limit)
    )
    if approval_id is not None:
        query = query.where(ApprovalNotice.approval_id == approval_id)
    return [(notice, str(word)) for notice, word in (await session.execute(query)).all()]


async def claim(
    session: AsyncSession, notice_id: str, *, was: str, shows: str, ref: dict[str, Any] | None = None
) -> bool:
    """Mark the message as showing ``shows`` if it still shows ``was``, and with ``ref`` as what the channel keeps
    of it once updated; whether this caller did (and so updates it)."""
    changes: dict[str, Any] = {"shown_status": shows, "updated_at": utcnow()}
    if ref is not None:
        changes["ref"] = ref
    moved = await session.execute(
        update(ApprovalNotice)
        .where(and_(ApprovalNotice.id == notice_id, ApprovalNotice.shown_status == was))
        .values(**changes)
        .execution_options(synchronize_session=False)
    )
    return rows_matched(moved) == 1


async def release(session: AsyncSession, notice_id: str, *, shows: str, back_to: str) -> None:
    """Undo a claim whose update did not reach the channel, so a later sweep tries again."""
    await session.execute(
        update(ApprovalNotice)
        .where(and_(ApprovalNotice.id == notice_id, ApprovalNotice.shown_status == shows))
        .values(shown_status=back_to)
        .execution_options(synchronize_session=False)
    )

"""Caps on auto-approvals: at most N per user per window, past which the decision becomes ask.

Each auto-approval under a capped rule is one row. Counting and adding happen
in one transaction that holds a lock for the (rule, user) pair, so concurrent
calls, also on other replicas, cannot both take the last slot.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from approvals.rules import CapCharge
from store.db import Database, dialect_name
from store.models import CapHit, utcnow


class _CapReached(Exception):
    def __init__(self, charge: CapCharge) -> None:
        self.charge = charge


async def _take(session: AsyncSession, charge: CapCharge, user_id: str) -> None:
    if dialect_name(session) == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
            {"key": f"cap:{charge.rule_id}:{user_id}"},
        )
    now = utcnow()
    # On SQLite this insert takes the database's write lock before the count.
    session.add(CapHit(rule_id=charge.rule_id, user_id=user_id, at=now))
    await session.flush()
    since = now - timedelta(seconds=charge.per_seconds)
    used = await session.scalar(
        select(func.count())
        .select_from(CapHit)
        .where(CapHit.rule_id == charge.rule_id, CapHit.user_id == user_id, CapHit.at > since)
    )
    if (used or 0) > charge.max:
        raise _CapReached(charge)
    await session.execute(
        delete(CapHit).where(CapHit.rule_id == charge.rule_id, CapHit.user_id == user_id, CapHit.at <= since)
    )


async def charge(db: Database, charges: tuple[CapCharge, ...], user_id: str) -> CapCharge | None:
    """Count one auto-approval against every cap; on the first cap already full, count none and return it."""
    if not charges:
        return None
    try:
        async with db.transaction() as session:
            for item in charges:
                await _take(session, item, user_id)
    except _CapReached as reached:
        return reached.charge
    return None


def describe(charge: CapCharge) -> str:
    window = timedelta(seconds=charge.per_seconds)
    return f"rule {charge.rule_id} allows {charge.max} auto-approvals per {window}, and they are used up"

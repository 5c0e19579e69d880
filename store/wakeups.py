"""Waking the calls that wait on an approval as soon as it changes, in this process and on every replica.

A change is announced inside the transaction that makes it. On PostgreSQL the
announcement is a NOTIFY, which PostgreSQL delivers at commit to every
process's LISTEN connection (``store.listener``); elsewhere (SQLite) it wakes this
process's waiters after the commit. Waiters still poll the database, so a
lost notification only costs time, never a decision.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from store.db import dialect_name

CHANNEL = "companion_approvals"
_waiting: defaultdict[str, set[asyncio.Event]] = defaultdict(set)


def wake(approval_id: str) -> None:
    for waiter in _waiting.get(approval_id, ()):
        waiter.set()


async def announce(session: AsyncSession, approval_id: str) -> None:
    """Say that ``approval_id`` changed, once this transaction commits."""
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, :id)"), {"channel": CHANNEL, "id": approval_id})
    else:
        session.sync_session.info.setdefault("wake", set()).add(approval_id)


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    for approval_id in session.info.pop("wake", ()):
        wake(approval_id)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop("wake", None)


async def changed(approval_id: str, timeout: float) -> bool:
    """Wait until ``approval_id`` is announced, or ``timeout`` passes; True if it was announced."""
    waiter = asyncio.Event()
    _waiting[approval_id].add(waiter)
    try:
        async with asyncio.timeout(timeout):
            await waiter.wait()
        return True
    except TimeoutError:
        return False
    finally:
        _waiting[approval_id].discard(waiter)
        if not _waiting[approval_id]:
            del _waiting[approval_id]

"""Waking the calls that wait on an approval as soon as it changes, in this process and on every replica.

A change is announced inside the transaction that makes it. On PostgreSQL the
announcement is a NOTIFY, which PostgreSQL delivers at commit to every
process's LISTEN connection (``Listener``); elsewhere (SQLite) it wakes this
process's waiters after the commit. Waiters still poll the database, so a
lost notification only costs time, never a decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

CHANNEL = "companion_approvals"
_waiting: defaultdict[str, set[asyncio.Event]] = defaultdict(set)


def wake(approval_id: str) -> None:
    for waiter in _waiting.get(approval_id, ()):
        waiter.set()


async def announce(session: AsyncSession, approval_id: str) -> None:
    """Say that ``approval_id`` changed, once this transaction commits."""
    if session.bind.dialect.name == "postgresql":
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


class Listener:
    """One LISTEN connection per process on PostgreSQL, reconnecting when the database goes away."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.listening = asyncio.Event()

    def _received(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        wake(payload)

    async def forever(self, retry_seconds: float = 1.0) -> None:
        while True:
            try:
                connection = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("approval wake-ups: cannot listen yet (%s); waiters poll meanwhile", type(exc).__name__)
                await asyncio.sleep(retry_seconds)
                continue
            closed = asyncio.Event()
            connection.add_termination_listener(lambda _c, closed=closed: closed.set())
            try:
                await connection.add_listener(CHANNEL, self._received)
                self.listening.set()
                await closed.wait()
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await connection.close()
            log.warning("approval wake-ups: the LISTEN connection closed; reconnecting")

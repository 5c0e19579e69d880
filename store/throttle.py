"""Throttling sign-in attempts (and other attempts by one address), counted in the database so every replica
shares one count.

Each attempt is counted before its password is checked, per e-mail address and
per client address, in fixed windows: a burst of parallel guesses is counted as
a burst. Past the limit, sign-in is refused until the window ends, even with
the right password. A success clears the address's count and takes its own
attempt back from the client's.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import Database, dialect_name
from store.models import SignInAttempts

WINDOW_SECONDS = 15 * 60


@dataclass(frozen=True)
class Limit:
    kind: str
    per_window: int


BY_EMAIL = Limit("email", 5)
BY_CLIENT = Limit("client", 30)


def _subject(limit: Limit, value: str) -> str:
    return hashlib.sha256(f"{limit.kind}:{value.strip().lower()}".encode()).hexdigest()


async def _count(session: AsyncSession, limit: Limit, value: str, window: int) -> bool:
    """Count one use in ``window``; whether that went over the limit."""
    insert = (postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert)(SignInAttempts)
    statement = (
        insert.values(subject=_subject(limit, value), window=window, count=1)
        .on_conflict_do_update(index_elements=["subject", "window"], set_={"count": SignInAttempts.count + 1})
        .returning(SignInAttempts.count)
    )
    return int((await session.execute(statement)).scalar_one()) > limit.per_window


async def take_attempt(db: Database, *, email: str, client: str, now: float | None = None) -> int:
    """Count one attempt; return 0 if it may go on, else the seconds until the window ends."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    over = False
    async with db.transaction() as session:
        for limit, value in ((BY_EMAIL, email), (BY_CLIENT, client)):
            over = await _count(session, limit, value, window) or over
        await session.execute(delete(SignInAttempts).where(SignInAttempts.window < window))
    return max(1, int((window + 1) * WINDOW_SECONDS - now)) if over else 0


async def take(db: Database, limit: Limit, value: str, *, now: float | None = None) -> int:
    """Count one use of ``limit`` by ``value`` (an address); 0 if it may go on, else the seconds to wait."""
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS)
    async with db.transaction() as session:
        over = await _count(session, limit, value, window)
    return max(1, int((window + 1) * WINDOW_SECONDS - now)) if over else 0


async def succeeded(db: Database, *, email: str, client: str, now: float | None = None) -> None:
    window = int((time.time() if now is None else now) // WINDOW_SECONDS)
    async with db.transaction() as session:
        await session.execute(delete(SignInAttempts).where(SignInAttempts.subject == _subject(BY_EMAIL, email)))
        await session.execute(
            update(SignInAttempts)
            .where(SignInAttempts.subject == _subject(BY_CLIENT, client), SignInAttempts.window == window)
            .values(count=SignInAttempts.count - 1)
        )

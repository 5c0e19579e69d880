"""Throttling failed sign-ins, counted in the database so every replica shares one count.

Failures are counted per e-mail address and per client address in fixed
windows; past the limit, sign-in is refused until the window ends, even with
the right password, so guessing cannot continue at full speed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from store.db import Database
from store.models import SignInFailures

WINDOW_SECONDS = 15 * 60


@dataclass(frozen=True)
class Limit:
    kind: str
    per_window: int


BY_EMAIL = Limit("email", 5)
BY_CLIENT = Limit("client", 30)


def _subject(limit: Limit, value: str) -> str:
    return hashlib.sha256(f"{limit.kind}:{value.strip().lower()}".encode()).hexdigest()


def _window(now: float) -> int:
    return int(now // WINDOW_SECONDS)


async def blocked_for(db: Database, *, email: str, client: str, now: float | None = None) -> int:
    """Seconds until sign-in is allowed again for this address and client, or 0 if it is allowed now."""
    now = time.time() if now is None else now
    window = _window(now)
    subjects = {_subject(BY_EMAIL, email): BY_EMAIL, _subject(BY_CLIENT, client): BY_CLIENT}
    async with db.session() as session:
        rows = await session.execute(
            select(SignInFailures.subject, SignInFailures.count).where(
                SignInFailures.subject.in_(subjects), SignInFailures.window == window
            )
        )
        over = any(count >= subjects[subject].per_window for subject, count in rows)
    return max(1, int((window + 1) * WINDOW_SECONDS - now)) if over else 0


async def record_failure(db: Database, *, email: str, client: str, now: float | None = None) -> None:
    window = _window(time.time() if now is None else now)
    async with db.transaction() as session:
        insert = (postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert)(SignInFailures)
        for subject in (_subject(BY_EMAIL, email), _subject(BY_CLIENT, client)):
            await session.execute(
                insert.values(subject=subject, window=window, count=1).on_conflict_do_update(
                    index_elements=["subject", "window"], set_={"count": SignInFailures.count + 1}
                )
            )
        await session.execute(delete(SignInFailures).where(SignInFailures.window < window))


async def forget_failures(db: Database, *, email: str) -> None:
    """A successful sign-in clears the address's count (not the client's, which may be guessing others)."""
    async with db.transaction() as session:
        await session.execute(delete(SignInFailures).where(SignInFailures.subject == _subject(BY_EMAIL, email)))

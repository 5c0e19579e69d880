"""Requests counted per API key in fixed one-minute windows, in the database every replica shares.

One upsert adds one and returns the count, atomically on SQLite and
PostgreSQL alike. REST requests and MCP tool calls count on the same window,
so a key's plan rate covers everything it does. (The ``limits`` library keeps
its counters in memory, Redis, Memcached or MongoDB; none of those is the
database every replica already shares, so it does not fit here.)
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from sqlalchemy import Executable, delete
from sqlalchemy.dialects import postgresql, sqlite

from store.db import Database
from store.models import RateWindow
from store.plans import requests_per_minute
from store.principal import Principal

WINDOW = 60


@functools.cache
def _counting(dialect: str) -> Executable:
    """The upsert that adds one to a key's window, built once per dialect: every counted request runs it."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(RateWindow)
    return insert.on_conflict_do_update(
        index_elements=["key_id", "window"], set_={"count": RateWindow.count + 1}
    ).returning(RateWindow.count)


async def count_request(db: Database, key_id: str, window: int) -> int:
    """Add one to this key's window and return the new count."""
    async with db.transaction() as session:
        counting = _counting(session.bind.dialect.name)
        count = int((await session.execute(counting, {"key_id": key_id, "window": window, "count": 1})).scalar_one())
        if count == 1:
            # The first request of a window clears the key's older windows, so the table stays small.
            await session.execute(delete(RateWindow).where(RateWindow.key_id == key_id, RateWindow.window < window))
        return count


@dataclass(frozen=True)
class Counted:
    """One request counted against its key's plan rate."""

    limit: int
    count: int
    reset: int
    retry_after: int

    @property
    def over(self) -> bool:
        return self.count > self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)


async def take(db: Database, principal: Principal) -> Counted:
    """Count one request of ``principal``'s key in the current window."""
    now = time.time()
    window = int(now // WINDOW)
    limit = requests_per_minute(principal.plan, principal.rate_limit)
    count = await count_request(db, principal.key_id, window)
    reset = (window + 1) * WINDOW
    return Counted(limit, count, reset, max(1, int(reset - now + 0.999)))

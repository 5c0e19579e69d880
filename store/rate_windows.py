"""Requests counted per API key in fixed one-minute windows, in the database every replica shares.

One upsert adds to a key's window and returns the count, atomically on SQLite
and PostgreSQL alike. REST requests and MCP tool calls count on the same window,
so a key's plan rate covers everything it does. (The ``limits`` library keeps
its counters in memory, Redis, Memcached or MongoDB; none of those is the
database every replica already shares, so it does not fit here.)

A REST request is counted as it comes. Tool calls are many and quick, so each
process tallies them and adds its tally to the shared window at most every
``BATCH_SECONDS``, and at once when a key nears its limit: a call then costs
no database write, and the limit still holds exactly where it matters.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

from sqlalchemy import Executable, delete
from sqlalchemy.dialects import postgresql, sqlite

from store.db import Database, dialect_name
from store.models import RateWindow
from store.plans import requests_per_minute
from store.principal import Principal

WINDOW = 60
BATCH_SECONDS = 1.0
# Within this many requests of its limit, a key's tool calls are added to the shared window one by one.
NEAR = 10


@functools.cache
def _counting(dialect: str) -> Executable:
    """The upsert that adds to a key's window, built once per dialect: every counted request runs it."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(RateWindow)
    return insert.on_conflict_do_update(
        index_elements=["key_id", "window"], set_={"count": RateWindow.count + insert.excluded.count}
    ).returning(RateWindow.count)


async def count_request(db: Database, key_id: str, window: int, requests: int = 1) -> int:
    """Add ``requests`` to this key's window and return the new count."""
    async with db.transaction() as session:
        counting = _counting(dialect_name(session))
        params = {"key_id": key_id, "window": window, "count": requests}
        count = int((await session.execute(counting, params)).scalar_one())
        if count == requests:
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
    return _counted(limit, count, window, now)


def _counted(limit: int, count: int, window: int, now: float) -> Counted:
    reset = (window + 1) * WINDOW
    return Counted(limit, count, reset, max(1, int(reset - now + 0.999)))


@dataclass
class _Tally:
    """One key's tool calls in one window, as this process knows them."""

    window: int
    shared: int = 0  # the shared count when this process last added to it
    sending: int = 0  # calls on their way into the shared count
    pending: int = 0  # calls not sent yet
    sent_at: float = float("-inf")


class CallTally:
    """Counts tool calls on the shared windows, adding each process's calls in batches (see the module)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._tallies: dict[str, _Tally] = {}

    async def take(self, principal: Principal) -> Counted:
        now = time.time()
        window = int(now // WINDOW)
        limit = requests_per_minute(principal.plan, principal.rate_limit)
        tally = self._tallies.get(principal.key_id)
        if tally is None or tally.window != window:
            tally = self._tallies[principal.key_id] = _Tally(window)
        tally.pending += 1
        known = tally.shared + tally.sending + tally.pending
        if now - tally.sent_at >= BATCH_SECONDS or known >= limit - NEAR:
            sending, tally.pending, tally.sent_at = tally.pending, 0, now
            tally.sending += sending
            try:
                shared = await count_request(self.db, principal.key_id, window, sending)
            finally:
                tally.sending -= sending
            tally.shared = max(tally.shared, shared)
            known = tally.shared + tally.sending + tally.pending
        if len(self._tallies) > 10_000:
            # Keys idle since an earlier window are forgotten, so the tallies stay few.
            self._tallies = {key: t for key, t in self._tallies.items() if t.window == window}
        return _counted(limit, known, window, now)

"""Engines and sessions for SQLite (the default) and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Result, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

POOL_SIZE = 20
"""PostgreSQL connections a process keeps open. Under load, calls arrive in bursts, and a burst that needed more
than SQLAlchemy's default of 5 opened a connection per extra session and closed it afterwards: PostgreSQL forks a
backend for each, and those calls' p99 went from about 55 to 230 ms at 50 calls a second (``bench/load.py``)."""

PING_IDLE_SECONDS = 1.0
"""A pooled PostgreSQL connection unused for longer than this is pinged before it is handed out, and replaced if
the ping fails. SQLAlchemy's ``pool_pre_ping`` pings on every checkout: three more round trips (BEGIN, the ping,
ROLLBACK) on each transaction, which itself takes three to seven, and under load each round trip is another wait
in the event loop's queue. A connection used within the last second is taken on trust: if the database restarted
in that second, the first statement on it fails, and SQLAlchemy then replaces every connection of the pool that is
older than the failure."""


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; NORMAL skips an fsync per commit
    # (still durable across a process crash); the busy timeout queues writers
    # instead of failing them.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _ping_when_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a connection on checkout only if it sat in the pool longer than ``idle_seconds``."""
    dialect = engine.dialect

    def returned(_dbapi_connection: Any, record: Any) -> None:
        record.info["returned_at"] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get("returned_at")
        if returned_at is None or time.monotonic() - returned_at <= idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool discards this connection and hands out a new one.
            raise DisconnectionError(f"a pooled connection idle for {idle_seconds:g} s did not answer") from exc

    event.listen(engine.sync_engine, "checkin", returned)
    event.listen(engine.sync_engine, "checkout", checked_out)


def create_engine(
    url: str, *, pool_size: int = POOL_SIZE, ping_idle_seconds: float = PING_IDLE_SECONDS, **kwargs: Any
) -> AsyncEngine:
    """An engine for ``url``; ``pool_size`` and ``ping_idle_seconds`` are for PostgreSQL (SQLite's connections are
    files, cheap to open and never dropped by a server)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    engine = create_async_engine(url, pool_size=pool_size, **kwargs)
    _ping_when_idle(engine, ping_idle_seconds)
    return engine


def dialect_name(session: AsyncSession) -> str:
    """The database behind ``session``: "sqlite" or "postgresql"."""
    return session.get_bind().dialect.name


def rows_matched(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE run through ``AsyncSession.execute`` matched.

    SQLAlchemy returns a ``CursorResult`` for such a statement, but types ``Session.execute`` as returning a plain
    ``Result``, which has no ``rowcount``; this says so in one place rather than at each conditional update."""
    return cast(CursorResult[Any], result).rowcount


class Database:
    """The engine and a session factory, shared by everything in one process."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = create_engine(url, **engine_kwargs)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session whose work commits together when the block ends, or not at all."""
        async with self.sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()

"""One LISTEN connection per process on PostgreSQL, handing each notification to its channel's handler.

Approval wake-ups (``store.wakeups``) and cache invalidation
(``store.invalidation``) share it. It reconnects when the database goes away;
meanwhile waiters poll and caches expire on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)


class Listener:
    def __init__(self, database_url: str, handlers: Mapping[str, Callable[[str], None]]) -> None:
        url = make_url(database_url)
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.handlers = dict(handlers)
        self.listening = asyncio.Event()

    def _received(self, _connection: object, _pid: int, channel: str, payload: object) -> None:
        # A NOTIFY's payload arrives as text; asyncpg's listener type leaves it as object.
        self.handlers[channel](str(payload))

    async def forever(self, retry_seconds: float = 1.0) -> None:
        while True:
            try:
                connection = await asyncpg.connect(self.dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("notifications: cannot listen yet (%s); polling and cache expiry cover", type(exc).__name__)
                await asyncio.sleep(retry_seconds)
                continue
            closed = asyncio.Event()
            connection.add_termination_listener(lambda _c, closed=closed: closed.set())
            try:
                for channel in self.handlers:
                    await connection.add_listener(channel, self._received)
                self.listening.set()
                await closed.wait()
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await connection.close()
            log.warning("notifications: the LISTEN connection closed; reconnecting")

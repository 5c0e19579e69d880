"""Rate limits per API key and plan, counted in the database so every replica shares one count.

A fixed one-minute window per key: one upsert per request adds one and returns
the count, atomically on SQLite and PostgreSQL alike. (The ``limits`` library
keeps its counters in memory, Redis, Memcached or MongoDB; none of those is the
database every replica already shares, so it does not fit here.)

Every authenticated /api/v1 answer carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``; past the limit the answer
is 429 ``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from sqlalchemy import Executable, delete
from sqlalchemy.dialects import postgresql, sqlite
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.errors import error_response
from store.db import Database
from store.models import RateWindow
from store.plans import requests_per_minute
from store.principal import Principal

WINDOW = 60
PREFIX = "/api/v1/"


@functools.cache
def _counting(dialect: str) -> Executable:
    """The upsert that adds one to a key's window, built once per dialect: every /api/v1 request runs it."""
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


class RateLimit:
    """ASGI middleware; sits inside the authentication middleware, which has already named the key."""

    def __init__(self, app: ASGIApp, db_of: Any) -> None:
        self.app = app
        self.db_of = db_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = _principal(scope)
        if scope["type"] != "http" or principal is None or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        now = time.time()
        window = int(now // WINDOW)
        limit = requests_per_minute(principal.plan, principal.rate_limit)
        count = await count_request(self.db_of(scope), principal.key_id, window)
        reset = (window + 1) * WINDOW
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - count)),
            "X-RateLimit-Reset": str(reset),
        }
        if count > limit:
            retry_after = max(1, int(reset - now + 0.999))
            response = error_response(
                429,
                "rate_limited",
                f"This key may make {limit} requests a minute; try again in {retry_after} s.",
                {"limit": limit, "retry_after": retry_after},
            )
            response.headers.update({**headers, "Retry-After": str(retry_after)})
            await response(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in headers.items()),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


def _principal(scope: Scope) -> Principal | None:
    token = getattr(scope.get("user"), "access_token", None)
    principal = getattr(token, "principal", None)
    return principal if isinstance(principal, Principal) else None

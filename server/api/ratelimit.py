"""Rate limits per API key and plan over REST, on the shared counters of ``store.rate_windows``.

Every authenticated /api/v1 answer carries ``X-RateLimit-Limit``,
``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``; past the limit the answer
is 429 ``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.api.errors import error_response
from store.principal import Principal
from store.rate_windows import take

PREFIX = "/api/v1/"


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
        counted = await take(self.db_of(scope), principal)
        headers = {
            "X-RateLimit-Limit": str(counted.limit),
            "X-RateLimit-Remaining": str(counted.remaining),
            "X-RateLimit-Reset": str(counted.reset),
        }
        if counted.over:
            response = error_response(
                429,
                "rate_limited",
                f"This key may make {counted.limit} requests a minute; try again in {counted.retry_after} s.",
                {"limit": counted.limit, "retry_after": counted.retry_after},
            )
            response.headers.update({**headers, "Retry-After": str(counted.retry_after)})
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

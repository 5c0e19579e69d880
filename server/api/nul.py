"""Refuse a NUL character in a path or query: PostgreSQL text cannot hold one, so it would fail deep inside.

Answered as 400 in the API's error format before any route runs, on every
backend alike, so SQLite and PostgreSQL deployments agree.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.errors import error_response


class RefuseNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope.get("query_string", b""))
        ):
            response = error_response(400, "bad_request", "The request's path or query holds a NUL character.")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

"""An authenticating reverse proxy, for independent MCP clients that cannot send credentials.

It adds ``Authorization: Bearer <key>`` and forwards everything else as it
came, Host and Origin included, so the server's own DNS-rebinding checks still
see what the client sent. Responses stream through chunk by chunk (SSE).
"""

from __future__ import annotations

from typing import Any

import httpx

HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"content-length",
    b"authorization",
}


class AuthProxy:
    def __init__(self, upstream: str, key: str) -> None:
        self.client = httpx.AsyncClient(base_url=upstream, timeout=httpx.Timeout(None))
        self.key = key

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await self.client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        headers.append((b"authorization", f"Bearer {self.key}".encode()))
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        target = scope["raw_path"].decode() + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        request = self.client.build_request(scope["method"], target, headers=headers, content=body)
        response = await self.client.send(request, stream=True)
        try:
            raw = [(k, v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP]
            await send({"type": "http.response.start", "status": response.status_code, "headers": raw})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()

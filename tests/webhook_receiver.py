"""A webhook receiver on 127.0.0.1 that checks deliveries with the snippet of docs/webhooks.md.

The snippet is read from the documentation and executed, not copied: if the
documented check stops matching what the server sends, the webhook tests fail.
The receiver handles a delivery as the documented Flask handler does (400 for
an invalid one, 2xx without acting for a duplicate, the id remembered once the
work is done), and can be scripted to answer errors, redirect, or hang.
"""

from __future__ import annotations

import asyncio
import re
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

DOC = Path(__file__).resolve().parent.parent / "docs" / "webhooks.md"
MARKER = "<!-- receiver-snippet -->"


def load_snippet() -> types.ModuleType:
    """The documented receiver check, as a module."""
    text = DOC.read_text()
    found = re.search(r"```python\n(.*?)```", text.split(MARKER, 1)[1], re.S)
    assert found, f"no python block after {MARKER} in {DOC}"
    module = types.ModuleType("documented_webhook_check")
    exec(compile(found.group(1), str(DOC), "exec"), module.__dict__)
    return module


snippet = load_snippet()


@dataclass
class Received:
    """One request as it arrived, and what the receiver made of it."""

    headers: dict[str, str]
    body: bytes
    verdict: str
    event: dict[str, Any] | None = None

    @property
    def delivery_id(self) -> str:
        return self.headers.get("x-harmony-delivery", "")


@dataclass
class Receiver:
    secret: str = ""
    #: Statuses to answer to valid, new deliveries, in order; 200 once they run out.
    answers: list[int] = field(default_factory=list)
    #: Answer this valid, new delivery only once ``release`` is set (a receiver that hangs).
    hang_on_first: bool = False
    received: list[Received] = field(default_factory=list)
    processed: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    origin: str = ""

    @property
    def url(self) -> str:
        return f"{self.origin}/hook"

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/hook", self.hook, methods=["POST"]),
                Route("/elsewhere", self.hook, methods=["GET", "POST"]),
            ]
        )

    def verdicts(self) -> list[str]:
        return [r.verdict for r in self.received]

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            event = snippet.verify_webhook(self.secret, request.headers, body, processed=self.processed)
        except snippet.DuplicateWebhook:
            self.received.append(Received(headers, body, "duplicate"))
            return Response(status_code=204)
        except snippet.InvalidWebhook as exc:
            self.received.append(Received(headers, body, f"invalid: {exc}"))
            return Response("invalid", status_code=400)
        if self.hang_on_first:
            self.hang_on_first = False
            self.received.append(Received(headers, body, "hung", event))
            await self.release.wait()
            return Response(status_code=503)
        status = self.answers.pop(0) if self.answers else 200
        if 300 <= status < 400:
            self.received.append(Received(headers, body, f"answered {status}", event))
            return Response(status_code=status, headers={"Location": f"{self.origin}/elsewhere"})
        if status >= 300:
            self.received.append(Received(headers, body, f"answered {status}", event))
            return Response("receiver down\x00\nfor maintenance", status_code=status)
        self.received.append(Received(headers, body, "processed", event))
        self.processed.add(headers["x-harmony-delivery"])
        return Response("OK", status_code=status)

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Wait until ``count`` requests arrived."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                await asyncio.sleep(0.02)
        return self.received


@asynccontextmanager
async def serve_receiver(receiver: Receiver, tls: tuple[Path, Path] | None = None) -> AsyncIterator[Receiver]:
    """Run the receiver with uvicorn on a free port of 127.0.0.1, over TLS with ``tls`` (certificate, key)."""
    files = {"ssl_certfile": str(tls[0]), "ssl_keyfile": str(tls[1])} if tls else {}
    config = uvicorn.Config(receiver.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", **files)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    scheme = "https" if tls else "http"
    receiver.origin = f"{scheme}://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.should_exit = True
        await task

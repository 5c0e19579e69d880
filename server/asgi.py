"""The application as ``companion serve`` hands it to uvicorn, and how it stops.

With one process, ``serve`` builds the app itself and passes the object to
uvicorn. With ``--workers N``, uvicorn starts N processes from the import
string ``server.asgi:create`` (a factory): each worker builds its own app from
the environment, so each has its own database pool and its own LISTEN
connection.

Stopping: on SIGTERM (or SIGINT) uvicorn closes the listening socket, closes
idle keep-alive connections and waits, for up to ``shutdown_seconds``, for the
open requests to end. ``Draining`` makes that wait mean what the product
promises:

- a call waiting for a person's decision answers at once that approval is
  still required; the approval stays pending in the database, where any
  replica decides and runs it;
- a running call finishes and its result reaches the caller;
- once no request is left but event streams (an MCP session's GET stream, the
  console inbox), those end too, so the process stops when its work is done
  instead of at the end of the grace.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from typing import Any

from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.app import Companion, create_app
from server.heap import freeze_long_lived
from server.observability.logging import configure as configure_logging
from server.observability.tracing import configure_tracing
from server.services.approval_flow import ApprovalFlow
from server.services.races import unless
from server.settings import load_settings

DISCONNECT: Message = {"type": "http.disconnect"}


def create() -> ASGIApp:
    """uvicorn's app factory: the app of one worker process, from the environment alone."""
    # A worker is a fresh interpreter (uvicorn spawns them): ``companion``'s main() set up logging and tracing in
    # the parent only.
    configure_logging(os.environ.get("COMPANION_LOG_LEVEL", "WARNING"), os.environ.get("COMPANION_LOG_FORMAT", "text"))
    configure_tracing()
    return served(Companion.build(load_settings()))


def served(companion: Companion) -> ASGIApp:
    """``companion``'s app, wrapped to stop the way the module docstring says, with what start-up built frozen
    (``server/heap.py``)."""
    # The MCP SDK answers calls as server-sent events through sse-starlette, which by default ends every open
    # event stream the moment uvicorn is asked to exit: a running call's result would never reach its caller.
    # (sse-starlette leaves this static method unannotated: it takes nothing and returns nothing.)
    disable_graceful_drain: Callable[[], None] = AppStatus.disable_automatic_graceful_drain
    disable_graceful_drain()
    app = Draining(create_app(companion), companion.gateway.flow)
    freeze_long_lived()
    return app


def _starts_event_stream(message: Message) -> bool:
    """A response of server-sent events: it listens rather than works, and may stay open for hours."""
    if message["type"] != "http.response.start":
        return False
    content_type = next((value for name, value in message.get("headers", ()) if name.lower() == b"content-type"), b"")
    return content_type.startswith(b"text/event-stream")


class Draining:
    """Counts the requests that are work, and on a stop signal drains them as the module docstring says."""

    def __init__(self, app: ASGIApp, flow: ApprovalFlow) -> None:
        self.app = app
        self.flow = flow
        self.working = 0
        self.draining = False
        # Set once the process is draining and no request but event streams is open: the streams then end.
        self.quiet = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            # uvicorn installs its signal handlers before the lifespan starts and puts the previous ones back
            # when it stops, so these wrap its own for exactly as long as it serves.
            self._on_signals(asyncio.get_running_loop())
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # A request is work until it turns out to be a GET answered with an event stream (an MCP session's GET
        # stream, the console inbox), which only listens. MCP calls are POSTs: their event-stream answers are work.
        self.working += 1
        streaming = False

        async def send_noting_streams(message: Message) -> None:
            nonlocal streaming
            if not streaming and _starts_event_stream(message):
                streaming = True
                self._done_working()
            await send(message)

        try:
            if scope["method"] == "GET":
                await self.app(scope, self._until_quiet(receive), send_noting_streams)
            else:
                await self.app(scope, receive, send)
        finally:
            if not streaming:
                self._done_working()

    def drain(self) -> None:
        """The process is stopping: answer the calls waiting for decisions, and end the streams once idle."""
        self.draining = True
        self.flow.stop_waiting()
        if not self.working:
            self.quiet.set()

    def _done_working(self) -> None:
        self.working -= 1
        if self.draining and not self.working:
            self.quiet.set()

    def _on_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may set signal handlers; a server run elsewhere handles no signals
        for number in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(number)
            if not callable(previous):
                continue

            def handler(signum: int, frame: Any, previous: Any = previous) -> None:
                loop.call_soon_threadsafe(self.drain)
                previous(signum, frame)

            signal.signal(number, handler)

    def _until_quiet(self, receive: Receive) -> Receive:
        """``receive`` for a GET: once the process is quiet (every open GET is then a stream), the client seems to
        leave, which ends the stream."""

        async def receive_until_quiet() -> Message:
            if self.quiet.is_set():
                return DISCONNECT
            received, message = await unless(self.quiet, receive())
            return message if received and message is not None else DISCONNECT

        return receive_until_quiet

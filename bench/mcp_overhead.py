"""What Companion's gate costs on a read tool call, against a bare SDK server doing the same read.

Two servers run as separate processes under uvicorn on 127.0.0.1, over one
SQLite database seeded with the demo data:

- ``bare``: the SDK's ``MCPServer`` with one tool that calls the very same
  adapter function (``tools.adapters.harmony.get_meeting``) for a fixed user
  and declares the same output contract as a pydantic model, as a developer
  on the bare SDK would;
- ``ours``: the real app, which adds bearer-key authentication, the per-key
  tool list, schema validation, the rule engine, output validation and an
  audit row (hash-chained) for every call;
- ``oauth``: the same app, called with an OAuth access token that the demo
  admin gave an assistant through Companion's own authorization server,
  instead of an agent key.

Two tools are measured: a read, and a write that an admin rule auto-approves,
so the whole gate runs (auth, rules, and an audit row committed before the
answer, as every state-changing call's is).

One client process drives both with the SDK's ``Client`` over Streamable HTTP,
alternating runs so that drift on this shared machine hits both alike. It
prints the median latency and calls per second of each, and their ratio.

    .venv/bin/python bench/mcp_overhead.py [--calls 300] [--rounds 6] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from store.db import Database
    from store.principal import Principal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret"
USER = "admin@acme.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_ours(database_url: str, data_dir: str, port: int) -> None:
    import uvicorn

    from server.app import Companion, create_app
    from server.settings import Settings

    settings = Settings(
        database_url=database_url, data_dir=Path(data_dir), secret_key=SECRET, base_url=f"http://127.0.0.1:{port}"
    )
    uvicorn.run(
        create_app(Companion.build(settings)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_keep_alive=settings.keep_alive_seconds,
    )


class Contact(BaseModel):
    id: str
    name: str
    email: str
    company: str
    title: str
    phone: str


class ActionItem(BaseModel):
    id: str
    meeting_id: str
    text: str
    assignee_email: str | None
    due_date: str | None
    done: bool
    created_at: str


class MeetingDetail(BaseModel):
    """The same output contract as the manifest's harmony_get_meeting, declared the SDK's way."""

    id: str
    title: str
    date: str
    duration: int
    status: str
    team: str | None
    owner: str | None
    contacts: list[Contact]
    action_items: list[ActionItem]
    transcript_segments: int
    has_summary: bool


def serve_bare(database_url: str, port: int, user: str = USER, secret: str = SECRET) -> None:
    """The bare SDK server, acting for the demo user ``user`` (whose key the demo derives from ``secret``)."""
    import httpx
    import uvicorn
    from mcp.server.mcpserver import MCPServer

    from server.heap import freeze_long_lived
    from server.settings import Settings
    from store.connections import ConnectionView
    from store.db import Database
    from store.models import ConnectionScope, ConnectionStatus
    from tools.adapters import harmony
    from tools.context import ToolContext

    db = Database(database_url)
    principal: Principal | None = None

    async def context() -> ToolContext:
        nonlocal principal
        if principal is None:
            principal = await _principal_of(db, user, secret)
        connection = ConnectionView(
            "bench", "harmony", ConnectionScope.WORKSPACE, principal.workspace_id, None, "", ConnectionStatus.ACTIVE
        )
        return ToolContext(principal, connection, db.sessions, http)

    http = httpx.AsyncClient()
    mcp = MCPServer("bare", log_level="WARNING")

    @mcp.tool(name="harmony_get_meeting")
    async def get_meeting(meeting_id: str) -> MeetingDetail:
        found = await harmony.get_meeting(await context(), harmony.MeetingRef(meeting_id=meeting_id))
        return MeetingDetail.model_validate(found)

    @mcp.tool(name="harmony_create_action_item")
    async def create_action_item(meeting_id: str, text: str) -> ActionItem:
        made = await harmony.create_action_item(
            await context(), harmony.CreateActionItem(meeting_id=meeting_id, text=text)
        )
        return ActionItem.model_validate(made)

    app = mcp.streamable_http_app()
    freeze_long_lived()  # as ``companion serve`` does: the comparison is of the gate, not of process settings
    # Idle connections kept as long as `companion serve` keeps them, so both servers answer on the same terms.
    keep_alive = Settings.model_fields["keep_alive_seconds"].default
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=keep_alive)


async def _principal_of(db: Database, user: str, secret: str) -> Principal:
    from server.services.demo import demo_token
    from store.keys import authenticate
    from store.models import KeyKind

    async with db.session() as session:
        principal = await authenticate(
            session, demo_token(secret.encode(), user, KeyKind.AGENT), touch_after=timedelta(days=1)
        )
    if principal is None:
        raise RuntimeError(f"the demo agent key of {user} does not authenticate")
    return principal


async def prepare(database_url: str, data_dir: str, base_url: str) -> tuple[str, str, str, str]:
    """Migrate and seed; return the admin's agent key, an OAuth access token of an assistant the admin signed in
    to ``base_url``'s MCP endpoint, a meeting to read and one to add action items to."""
    from sqlalchemy import select, update

    from approvals.rules import Rule
    from server.app import Companion
    from server.services import demo
    from server.settings import Settings
    from store.migrate import upgrade_async
    from store.models import Meeting, MeetingStatus, Plan, Workspace

    await upgrade_async(database_url)
    settings = Settings(database_url=database_url, data_dir=Path(data_dir), secret_key=SECRET, base_url=base_url)
    companion = Companion.build(settings)
    try:
        async with companion.db.transaction() as session:
            keys = await demo.seed(session, companion.registry, companion.box, SECRET.encode())
            # Tool calls count against the key's plan rate: a benchmark's thousands a minute would hit it.
            await session.execute(
                update(Workspace)
                .where(Workspace.slug == keys.workspace)
                .values(plan=Plan.ENTERPRISE, rate_limit_per_minute=10_000_000)
            )
            meetings = (
                await session.scalars(select(Meeting.id).where(Meeting.status == MeetingStatus.PROCESSED).limit(2))
            ).all()
        admin = await companion.principal_for(keys.keys[USER])
        if admin is None:
            raise RuntimeError(f"the demo key of {USER} does not authenticate")
        async with companion.db.transaction() as session:
            await companion.rulebook.create(
                session,
                admin,
                Rule(
                    effect="allow",
                    scope="workspace",
                    tool="harmony_create_action_item",
                    conditions=[{"arg": "text", "op": "max_length", "value": 200}],
                    description="Action items are fine",
                ),
            )
        token = await sign_in_an_assistant(companion, admin)
    finally:
        await companion.aclose()
    return keys.keys[USER], token, meetings[0], meetings[1]


async def sign_in_an_assistant(companion: Any, person: Principal) -> str:
    """An access token for the MCP endpoint, through the authorization server's use cases as the consent page and
    the token endpoint drive them: a client registers, the person allows it, the code is exchanged."""
    from server.services.assistants.authorization import AuthorizationRequest

    authorization = companion.authorization
    redirect = "http://127.0.0.1:9/callback"
    await authorization.clients.register(
        {"client_name": "Bench Assistant", "redirect_uris": [redirect], "token_endpoint_auth_method": "none"},
        client_id="bench-assistant",
        secret=None,
        address="127.0.0.1",
    )
    asked = AuthorizationRequest(
        client_id="bench-assistant", redirect_uri=redirect, redirect_uri_explicit=True, scopes=["tools"], state=None,
        code_challenge="-" * 43, resource=companion.settings.mcp_url,
    )  # fmt: skip
    answer = await authorization.decide(asked, person, approve=True, person_facing=False)
    code = await authorization.code("bench-assistant", answer.params["code"])
    issued = await authorization.exchange(
        code.id, code.family_id, code.grant_id, scopes=code.scopes, resource=code.resource, asked=None
    )
    return str(issued.access_token)


async def wait_until_up(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


TOOLS: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "read": ("harmony_get_meeting", lambda meeting: {"meeting_id": meeting}),
    "write": ("harmony_create_action_item", lambda meeting: {"meeting_id": meeting, "text": "Follow up"}),
}


async def run_once(
    url: str, key: str | None, meeting: str, calls: int, concurrency: int, mode: str, kind: str = "read"
) -> list[float]:
    """Latencies of ``calls`` tool calls made by ``concurrency`` clients at once."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.types import TextContent

    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    async def worker(count: int) -> None:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        ):
            tool, arguments = TOOLS[kind][0], TOOLS[kind][1](meeting)
            await client.call_tool(tool, arguments)
            for _ in range(count):
                started = time.perf_counter()
                result = await client.call_tool(tool, arguments)
                latencies.append(time.perf_counter() - started)
                if result.is_error or (result.structured_content or {}).get("status") == "approval_required":
                    first = result.content[0]
                    raise RuntimeError(first.text if isinstance(first, TextContent) else repr(first))

    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return latencies


def summarize(name: str, latencies: list[float], seconds: float) -> tuple[float, float]:
    median_ms = statistics.median(latencies) * 1000
    p99_ms = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000
    rate = len(latencies) / seconds
    print(f"  {name:5}  median {median_ms:7.2f} ms   p99 {p99_ms:7.2f} ms   {rate:8.1f} calls/s", end="")
    print(f"   ({len(latencies)} calls)")
    return median_ms, rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300, help="calls per run")
    parser.add_argument("--rounds", type=int, default=6, help="alternating runs per server")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--mode", choices=["legacy", "2026-07-28"], default="2026-07-28")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        database_url = f"sqlite+aiosqlite:///{scratch}/bench.db"
        ours_port, bare_port = free_port(), free_port()
        key, token, meeting, writes_to = await prepare(database_url, scratch, f"http://127.0.0.1:{ours_port}")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        servers = [
            subprocess.Popen(
                [sys.executable, __file__, "--serve-ours", database_url, scratch, str(ours_port)], env=env
            ),
            subprocess.Popen([sys.executable, __file__, "--serve-bare", database_url, str(bare_port)], env=env),
        ]
        try:
            await wait_until_up(ours_port)
            await wait_until_up(bare_port)
            targets = {
                "bare": (f"http://127.0.0.1:{bare_port}/mcp", None),
                "ours": (f"http://127.0.0.1:{ours_port}/mcp", key),
                # The same server, called by an assistant with an OAuth access token instead of an agent key.
                "oauth": (f"http://127.0.0.1:{ours_port}/mcp", token),
            }
            for url, bearer in targets.values():  # warm each up
                await run_once(url, bearer, meeting, 40, 4, args.mode)
                await run_once(url, bearer, writes_to, 40, 4, args.mode, "write")
            figures: dict[str, tuple[float, float]] = {}
            for kind, label in (
                ("read", "a read tool, harmony_get_meeting"),
                ("write", "a write auto-approved by an admin rule, harmony_create_action_item"),
            ):
                print(
                    f"\n== {label}, over Streamable HTTP ({args.mode}), {args.rounds} alternating runs of "
                    f"{args.calls} calls per server"
                )
                for concurrency in (1, args.concurrency):
                    samples: dict[str, list[float]] = {name: [] for name in targets}
                    elapsed = dict.fromkeys(targets, 0.0)
                    for _ in range(args.rounds):
                        for name, (url, bearer) in targets.items():
                            started = time.perf_counter()
                            # Writes go to another meeting, so the read keeps its size.
                            target = meeting if kind == "read" else writes_to
                            samples[name] += await run_once(
                                url, bearer, target, args.calls, concurrency, args.mode, kind
                            )
                            elapsed[name] += time.perf_counter() - started
                    print(f"{concurrency} client{'s' if concurrency > 1 else ''}:")
                    for name in targets:
                        figures[f"{kind}/{name}@{concurrency}"] = summarize(name, samples[name], elapsed[name])
                    bare, ours = figures[f"{kind}/bare@{concurrency}"], figures[f"{kind}/ours@{concurrency}"]
                    oauth = figures[f"{kind}/oauth@{concurrency}"]
                    print(
                        f"  ratio  median latency ours/bare = {ours[0] / bare[0]:.2f}x   "
                        f"throughput bare/ours = {bare[1] / ours[1]:.2f}x   "
                        f"oauth/key median = {oauth[0] / ours[0]:.3f}x"
                    )
            print(
                "\n"
                + json.dumps(
                    {k: {"median_ms": round(v[0], 3), "calls_per_s": round(v[1], 1)} for k, v in figures.items()}
                )
            )
        finally:
            for server in servers:
                server.send_signal(signal.SIGINT)
            for server in servers:
                server.wait(timeout=20)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-ours":
        serve_ours(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve-bare":
        serve_bare(sys.argv[2], int(sys.argv[3]), *sys.argv[4:6])
    else:
        asyncio.run(main())

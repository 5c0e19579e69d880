"""The ``companion`` command, run as a real process the way a person or an assistant runs it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from sqlalchemy import text

from tests.conftest import COMPANION, TEST_SECRET, free_port, mcp_client
from tests.processes import healthy, start

pytestmark = pytest.mark.anyio


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMPANION, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


async def run_beside(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI, while this process's own server keeps serving.

    ``run`` blocks the event loop; a background task of the in-process server (an approval's e-mail notice) caught
    between its write and its commit would then hold SQLite's write lock until the CLI gave up waiting for it."""
    return await anyio.to_thread.run_sync(lambda: run(env, *args))


async def test_demo_seed_is_idempotent_and_prints_the_same_keys(env):
    first = run(env, "demo", "seed", "--json")
    second = run(env, "demo", "seed", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == json.loads(second.stdout)
    keys = json.loads(first.stdout)
    assert keys["workspace"] == "acme"
    assert set(keys["keys"]) == {"admin@acme.test", "alice@acme.test"}
    assert set(keys["user_keys"]) == {"admin@acme.test", "alice@acme.test"}
    listed = json.loads(run(env, "keys", "list", "--workspace", "acme", "--json").stdout)
    assert len(listed) == 4


async def test_workspace_user_and_key_lifecycle(env):
    assert run(env, "db", "upgrade").returncode == 0
    created = run(env, "workspace", "create", "--slug", "initech", "--name", "Initech", "--plan", "enterprise")
    assert created.returncode == 0 and "enterprise plan" in created.stdout
    added = run(env, "user", "add", "--workspace", "initech", "--email", "Peter@Initech.test", "--role", "admin")
    assert added.stdout.strip() == "peter@initech.test is admin of initech."
    issued = json.loads(
        run(env, "keys", "create", "--workspace", "initech", "--user", "peter@initech.test", "--json").stdout
    )
    assert issued["key"].startswith(issued["prefix"]) and issued["kind"] == "agent"
    [listed] = json.loads(run(env, "keys", "list", "--workspace", "initech", "--json").stdout)
    assert listed["id"] == issued["id"] and issued["key"] not in json.dumps(listed)
    assert run(env, "keys", "revoke", issued["id"]).returncode == 0
    again = run(env, "keys", "revoke", issued["id"])
    assert again.returncode == 1 and again.stderr.strip() == f"error: key_id: no live key {issued['id']!r}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["workspace", "create", "--slug", "Bad Slug", "--name", "x"], "error: slug: use 2-63 lowercase letters"),
        (["keys", "create", "--workspace", "nowhere", "--user", "a@b.test"], "error: workspace: no workspace"),
        (["user", "add", "--workspace", "acme", "--email", "not-an-email"], "error: email: 'not-an-email'"),
        (["keys", "revoke", "key_nope"], "error: key_id: no live key 'key_nope'"),
        (["serve", "--workers", "0"], "error: workers: at least 1"),
    ],
)
async def test_errors_are_one_line_and_a_non_zero_exit(env, args, message):
    run(env, "demo", "seed")
    result = run(env, *args)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


async def test_commands_refuse_an_unmigrated_database(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "COMPANION_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
        "COMPANION_SECRET_KEY": TEST_SECRET,
    }
    result = run(env, "keys", "list", "--workspace", "acme")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: database: the schema is missing or old; run `companion db upgrade` first"


async def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = {"PATH": os.environ["PATH"], "COMPANION_ENV": "production", "COMPANION_DATA_DIR": str(tmp_path)}
    result = run(env, "db", "upgrade")
    assert result.returncode == 1
    assert "COMPANION_SECRET_KEY is required (and may not be empty) when COMPANION_ENV=production" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_development_key_is_generated_once_and_kept(tmp_path):
    env = {"PATH": os.environ["PATH"], "COMPANION_DATA_DIR": str(tmp_path / "data")}
    first = run(env, "demo", "seed", "--json")
    second = run(env, "demo", "seed", "--json")
    assert "generated a development key" in first.stderr
    assert "generated a development key" not in second.stderr
    assert json.loads(first.stdout) == json.loads(second.stdout)
    assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o777 == 0o600


async def test_serve_demo_starts_a_server_an_assistant_can_use(env):
    port = free_port()
    process = subprocess.Popen(
        [COMPANION, "serve", "--demo", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if line.startswith("Serving MCP at"):
                break
        key = next(line.split(": ")[1].strip() for line in lines if "agent key for alice@acme.test" in line)
        base = f"http://127.0.0.1:{port}"
        async with httpx2.AsyncClient() as http:
            for _ in range(100):
                try:
                    if (await http.get(f"{base}/healthz")).status_code == 200:
                        break
                except httpx2.ConnectError:
                    time.sleep(0.05)
        async with mcp_client(base, key) as client:
            result = await client.call_tool("harmony_list_meetings", {"limit": 1})
        assert len(result.structured_content["meetings"]) == 1
        assert f"Serving MCP at {base}/mcp" in "".join(lines)
    finally:
        process.terminate()
        process.wait(timeout=20)


def workers_of(parent: int) -> list[int]:
    """The uvicorn worker processes of ``parent`` (multiprocessing's resource tracker is a child too)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except (OSError, NotADirectoryError):
            continue
        # The command name in parentheses may hold spaces; the parent's pid is the second field after it.
        if int(stat.rpartition(")")[2].split()[1]) == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return sorted(found)


def state_of(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


async def answered_while_paused(base: str, paused: list[int]) -> None:
    """/healthz answers while the ``paused`` workers are stopped, so another worker accepted the connection."""
    deadline = time.monotonic() + 30
    while True:
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        try:
            while any(state_of(pid) != "T" for pid in paused):
                await asyncio.sleep(0.005)
            async with httpx2.AsyncClient(base_url=base, timeout=1) as http:
                if (await http.get("/healthz")).status_code == 200:
                    return
        except httpx2.TransportError:
            pass  # that worker is still starting
        finally:
            # Briefly: uvicorn replaces a worker that misses its health checks for 5 seconds.
            for pid in paused:
                os.kill(pid, signal.SIGCONT)
        assert time.monotonic() < deadline, "the other worker never answered"
        await asyncio.sleep(0.1)


def after_serving(tmp_path: Path, script: str) -> str:
    """What ``script`` prints in a fresh interpreter: the collector's state is per process, and tests change it."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "COMPANION_DATA_DIR": str(tmp_path / "data"),
        "COMPANION_SECRET_KEY": TEST_SECRET,
    }
    python = str(Path(COMPANION).with_name("python"))
    return subprocess.run(
        [python, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout


def test_the_served_app_puts_what_start_up_built_out_of_the_collectors_way(tmp_path):
    """server/heap.py: full collections walk what requests leave behind, not the modules, mappers and manifests."""
    script = "import gc; from server.asgi import create; create(); print(gc.get_freeze_count(), len(gc.get_objects()))"
    frozen, tracked = map(int, after_serving(tmp_path, script).split())
    assert frozen > 100_000
    assert tracked < frozen / 10


FULL_COLLECTIONS_UNDER_CHURN = """
import collections, gc, json
from server.asgi import create

def churn():
    # Like requests: each leaves a cycle behind, and the last few thousand are still alive at any moment.
    counts = collections.Counter()
    def count(phase, info):
        if phase == "stop":
            counts[info["generation"]] += 1
    gc.callbacks.append(count)
    alive = collections.deque(maxlen=2000)
    for i in range(500_000):
        garbage = {"i": i}
        garbage["self"] = garbage
        alive.append(garbage)
    gc.callbacks.remove(count)
    return counts

create()
served = churn()
gc.set_threshold(700, 10, 10)
default = churn()
print(json.dumps({"served": served, "default": default}))
"""


def test_the_served_app_runs_a_full_collection_a_tenth_as_often_as_cpython_would(tmp_path):
    """server/heap.py: a full collection pauses every call in flight, and after the freeze it is rarely needed."""
    counts = json.loads(after_serving(tmp_path, FULL_COLLECTIONS_UNDER_CHURN))
    served, default = counts["served"], counts["default"]
    assert served["1"] >= 50 and default["1"] >= 50  # the same churn, enough of it to matter
    assert default.get("2", 0) >= 4  # CPython's own thresholds: a full collection every ten of the middle generation
    assert served.get("2", 0) == 0


@pytest.mark.parametrize(
    ("options", "setting"),
    [(["--workers", "2"], {}), ([], {"COMPANION_WORKERS": "2"})],
    ids=["option", "environment"],
)
async def test_serve_with_two_workers_answers_from_each_and_stops_cleanly(tmp_path, options, setting):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "COMPANION_DATA_DIR": str(tmp_path / "data"),  # SQLite there
        "COMPANION_SECRET_KEY": TEST_SECRET,
        **setting,
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start(env, port, *options)
    try:
        await healthy(base)
        async with asyncio.timeout(30):
            while len(workers := workers_of(process.pid)) < 2:
                await asyncio.sleep(0.1)
        assert len(workers) == 2
        for serving in workers:
            await answered_while_paused(base, [pid for pid in workers if pid != serving])
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in workers)  # stopped and reaped with the parent
    finally:
        process.kill()
        process.wait()


async def test_serve_keeps_an_idle_connection_open_as_long_as_the_setting_says(env):
    """COMPANION_KEEP_ALIVE_SECONDS: a connection idle for less is reused, and the server closes one idle longer.

    uvicorn's own default, 5 s, is httpx's idle expiry too: both ends closing at once made requests fail now and
    then. The setting exists so the server outlasts its clients' and its load balancer's idle timeouts."""
    port = free_port()
    process = start({**env, "COMPANION_KEEP_ALIVE_SECONDS": "1"}, port)
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    async def answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
        return head.startswith(b"HTTP/1.1 200")

    try:
        await healthy(f"http://127.0.0.1:{port}")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await answered(reader, writer)
        await asyncio.sleep(0.3)
        assert await answered(reader, writer)  # the same connection, idle for less than the setting
        idle_since = time.monotonic()
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # the server closed it
        assert 0.5 < time.monotonic() - idle_since < 4  # after the setting's 1 s, well before uvicorn's 5 s
        writer.close()
    finally:
        process.terminate()
        process.wait()


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_stdio_serves_the_same_tools_for_the_key_in_the_environment(env, mode):
    keys = json.loads(run(env, "demo", "seed", "--json").stdout)
    params = StdioServerParameters(
        command=COMPANION, args=["mcp"], env={**env, "COMPANION_API_KEY": keys["keys"]["alice@acme.test"]}
    )
    async with Client(params, mode=mode) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("harmony_search_contacts", {"query": "initech"})
        refused = await client.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": "x"})
        # stdio with no elicitation support: the call waits for approval elsewhere
    assert "harmony_get_transcript" in tools
    assert {c["company"] for c in result.structured_content["contacts"]} == {"Initech"}
    assert refused.is_error is False
    assert refused.structured_content["status"] == "approval_required"


async def test_stdio_refuses_a_bad_key_in_one_line(env):
    run(env, "demo", "seed")
    result = run({**env, "COMPANION_API_KEY": "hck_not_a_key"}, "mcp")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: COMPANION_API_KEY: not a valid, unrevoked API key for this server"
    missing = run(env, "mcp")
    assert missing.stderr.strip() == "error: COMPANION_API_KEY: set it to an agent API key to serve MCP over stdio"


async def test_rules_and_approvals_from_the_command_line(env, app_client, companion):
    keys = json.loads(run(env, "demo", "seed", "--json").stdout)
    rule = {
        "effect": "deny",
        "scope": "workspace",
        "tool": "harmony_create_action_item",
        "conditions": [{"arg": "text", "op": "contains", "value": "fire"}],
        "description": "no firing",
    }
    member = run(env, "rules", "add", "--workspace", "acme", "--as", "alice@acme.test", json.dumps(rule))
    assert member.returncode == 1
    assert member.stderr.strip() == "error: Only a workspace admin can create workspace rules"
    added = run(env, "rules", "add", "--workspace", "acme", "--as", "admin@acme.test", "--json", json.dumps(rule))
    assert added.returncode == 0, added.stderr
    explained = json.loads(
        run(
            env,
            "rules",
            "explain",
            "--workspace",
            "acme",
            "--as",
            "admin@acme.test",
            "--json",
            "--tool",
            "harmony_create_action_item",
            "--user",
            "alice@acme.test",
            "--arguments",
            '{"text": "fire Bob"}',
        ).stdout
    )
    assert explained["effect"] == "deny" and explained["rules"][0]["id"] == json.loads(added.stdout)["id"]
    bad = run(
        env,
        "rules",
        "add",
        "--workspace",
        "acme",
        "--as",
        "admin@acme.test",
        '{"effect": "allow", "scope": "workspace", "tool": "harmony_teleport"}',
    )
    assert bad.stderr.strip() == "error: tool: 'harmony_teleport' matches no tool of any app"

    async with mcp_client(
        "http://127.0.0.1:8000", keys["keys"]["alice@acme.test"], transport=app_client.transport
    ) as c:
        waiting = await c.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": "hire Dan"})
    approval_id = waiting.structured_content["approval_id"]
    listed = await run_beside(env, "approvals", "list", "--workspace", "acme", "--as", "alice@acme.test")
    assert approval_id in listed.stdout and "hire Dan" in listed.stdout
    denied = await run_beside(
        env,
        "approvals",
        "deny",
        approval_id,
        "--workspace",
        "acme",
        "--as",
        "alice@acme.test",
        "--reason",
        "wrong meeting",
    )
    assert denied.stdout.strip().startswith(f"{approval_id} is denied")
    again = await run_beside(env, "approvals", "approve", approval_id, "--workspace", "acme", "--as", "alice@acme.test")
    assert again.returncode == 1 and "is already denied" in again.stderr


async def test_audit_verify_finds_a_tampered_row(env, app_client, companion):
    keys = json.loads(run(env, "demo", "seed", "--json").stdout)
    async with mcp_client(
        "http://127.0.0.1:8000", keys["keys"]["alice@acme.test"], transport=app_client.transport
    ) as c:
        for _ in range(3):
            await c.call_tool("harmony_list_meetings", {"limit": 1})
    await companion.audit.flush()
    intact = run(env, "audit", "verify")
    assert intact.returncode == 0 and "3 entries, intact" in intact.stdout
    async with companion.db.transaction() as session:
        await session.execute(
            text("UPDATE audit_entries SET outcome = 'failed' WHERE id = (SELECT MIN(id) FROM audit_entries)")
        )
    broken = run(env, "audit", "verify")
    assert broken.returncode == 1
    assert "BROKEN: entry" in broken.stdout and "was changed after it was written" in broken.stdout
    assert broken.stderr.strip() == "error: audit: the chain of 1 workspace(s) is broken"

"""``companion integrations``: the lifecycle from a terminal, as a workspace member, against Linear's fake."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.conftest import COMPANION
from tests.fakes.base import serve
from tests.fakes.linear import LinearFake

pytestmark = pytest.mark.anyio

AS_ADMIN = ("--workspace", "acme", "--as", "admin@acme.test", "--json")


async def companion(environment: dict[str, str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        COMPANION,
        *args,
        env=environment,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def ok(environment: dict[str, str], *args: str, stdin: str = "") -> Any:
    code, out, err = await companion(environment, *args, stdin=stdin)
    assert code == 0, err
    return json.loads(out)


async def test_connect_test_sync_logs_and_disconnect_from_the_terminal(env):
    fake = LinearFake()
    async with serve(fake) as origin:
        environment = {**env, "COMPANION_PROVIDER_ORIGINS": json.dumps({"linear": origin})}
        await ok(environment, "demo", "seed", "--json")
        apps = await ok(environment, "integrations", "list", "--available", *AS_ADMIN)
        assert "linear" in {a["id"] for a in apps}
        key = fake.issue_key()
        connection = await ok(
            environment,
            "integrations", "connect", "linear", "--method", "api_key", "--scope", "workspace", "--setup", "-",
            *AS_ADMIN,
            stdin=json.dumps({"api_key": key}),
        )  # fmt: skip
        assert connection["status"] == "active" and key not in json.dumps(connection)
        tested = await ok(environment, "integrations", "test", connection["id"], *AS_ADMIN)
        assert tested == {"ok": True, "code": None, "message": "Signed in to Linear as Alice"}
        run = await ok(environment, "integrations", "sync", connection["id"], *AS_ADMIN)
        assert run["status"] == "succeeded" and run["counts"]["fetched"] == 3
        logs = await ok(environment, "integrations", "logs", connection["id"], *AS_ADMIN)
        assert [entry["id"] for entry in logs] == [run["id"]]
        gone = await ok(environment, "integrations", "disconnect", connection["id"], *AS_ADMIN)
        assert gone["status"] == "disconnected"


async def test_oauth_connect_prints_the_link_to_open(env):
    environment = {
        **env,
        "COMPANION_OAUTH_CLIENTS": json.dumps({"linear": {"client_id": "id", "client_secret": "secret"}}),
    }
    await ok(environment, "demo", "seed", "--json")
    started = await ok(environment, "integrations", "connect", "linear", *AS_ADMIN)
    assert started["authorize_url"].endswith("/start") and "browser" in started["next"]


async def test_a_member_needs_the_integration_permission_for_workspace_apps(env):
    await ok(env, "demo", "seed", "--json")
    connect = (
        "integrations", "connect", "linear", "--method", "api_key", "--scope", "workspace",
        "--setup", '{"api_key": "k"}', "--workspace", "acme", "--as", "alice@acme.test", "--json",
    )  # fmt: skip
    code, _, err = await companion(env, *connect)
    assert code == 1 and "admins and members with the integration permission" in err
    code, out, _ = await companion(
        env, "user", "add", "--workspace", "acme", "--email", "alice@acme.test", "--integrations", "yes"
    )  # fmt: skip
    assert out.strip() == "alice@acme.test is member of acme, and manages its integrations."
    connected = await ok(env, *connect)
    assert connected["scope"] == "workspace" and connected["status"] == "active"

"""The MCP conformance suite from npm, an independent client, against the real server on 127.0.0.1.

The suite sends no credentials, so it talks to an authenticating proxy that
adds a real API key; the server's own authentication stays as it is.
"""

from __future__ import annotations

import asyncio
import os
import re

import pytest
import uvicorn

from tests.auth_proxy import AuthProxy
from tests.conftest import free_port
from tests.node import CONFORMANCE_CLI, NODE

pytestmark = [pytest.mark.anyio, pytest.mark.conformance]

SCENARIOS = [
    "server-initialize",
    "server-session-lifecycle",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
    "caching",
    "http-header-validation",
]


@pytest.fixture
async def proxied_server(live_server, demo_keys):
    if not CONFORMANCE_CLI.exists():
        message = "the conformance suite is not installed: run `python -m tests.node` (scripts/test does)"
        if os.environ.get("COMPANION_REQUIRE_CONFORMANCE"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    proxy = uvicorn.Server(
        uvicorn.Config(
            AuthProxy(live_server, demo_keys.keys["alice@acme.test"]), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    task = asyncio.create_task(proxy.serve())
    while not proxy.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proxy.should_exit = True
        await task


async def test_the_conformance_scenarios_pass(proxied_server, tmp_path):
    failures = []
    for scenario in SCENARIOS:
        process = await asyncio.create_subprocess_exec(
            str(NODE),
            str(CONFORMANCE_CLI),
            "server",
            "--url",
            proxied_server,
            "--scenario",
            scenario,
            "-o",
            str(tmp_path / scenario),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        text = output.decode(errors="replace")
        tally = re.search(r"Passed: (\d+)/(\d+), (\d+) failed", re.sub(r"\x1b\[[0-9;]*m", "", text))
        # A scenario that checked nothing (0/0) proves nothing, so it counts as a failure too.
        if process.returncode != 0 or tally is None or int(tally[2]) == 0 or tally[1] != tally[2]:
            failures.append(f"--- {scenario} (exit {process.returncode})\n{text}")
        else:
            print(f"{scenario}: {tally[0]}")
    assert not failures, "\n".join(failures)

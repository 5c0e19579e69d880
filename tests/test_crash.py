"""A server SIGKILLed while it runs an approved call: after a restart the call's outcome is unknown, and
nothing runs it a second time; the person decides."""

from __future__ import annotations

import asyncio
import json

import httpx2
import pytest

from tests.conftest import free_port, mcp_client
from tests.fakes.base import serve
from tests.fakes.linear import LinearFake
from tests.processes import healthy, start

pytestmark = pytest.mark.anyio

ISSUE = {"team": "ENG", "title": "Renew the Globex contract"}


async def test_a_server_killed_mid_call_leaves_it_outcome_unknown_and_never_runs_it_again(env, demo_keys):
    linear = LinearFake()
    async with serve(linear) as origin:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        child_env = {
            **env,
            "COMPANION_BASE_URL": base,
            "COMPANION_PROVIDER_ORIGINS": json.dumps({"linear": origin}),
            "COMPANION_EXECUTION_LEASE_SECONDS": "1",
        }
        agent, person = demo_keys.keys["alice@acme.test"], demo_keys.user_keys["alice@acme.test"]
        first = start(child_env, port)
        try:
            await healthy(base)
            async with httpx2.AsyncClient(
                base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {person}"}, timeout=20
            ) as api:
                connected = await api.post(
                    "/integrations/apps/linear/connect",
                    json={"method": "api_key", "scope": "personal", "setup": {"api_key": linear.issue_key()}},
                )
                assert connected.status_code == 201, connected.text
                async with mcp_client(base, agent) as assistant:
                    waiting = await assistant.call_tool("linear_create_issue", ISSUE)
                approval_id = waiting.structured_content["approval_id"]
                assert (await api.post(f"/approvals/{approval_id}/approve", json={})).status_code == 200

                linear.hold = asyncio.Event()  # the provider takes its time: the call is mid-flight
                before = len(linear.api_requests())

                async def retry() -> None:
                    async with mcp_client(base, agent) as assistant:
                        await assistant.call_tool("linear_create_issue", ISSUE)

                running = asyncio.create_task(retry())
                async with asyncio.timeout(20):
                    while len(linear.api_requests()) == before:
                        await asyncio.sleep(0.02)
                first.kill()
                first.wait()
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
        finally:
            first.kill()
            first.wait()

        reached = len(linear.api_requests())
        held, linear.hold = linear.hold, None
        assert held is not None
        held.set()  # the dead server's request is answered into a closed socket
        second = start(child_env, port)
        try:
            await healthy(base)
            await asyncio.sleep(1.2)  # the dead process's one-second lease has lapsed
            async with httpx2.AsyncClient(
                base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {person}"}, timeout=20
            ) as api:
                assert (await api.get(f"/approvals/{approval_id}")).json()["status"] == "outcome_unknown"
            async with mcp_client(base, agent) as assistant:
                again = await assistant.call_tool("linear_create_issue", ISSUE)
                state = await assistant.call_tool("companion_get_approval", {"approval_id": approval_id})
            assert again.is_error and "may or may not have happened" in again.content[0].text
            assert state.structured_content["status"] == "outcome_unknown"
            assert len(linear.api_requests()) == reached  # nothing was sent to Linear a second time
        finally:
            second.terminate()
            second.wait()

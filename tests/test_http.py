"""The HTTP face of the MCP endpoint: authentication, discovery metadata and DNS-rebinding protection."""

from __future__ import annotations

import asyncio

import httpx2
import pytest

from store.keys import revoke_key
from tests.conftest import mcp_client

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
STREAMABLE = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
async def http(app_client):
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


@pytest.mark.parametrize("authorization", [None, "Bearer hck_wrong", "Bearer ", "Basic YWxpY2U6cHc="])
async def test_missing_or_wrong_credentials_get_401_with_a_challenge_and_nothing_else(http, demo_keys, authorization):
    headers = {**STREAMABLE, **({"Authorization": authorization} if authorization else {})}
    response = await http.post("/mcp", json=INITIALIZE, headers=headers)
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert "harmony" not in response.text and "tool" not in response.text


async def test_a_revoked_key_gets_401_at_once(http, companion, demo_keys):
    key = demo_keys.keys["alice@acme.test"]
    headers = {**STREAMABLE, "Authorization": f"Bearer {key}"}
    assert (await http.post("/mcp", json=INITIALIZE, headers=headers)).status_code == 200
    principal = await companion.principal_for(key)
    async with companion.db.transaction() as session:
        await revoke_key(session, principal.key_id)
    assert (await http.post("/mcp", json=INITIALIZE, headers=headers)).status_code == 401


async def test_revoking_a_key_ends_an_open_session(app_client, companion, demo_keys):
    key = demo_keys.keys["alice@acme.test"]
    principal = await companion.principal_for(key)
    with pytest.raises(BaseException) as caught:
        async with app_client(key, mode="legacy") as client:
            assert (await client.list_tools()).tools
            async with companion.db.transaction() as session:
                await revoke_key(session, principal.key_id)
            await client.list_tools()
    assert "Server returned an error response" in repr(caught.value)


async def test_a_user_key_cannot_call_tools(http, demo_keys):
    headers = {**STREAMABLE, "Authorization": f"Bearer {demo_keys.user_keys['alice@acme.test']}"}
    response = await http.post("/mcp", json=INITIALIZE, headers=headers)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_protected_resource_metadata_is_published(http):
    response = await http.get("/.well-known/oauth-protected-resource/mcp")
    assert response.status_code == 200
    metadata = response.json()
    assert metadata["resource"] == f"{BASE}/mcp"
    assert metadata["authorization_servers"] == [BASE]
    assert metadata["scopes_supported"] == ["tools"]


@pytest.mark.parametrize(
    ("header", "value", "status"),
    [("Host", "evil.example.com", 421), ("Origin", "http://evil.example.com", 403)],
)
async def test_dns_rebinding_protection_rejects_foreign_hosts_and_origins(http, demo_keys, header, value, status):
    headers = {**STREAMABLE, "Authorization": f"Bearer {demo_keys.keys['alice@acme.test']}", header: value}
    response = await http.post("/mcp", json=INITIALIZE, headers=headers)
    assert response.status_code == status


async def test_health_check(http):
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_full_session_against_a_real_uvicorn_server(live_server, demo_keys, mode):
    async with mcp_client(live_server, demo_keys.keys["alice@acme.test"], mode=mode) as client:
        assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        tools = {tool.name for tool in (await client.list_tools()).tools}
        meetings = await client.call_tool("harmony_list_meetings", {"limit": 5})
        first = meetings.structured_content["meetings"][0]["id"]
        meeting = await client.call_tool("harmony_get_meeting", {"meeting_id": first})
        refused = await client.call_tool("harmony_create_action_item", {"meeting_id": first, "text": "x"})
    assert "harmony_get_transcript" in tools
    assert len(meetings.structured_content["meetings"]) == 5
    assert meeting.structured_content["id"] == first
    assert refused.structured_content["status"] == "approval_required"


async def test_a_real_server_answers_401_without_a_key(live_server):
    async with httpx2.AsyncClient() as client:
        response = await client.post(f"{live_server}/mcp", json=INITIALIZE, headers=STREAMABLE)
    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["www-authenticate"]


async def test_with_caching_on_a_revoked_key_stops_working_within_the_cache_time(settings, registry, demo_keys):
    from server.app import Companion, create_app

    cached = Companion.build(settings.model_copy(update={"cache_seconds": 0.3}), registry=registry)
    app = create_app(cached)
    key = demo_keys.keys["alice@acme.test"]
    headers = {**STREAMABLE, "Authorization": f"Bearer {key}"}
    async with (
        app.router.lifespan_context(app),
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as http,
    ):
        assert (await http.post("/mcp", json=INITIALIZE, headers=headers)).status_code == 200
        principal = await cached.principal_for(key)
        async with cached.db.transaction() as session:
            await revoke_key(session, principal.key_id)
        await asyncio.sleep(0.35)
        assert (await http.post("/mcp", json=INITIALIZE, headers=headers)).status_code == 401

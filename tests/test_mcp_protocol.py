"""Companion's own tools on the 2026-07-28 wire, read frame by frame.

A 2026-07-28 request gets one answer on its own response stream. The server
may not send the client requests of its own there (a confirmation is an
incomplete result the client answers on its retry), nor log messages the
request did not ask for, nor rely on a capability the client did not declare.
The SDK's ``Client`` would hide a stray frame, so these tests post raw JSON-RPC
and read every frame that comes back.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from mcp.shared.inbound import NAME_BEARING_METHODS, encode_header_value
from sqlalchemy import func, select

from store.models import ActionItem, Approval
from tests.conftest import alices_meeting, mcp_client

pytestmark = pytest.mark.anyio

VERSION = "2026-07-28"
ALICE = "alice@acme.test"
ELICITATION = {"elicitation": {"form": {}, "url": {}}}


async def exchange(
    base_url: str, key: str, method: str, params: dict[str, Any], *, capabilities: dict[str, Any], request_id: int = 7
) -> tuple[int, list[dict[str, Any]]]:
    """POST one 2026-07-28 request; the HTTP status and every JSON-RPC message that came back, in order."""
    meta = {types.PROTOCOL_VERSION_META_KEY: VERSION, types.CLIENT_CAPABILITIES_META_KEY: capabilities}
    headers = {
        "Authorization": f"Bearer {key}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": VERSION,
        "Mcp-Method": method,
    }
    if (name := NAME_BEARING_METHODS.get(method)) is not None:
        headers["Mcp-Name"] = encode_header_value(params[name])
    body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": meta}}
    async with httpx2.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.post("/mcp", json=body, headers=headers)
    if response.headers["content-type"].startswith("text/event-stream"):
        frames = [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]
    else:
        frames = [response.json()]
    return response.status_code, frames


def only_the_answer(frames: list[dict[str, Any]], request_id: int = 7) -> dict[str, Any]:
    """The request's answer, after checking that nothing else came on its stream."""
    assert [frame.get("id") for frame in frames] == [request_id], frames
    assert "method" not in frames[0], frames
    return frames[0]


async def action_items(companion) -> int:
    async with companion.db.session() as session:
        return await session.scalar(select(func.count()).select_from(ActionItem)) or 0


async def test_a_confirmation_is_the_calls_incomplete_result_never_a_request_of_its_own(
    live_server, demo_keys, companion
):
    before = await action_items(companion)
    arguments = {"meeting_id": await alices_meeting(companion), "text": "Send the contract"}
    status, frames = await exchange(
        live_server,
        demo_keys.keys[ALICE],
        "tools/call",
        {"name": "harmony_create_action_item", "arguments": arguments},
        capabilities=ELICITATION,
    )
    answer = only_the_answer(frames)["result"]
    assert status == 200
    assert answer["resultType"] == "input_required"
    assert [request["method"] for request in answer["inputRequests"].values()] == ["elicitation/create"]
    assert await action_items(companion) == before


async def test_nothing_but_the_answer_comes_on_a_stream_that_asked_for_no_logs(live_server, demo_keys, companion):
    key = demo_keys.keys[ALICE]
    meeting = await alices_meeting(companion)
    calls = [
        ("tools/list", {}),
        ("tools/call", {"name": "harmony_get_meeting", "arguments": {"meeting_id": meeting}}),
        ("tools/call", {"name": "harmony_get_meeting", "arguments": {"meeting_id": "mtg_nobody"}}),
        ("tools/call", {"name": "harmony_list_meetings", "arguments": {"limit": 0}}),
        ("tools/call", {"name": "companion_get_approval", "arguments": {"approval_id": "apr_none"}}),
        ("tools/call", {"name": "harmony_create_action_item", "arguments": {"meeting_id": meeting, "text": "Call"}}),
    ]
    for method, params in calls:
        _, frames = await exchange(live_server, key, method, params, capabilities=ELICITATION)
        answer = only_the_answer(frames)
        assert "result" in answer, (method, params, answer)


async def test_a_client_without_elicitation_is_told_to_get_approval_elsewhere_and_cannot_answer_anyway(
    live_server, demo_keys, companion
):
    key = demo_keys.keys[ALICE]
    call = {
        "name": "harmony_create_action_item",
        "arguments": {"meeting_id": await alices_meeting(companion), "text": "X"},
    }
    status, frames = await exchange(live_server, key, "tools/call", call, capabilities={})
    # Confirming does not need the capability, so it is no -32021: the call says where a person approves it.
    pending = only_the_answer(frames)["result"]
    assert status == 200 and pending["resultType"] == "complete"
    assert pending["structuredContent"]["status"] == "approval_required"

    forged = {"approval": {"action": "accept", "content": {"decision": "approve", "remember": "no"}}}
    status, frames = await exchange(live_server, key, "tools/call", {**call, "inputResponses": forged}, capabilities={})
    retried = only_the_answer(frames)["result"]
    assert retried["structuredContent"]["status"] == "approval_required"
    assert retried["structuredContent"]["approval_id"] == pending["structuredContent"]["approval_id"]
    async with companion.db.session() as session:
        approval = await session.get(Approval, pending["structuredContent"]["approval_id"])
    assert approval is not None and approval.status == "pending"


async def test_reading_a_resource_that_does_not_exist_names_it(live_server, demo_keys):
    uri = "harmony://meetings/mtg_nobody"
    status, frames = await exchange(live_server, demo_keys.keys[ALICE], "resources/read", {"uri": uri}, capabilities={})
    error = only_the_answer(frames)["error"]
    assert (status, error["code"], error["data"]) == (400, types.INVALID_PARAMS, {"uri": uri})

    async with mcp_client(live_server, demo_keys.keys[ALICE], mode="legacy") as client:
        with pytest.raises(MCPError) as raised:
            await client.read_resource(uri)
    assert (raised.value.error.code, raised.value.error.data) == (types.INVALID_PARAMS, {"uri": uri})

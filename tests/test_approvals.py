"""Approvals end to end: the SDK's Client against a real server on 127.0.0.1, one test per promise.

Bob has a personal Memo connection (the tests' own app), so every adapter run
is counted in ``memo.CALLS``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import httpx2
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError
from sqlalchemy import select, update

from store.connections import add_connection
from store.directory import user_by_email, workspace_by_slug
from store.keys import create_key
from store.models import ActionItem, Approval, AuditEntry, ConnectionScope, KeyKind, Meeting, RuleRow, utcnow
from tests.apps import memo
from tests.conftest import mcp_client

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]


@pytest.fixture
async def bob(companion, demo_keys):
    """Bob's agent keys (one he marked person-facing, used by the in-chat tests, and a plain one), his user key,
    and his Memo connection."""
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        user = await user_by_email(session, "bob@acme.test")
        await add_connection(
            session,
            companion.box,
            app="memo",
            scope=ConnectionScope.PERSONAL,
            workspace_id=None,
            user_id=user.id,
            label="Notes",
            credentials={"api_key": "memo-secret"},
        )
        agent = await create_key(
            session, workspace_id=workspace.id, user_id=user.id, name="desktop", person_facing=True
        )
        plain = await create_key(session, workspace_id=workspace.id, user_id=user.id, name="assistant")
        person = await create_key(session, workspace_id=workspace.id, user_id=user.id, kind=KeyKind.USER)
    memo.CALLS.clear()
    return {"agent": agent.token, "plain": plain.token, "user": person.token}


def answering(*replies):
    """An elicitation callback that gives these answers in turn and records what it was asked."""
    asked: list[types.ElicitRequestParams] = []

    async def callback(ctx, params):
        asked.append(params)
        return replies[min(len(asked), len(replies)) - 1]

    callback.asked = asked
    return callback


APPROVE = types.ElicitResult(action="accept", content={"decision": "approve", "remember": "no"})


def runs(name: str) -> int:
    return sum(1 for call in memo.CALLS if call[0] == name)


async def api(live_server, key, method, path, body=None):
    async with httpx2.AsyncClient(base_url=live_server, headers={"Authorization": f"Bearer {key}"}) as http:
        return await http.request(method, f"/api/v1{path}", json=body)


@pytest.mark.parametrize("mode", ERAS)
async def test_approving_in_the_chat_runs_the_call_once(live_server, bob, mode):
    callback = answering(APPROVE)
    async with mcp_client(live_server, bob["agent"], mode=mode, elicitation_callback=callback) as client:
        first = await client.call_tool("memo_add_note", {"text": "buy milk"})
        again = await client.call_tool("memo_add_note", {"text": "buy milk"})
    assert first.is_error is False and first.structured_content["text"] == "buy milk"
    assert again.structured_content == first.structured_content
    assert runs("add_note") == 1
    assert len(callback.asked) == 1
    prompt = callback.asked[0]
    assert isinstance(prompt, types.ElicitRequestFormParams)
    assert prompt.message.startswith("Memo wants to: Add a note\nThrough: Memo, connection “Notes” (personal)")
    assert "\n  text: buy milk\n" in prompt.message
    assert set(prompt.requested_schema["properties"]) == {"decision", "remember", "reason"}


@pytest.mark.parametrize("mode", ERAS)
async def test_denying_in_the_chat_runs_nothing_and_says_why(live_server, bob, companion, mode):
    deny = types.ElicitResult(action="accept", content={"decision": "deny", "reason": "not today"})
    async with mcp_client(live_server, bob["agent"], mode=mode, elicitation_callback=answering(deny)) as client:
        result = await client.call_tool("memo_add_note", {"text": "spam"})
    assert result.is_error is True
    assert result.content[0].text == "Denied in the assistant: not today. The call was not run."
    assert runs("add_note") == 0
    await companion.audit.flush()
    async with companion.db.session() as session:
        events = (await session.scalars(select(AuditEntry.event).order_by(AuditEntry.id))).all()
    assert "approval.denied" in events and "approval.executed" not in events


async def test_approval_outside_the_chat_releases_the_assistants_retry_once(live_server, bob):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "call Carol"})
        approval_id = waiting.structured_content["approval_id"]
        assert waiting.structured_content["status"] == "approval_required"
        assert runs("add_note") == 0
        approved = await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve", {})
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        ran = await client.call_tool("memo_add_note", {"text": "call Carol"})
        repeated = await client.call_tool("memo_add_note", {"text": "call Carol"})
    assert ran.structured_content["text"] == "call Carol"
    assert repeated.structured_content == ran.structured_content
    assert runs("add_note") == 1


async def test_an_agent_key_cannot_decide_or_manage_rules(live_server, bob):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "self-approve"})
    approval_id = waiting.structured_content["approval_id"]
    for method, path, body in [
        ("POST", f"/approvals/{approval_id}/approve", {}),
        ("POST", f"/approvals/{approval_id}/deny", {}),
        ("GET", "/approvals?status=pending", None),
        ("POST", "/rules", {"effect": "allow", "scope": "user", "tool": "memo_add_note"}),
    ]:
        response = await api(live_server, bob["agent"], method, path, body)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "forbidden"
    assert runs("add_note") == 0


async def test_changed_arguments_after_approval_need_a_new_approval(live_server, bob):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_share_note", {"to": ["ann@acme.test"], "text": "hi"})
        await api(live_server, bob["user"], "POST", f"/approvals/{waiting.structured_content['approval_id']}/approve")
        tampered = await client.call_tool("memo_share_note", {"to": ["eve@evil.test"], "text": "hi"})
    assert tampered.structured_content["status"] == "approval_required"
    assert tampered.structured_content["approval_id"] != waiting.structured_content["approval_id"]
    assert runs("share_note") == 0


async def test_twenty_concurrent_retries_of_an_approved_call_run_it_once(live_server, bob):
    arguments = {"text": "exactly once"}
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", arguments)
    await api(live_server, bob["user"], "POST", f"/approvals/{waiting.structured_content['approval_id']}/approve")

    async def retry():
        async with mcp_client(live_server, bob["agent"]) as client:
            return await client.call_tool("memo_add_note", arguments)

    results = await asyncio.gather(*(retry() for _ in range(20)))
    assert runs("add_note") == 1
    assert all(r.is_error is False for r in results)
    assert len({json.dumps(r.structured_content, sort_keys=True) for r in results}) == 1


async def test_an_expired_approval_cannot_run(live_server, bob, companion):
    arguments = {"text": "too late"}
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", arguments)
        approval_id = waiting.structured_content["approval_id"]
        await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve")
        async with companion.db.transaction() as session:
            await session.execute(
                update(Approval).where(Approval.id == approval_id).values(expires_at=utcnow() - timedelta(seconds=1))
            )
        retry = await client.call_tool("memo_add_note", arguments)
    assert retry.structured_content["status"] == "approval_required"
    assert retry.structured_content["approval_id"] != approval_id
    assert runs("add_note") == 0
    late = await api(live_server, bob["user"], "GET", f"/approvals/{approval_id}")
    assert late.json()["status"] == "expired"


async def test_a_domain_in_rule_auto_approves_internal_mail_and_asks_for_the_rest(live_server, bob):
    rule = {
        "effect": "allow",
        "scope": "user",
        "app": "memo",
        "tool": "memo_share_note",
        "conditions": [{"arg": "to", "op": "domain_in", "value": ["acme.test"]}],
        "description": "Share freely inside Acme",
    }
    created = await api(live_server, bob["user"], "POST", "/rules", rule)
    assert created.status_code == 201, created.text
    async with mcp_client(live_server, bob["agent"]) as client:
        inside = await client.call_tool("memo_share_note", {"to": ["ann@acme.test", "Bo@ACME.test"], "text": "x"})
        outside = await client.call_tool("memo_share_note", {"to": ["ann@acme.test", "bob@client.com"], "text": "x"})
    # What runs is the canonical form the rule decided on: the address in lower case.
    assert inside.structured_content == {"shared_with": ["ann@acme.test", "bo@acme.test"]}
    assert outside.structured_content["status"] == "approval_required"
    assert runs("share_note") == 1


@pytest.mark.parametrize("mode", ERAS)
async def test_remember_creates_a_rule_that_approves_calls_like_this_one(live_server, bob, mode):
    remember = types.ElicitResult(action="accept", content={"decision": "approve", "remember": "1h"})
    callback = answering(remember, APPROVE)
    assert (await api(live_server, bob["user"], "GET", "/rules")).json()["data"] == []
    async with mcp_client(live_server, bob["agent"], mode=mode, elicitation_callback=callback) as client:
        await client.call_tool("memo_share_note", {"to": ["ann@acme.test"], "text": "one"})
        second = await client.call_tool("memo_share_note", {"to": ["zed@acme.test"], "text": "two"})
        third = await client.call_tool("memo_share_note", {"to": ["zed@client.com"], "text": "three"})
    assert len(callback.asked) == 2  # the second call was covered by the remembered rule
    assert second.structured_content == {"shared_with": ["zed@acme.test"]}
    assert third.structured_content == {"shared_with": ["zed@client.com"]}
    [rule] = (await api(live_server, bob["user"], "GET", "/rules")).json()["data"]
    assert rule["scope"] == "user" and rule["tool"] == "memo_share_note"
    assert rule["conditions"] == [
        {"arg": "to", "op": "domain_in", "value": ["acme.test"]},
        {"arg": "cc", "op": "exists", "value": False},
        {"arg": "bcc", "op": "exists", "value": False},
    ]
    assert rule["context"]["connection_ids"]
    assert rule["expires_at"] is not None


@pytest.mark.parametrize("mode", ERAS)
async def test_an_out_of_band_rule_sends_the_person_to_the_page_not_a_chat_form(live_server, bob, demo_keys, mode):
    admin_user_key = demo_keys.user_keys["admin@acme.test"]
    rule = {
        "effect": "ask",
        "scope": "workspace",
        "app": "memo",
        "tool": "memo_share_note",
        "require_out_of_band": True,
        "description": "Sharing notes is approved on the web",
    }
    assert (await api(live_server, admin_user_key, "POST", "/rules", rule)).status_code == 201
    opened = types.ElicitResult(action="accept")
    callback = answering(opened)
    arguments = {"to": ["ann@acme.test"], "text": "secret plan"}
    async with mcp_client(live_server, bob["agent"], mode=mode, elicitation_callback=callback) as client:
        waiting = await client.call_tool("memo_share_note", arguments)
        approval_id = waiting.structured_content["approval_id"]
        assert waiting.structured_content["out_of_band"] is True
        assert [type(p).__name__ for p in callback.asked] == ["ElicitRequestURLParams"]
        assert callback.asked[0].url == f"{live_server}/approvals/{approval_id}"
        await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve")
        ran = await client.call_tool("memo_share_note", arguments)
    assert ran.structured_content == {"shared_with": ["ann@acme.test"]}
    assert runs("share_note") == 1


async def test_on_2026_a_tampered_or_stale_confirmation_is_rejected(live_server, bob):
    arguments = {"text": "state check"}
    async with mcp_client(live_server, bob["agent"], mode="2026-07-28", elicitation_callback=answering(APPROVE)) as c:
        first = await c.session.call_tool("memo_add_note", arguments, allow_input_required=True)
        assert isinstance(first, types.InputRequiredResult)
        reply = {"approval": APPROVE}
        with pytest.raises(MCPError):
            await c.session.call_tool(
                "memo_add_note",
                arguments,
                input_responses=reply,
                request_state=first.request_state[:-4] + "AAAA",
                allow_input_required=True,
            )
        second = await c.session.call_tool("memo_add_note", arguments, allow_input_required=True)
        stale = await c.session.call_tool(
            "memo_add_note",
            arguments,
            input_responses=reply,
            request_state=first.request_state,
            allow_input_required=True,
        )
        assert stale.is_error and "Confirmation rejected" in stale.content[0].text
        assert runs("add_note") == 0
        done = await c.session.call_tool(
            "memo_add_note",
            arguments,
            input_responses=reply,
            request_state=second.request_state,
            allow_input_required=True,
        )
        replayed = await c.session.call_tool(
            "memo_add_note",
            arguments,
            input_responses=reply,
            request_state=second.request_state,
            allow_input_required=True,
        )
    assert done.structured_content["text"] == "state check"
    assert replayed.structured_content == done.structured_content
    assert runs("add_note") == 1


async def test_companion_get_approval_reports_and_then_runs_the_approved_call(live_server, bob):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "via the approval tool"})
        approval_id = waiting.structured_content["approval_id"]
        pending = await client.call_tool("companion_get_approval", {"approval_id": approval_id})
        await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve")
        ran = await client.call_tool("companion_get_approval", {"approval_id": approval_id})
        again = await client.call_tool("memo_add_note", {"text": "via the approval tool"})
    assert pending.structured_content["status"] == "pending" and pending.structured_content["result"] is None
    assert ran.structured_content["status"] == "succeeded"
    assert ran.structured_content["result"]["text"] == "via the approval tool"
    assert again.structured_content == ran.structured_content["result"]
    assert runs("add_note") == 1


async def test_a_cap_turns_auto_approval_back_into_asking(live_server, bob):
    rule = {"effect": "allow", "scope": "user", "tool": "memo_add_note", "cap": {"max": 2, "per_seconds": 3600}}
    assert (await api(live_server, bob["user"], "POST", "/rules", rule)).status_code == 201
    async with mcp_client(live_server, bob["agent"]) as client:
        results = [await client.call_tool("memo_add_note", {"text": f"note {i}"}) for i in range(3)]
    assert [r.structured_content.get("status") for r in results] == [None, None, "approval_required"]
    assert "auto-approvals per 1:00:00, and they are used up" in " ".join(results[2].structured_content["reasons"])
    assert runs("add_note") == 2


async def test_a_harmony_write_runs_after_approval_and_its_row_appears(live_server, demo_keys, companion):
    async with companion.db.session() as session:
        meeting = await session.scalar(select(Meeting.id).where(Meeting.status == "processed").limit(1))
    arguments = {"meeting_id": meeting, "text": "Send the DPA"}
    async with mcp_client(live_server, demo_keys.keys["alice@acme.test"], mode="legacy") as client:
        waiting = await client.call_tool("harmony_create_action_item", arguments)
        user_key = demo_keys.user_keys["alice@acme.test"]
        approval_id = waiting.structured_content["approval_id"]
        listed = await api(live_server, user_key, "GET", "/approvals?status=pending")
        assert [a["id"] for a in listed.json()["data"]] == [approval_id]
        headline = listed.json()["data"][0]["summary"].splitlines()[0]
        assert headline == f"Add the action item “Send the DPA” to meeting {meeting}"
        await api(live_server, user_key, "POST", f"/approvals/{approval_id}/approve")
        done = await client.call_tool("harmony_create_action_item", arguments)
    async with companion.db.session() as session:
        rows = (await session.scalars(select(ActionItem).where(ActionItem.text == "Send the DPA"))).all()
    assert [row.id for row in rows] == [done.structured_content["id"]]


async def test_another_member_cannot_see_or_decide_my_approval(live_server, bob, demo_keys):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "mine"})
    approval_id = waiting.structured_content["approval_id"]
    alice = demo_keys.user_keys["alice@acme.test"]
    assert (await api(live_server, alice, "GET", f"/approvals/{approval_id}")).status_code == 404
    refused = await api(live_server, alice, "POST", f"/approvals/{approval_id}/approve")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    admin = demo_keys.user_keys["admin@acme.test"]
    forbidden = await api(live_server, admin, "POST", f"/approvals/{approval_id}/approve")
    assert forbidden.status_code == 403


async def test_deciding_twice_is_a_conflict(live_server, bob):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "twice"})
    approval_id = waiting.structured_content["approval_id"]
    assert (await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/deny", {"reason": "no"})).is_success
    again = await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve")
    assert again.status_code == 409
    assert again.json()["error"] == {
        "code": "conflict",
        "message": f"Approval {approval_id} is already denied",
        "details": {},
    }


async def test_the_rule_row_keeps_the_api_field_names(companion, live_server, bob):
    rule = {
        "effect": "allow",
        "scope": "user",
        "app": "memo",
        "tool": "memo_share_note",
        "risk": "send",
        "conditions": [{"arg": "to", "op": "domain_in", "value": ["acme.test"]}],
        "context": {"hours": {"from": "09:00", "to": "17:00"}},
        "cap": {"max": 20, "per_seconds": 3600},
        "mode": "shadow",
        "description": "trial",
    }
    created = (await api(live_server, bob["user"], "POST", "/rules", rule)).json()
    async with companion.db.session() as session:
        stored = await session.get(RuleRow, created["id"])
    assert stored.definition["context"]["hours"] == {"from": "09:00:00", "to": "17:00:00"}
    for name in (
        "id",
        "effect",
        "scope",
        "app",
        "tool",
        "risk",
        "conditions",
        "context",
        "cap",
        "expires_at",
        "mode",
        "locked",
        "require_out_of_band",
        "description",
    ):
        assert name in created


async def test_the_person_who_asked_can_withdraw_a_pending_request(live_server, bob):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "never mind"})
        approval_id = waiting.structured_content["approval_id"]
        cancelled = await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        again = await client.call_tool("memo_add_note", {"text": "never mind"})
    assert again.structured_content["status"] == "approval_required"
    assert again.structured_content["approval_id"] != approval_id
    assert (await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve")).status_code == 409
    assert runs("add_note") == 0

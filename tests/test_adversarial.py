"""The assistant as the adversary: what an agent key can do, and what it must not be able to do.

Each section is one class of the attacks SECURITY.md names, played against a
real server on 127.0.0.1 with the SDK's own client, on both protocol eras
where the era matters. The agent holds only its key; it controls its MCP
client, its elicitation answers and its retries. A person acts only with
their own user key or console session.

Bob has two personal Memo connections ("Notes" and "Work"; the second's tools
carry the suffix ``__work``). Every adapter run is logged with the approval it
ran under in ``memo.RUNS``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx2
import mcp_types as types
import pytest
from sqlalchemy import select, update

from approvals.rules import Rule, RuleError
from server.services.confirmation import Answer, Channel
from store.connections import add_connection
from store.directory import user_by_email, workspace_by_slug
from store.keys import authenticate, create_key
from store.models import (
    Approval,
    ApprovalStatus,
    AuditEntry,
    ConnectionScope,
    KeyKind,
    Plan,
    RuleRow,
    Workspace,
    utcnow,
)
from tests.apps import memo
from tests.conftest import mcp_client

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]
APPROVE = types.ElicitResult(action="accept", content={"decision": "approve", "remember": "no"})
APPROVE_FOR_30_DAYS = types.ElicitResult(action="accept", content={"decision": "approve", "remember": "30d"})
CANCEL = types.ElicitResult(action="cancel")


@pytest.fixture
async def bob(companion, demo_keys):
    """Bob's keys: two plain agent keys, one he marked person-facing, a user key; and the admin's user key."""
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        user = await user_by_email(session, "bob@acme.test")
        for label in ("Notes", "Work"):
            await add_connection(
                session,
                companion.box,
                app="memo",
                scope=ConnectionScope.PERSONAL,
                workspace_id=None,
                user_id=user.id,
                label=label,
                credentials={"api_key": "memo-secret"},
            )

        async def key(name: str, **options: Any) -> str:
            issued = await create_key(session, workspace_id=workspace.id, user_id=user.id, name=name, **options)
            return issued.token

        keys = {
            "agent": await key("assistant"),
            "other_agent": await key("second assistant"),
            "desktop": await key("desktop", person_facing=True),
            "user": await key("bob", kind=KeyKind.USER),
            "admin": demo_keys.user_keys["admin@acme.test"],
            "workspace_id": workspace.id,
        }
    memo.CALLS.clear()
    memo.RUNS.clear()
    return keys


def answering(*replies: types.ElicitResult, before: Any = None):
    """An elicitation callback that gives these answers in turn (after ``before()``, if given) and records prompts."""
    asked: list[types.ElicitRequestParams] = []

    async def callback(ctx, params):
        asked.append(params)
        if before is not None:
            await before(params)
        return replies[min(len(asked), len(replies)) - 1]

    callback.asked = asked
    return callback


async def api(live_server: str, key: str, method: str, path: str, body: Any = None) -> httpx2.Response:
    async with httpx2.AsyncClient(base_url=live_server, headers={"Authorization": f"Bearer {key}"}) as http:
        return await http.request(method, f"/api/v1{path}", json=body)


async def approvals(companion) -> list[Approval]:
    async with companion.db.session() as session:
        return list(await session.scalars(select(Approval).order_by(Approval.created_at)))


async def rules(companion) -> list[RuleRow]:
    async with companion.db.session() as session:
        return list(await session.scalars(select(RuleRow)))


async def audited(companion, where: Any, *, count: int) -> list[AuditEntry]:
    """The audit rows matching ``where`` once ``count`` of them are written (the live server's writer chains them
    in the background), or what there is after a few seconds."""
    deadline = time.monotonic() + 5
    while True:
        await companion.audit.flush()
        async with companion.db.session() as session:
            rows = list((await session.scalars(select(AuditEntry).where(where).order_by(AuditEntry.id))).all())
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


def forms(callback) -> list[types.ElicitRequestFormParams]:
    return [p for p in callback.asked if isinstance(p, types.ElicitRequestFormParams)]


# 1. The agent approves itself ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_an_agent_answering_its_own_form_approves_nothing(live_server, bob, companion, mode):
    callback = answering(APPROVE_FOR_30_DAYS)
    async with mcp_client(live_server, bob["agent"], mode=mode, elicitation_callback=callback) as client:
        result = await client.call_tool("memo_add_note", {"text": "wire the money"})
    assert result.structured_content["status"] == "approval_required"
    assert forms(callback) == [], "a key nobody marked person-facing is never shown the approval form"
    (page,) = callback.asked
    assert isinstance(page, types.ElicitRequestURLParams) and page.url.endswith(
        "/approvals/" + result.structured_content["approval_id"]
    )
    assert memo.RUNS == []
    assert [a.status for a in await approvals(companion)] == [ApprovalStatus.PENDING]
    assert await rules(companion) == []


async def test_a_forged_form_answer_through_a_plain_key_decides_nothing(bob, companion):
    """A hostile client sends a form answer, with the nonce of a real prompt, on a key that is not person-facing."""
    async with companion.db.session() as session:
        agent = await authenticate(session, bob["agent"], touch_after=timedelta(hours=1))
    first = await companion.gateway.call(agent, "memo_add_note", {"text": "x"}, Channel(url=True))
    approval_id = first.prompt.approval_id if first.prompt else first.data["approval_id"]
    nonce = first.prompt.nonce if first.prompt else ""
    for action, decision in [("accept", "approve"), ("decline", None)]:
        forged = Answer(approval_id, nonce, "form", action, decision=decision, remember="30d")  # type: ignore[arg-type]
        result = await companion.gateway.call(agent, "memo_add_note", {"text": "x"}, Channel(form=True, answer=forged))
        assert result.data is not None and result.data["status"] == "approval_required"
    assert memo.RUNS == [] and await rules(companion) == []
    assert [a.status for a in await approvals(companion)] == [ApprovalStatus.PENDING]


async def test_an_agent_key_cannot_make_itself_or_another_key_person_facing(live_server, bob):
    keys = (await api(live_server, bob["user"], "GET", "/keys")).json()["data"]
    agent_id = next(k["id"] for k in keys if k["name"] == "assistant")
    assert (
        await api(live_server, bob["agent"], "PATCH", f"/keys/{agent_id}", {"person_facing": True})
    ).status_code == 403
    made = await api(live_server, bob["agent"], "POST", "/keys", {"name": "sneaky", "person_facing": True})
    assert made.status_code == 403
    policy = {"person_facing_keys": True, "in_chat_max_risk": "delete"}
    assert (await api(live_server, bob["agent"], "PATCH", "/workspace/in-chat-policy", policy)).status_code == 403
    assert (await api(live_server, bob["user"], "PATCH", "/workspace/in-chat-policy", policy)).status_code == 403
    changed = await api(live_server, bob["user"], "PATCH", f"/keys/{agent_id}", {"person_facing": True})
    assert changed.status_code == 200 and changed.json()["person_facing"] is True


@pytest.mark.parametrize("mode", ERAS)
async def test_a_workspace_that_forbids_person_facing_keys_takes_no_answer_from_the_chat(
    live_server, bob, companion, mode
):
    policy = {"person_facing_keys": False, "in_chat_max_risk": "delete"}
    assert (await api(live_server, bob["admin"], "PATCH", "/workspace/in-chat-policy", policy)).status_code == 200
    callback = answering(APPROVE)
    async with mcp_client(live_server, bob["desktop"], mode=mode, elicitation_callback=callback) as client:
        result = await client.call_tool("memo_add_note", {"text": "x"})
    assert result.structured_content["status"] == "approval_required" and forms(callback) == []
    assert memo.RUNS == []
    keys = (await api(live_server, bob["user"], "GET", "/keys")).json()["data"]
    agent_id = next(k["id"] for k in keys if k["name"] == "assistant")
    refused = await api(live_server, bob["user"], "PATCH", f"/keys/{agent_id}", {"person_facing": True})
    assert refused.status_code == 422 and "person_facing" in refused.json()["error"]["details"]["fields"]


@pytest.mark.parametrize("mode", ERAS)
async def test_in_chat_answers_approve_only_up_to_the_workspaces_risk(live_server, bob, companion, mode):
    policy = {"person_facing_keys": True, "in_chat_max_risk": "write"}
    assert (await api(live_server, bob["admin"], "PATCH", "/workspace/in-chat-policy", policy)).status_code == 200
    callback = answering(APPROVE)
    async with mcp_client(live_server, bob["desktop"], mode=mode, elicitation_callback=callback) as client:
        written = await client.call_tool("memo_add_note", {"text": "x"})
        sent = await client.call_tool("memo_share_note", {"to": ["ann@acme.test"], "text": "x"})
    assert written.structured_content == {"id": 1, "text": "x"}
    assert sent.structured_content["status"] == "approval_required"
    assert len(forms(callback)) == 1 and len(memo.RUNS) == 1


@pytest.mark.parametrize("mode", ERAS)
async def test_remembering_in_the_chat_lasts_an_hour_at_most(live_server, bob, companion, mode):
    callback = answering(APPROVE_FOR_30_DAYS)
    async with mcp_client(live_server, bob["desktop"], mode=mode, elicitation_callback=callback) as client:
        await client.call_tool("memo_add_note", {"text": "x"})
    (rule,) = await rules(companion)
    expires = rule.definition["expires_at"]
    assert expires is not None
    remaining = (utcnow().fromisoformat(expires) - utcnow()).total_seconds()
    assert 3000 < remaining <= 3600
    (form,) = forms(callback)
    assert form.requested_schema["properties"]["remember"]["enum"] == ["no", "1h"]
    assert (
        "Remembering approves later Add a note calls" in form.requested_schema["properties"]["remember"]["description"]
    )


# 2. An approval runs once, whatever path reaches it ----------------------------------------------------------------


async def test_approving_with_remember_then_retrying_and_asking_for_the_approval_runs_once(live_server, bob, companion):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "pay invoice 7"})
        approval_id = waiting.structured_content["approval_id"]
        approved = await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve", {"remember": "1h"})
        assert approved.status_code == 200, approved.text
        ran = await client.call_tool("memo_add_note", {"text": "pay invoice 7"})
        fetched = await client.call_tool("companion_get_approval", {"approval_id": approval_id})
        again = await client.call_tool("memo_add_note", {"text": "pay invoice 7"})
    assert [approval_id] == memo.RUNS
    assert ran.structured_content == again.structured_content == fetched.structured_content["result"]
    assert fetched.structured_content["status"] == "succeeded"


async def test_asking_for_the_approval_first_then_retrying_under_the_remembered_rule_runs_once(live_server, bob):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "pay invoice 8"})
        approval_id = waiting.structured_content["approval_id"]
        await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve", {"remember": "30d"})
        fetched = await client.call_tool("companion_get_approval", {"approval_id": approval_id})
        ran = await client.call_tool("memo_add_note", {"text": "pay invoice 8"})
    assert [approval_id] == memo.RUNS
    assert ran.structured_content == fetched.structured_content["result"]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_repeat_allowed_by_the_rule_remember_made_in_the_chat_returns_the_stored_result(
    live_server, bob, companion, mode
):
    callback = answering(APPROVE_FOR_30_DAYS)
    async with mcp_client(live_server, bob["desktop"], mode=mode, elicitation_callback=callback) as client:
        first = await client.call_tool("memo_add_note", {"text": "once"})
        second = await client.call_tool("memo_add_note", {"text": "once"})
    (approval,) = await approvals(companion)
    assert approval.remember_rule_id is not None
    assert second.structured_content == first.structured_content
    assert [approval.id] == memo.RUNS


async def test_a_rule_added_while_a_call_waits_runs_it_through_its_approval_once(live_server, bob, companion):
    rule = {"effect": "allow", "scope": "user", "app": "memo", "tool": "memo_add_note"}
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "later"})
        approval_id = waiting.structured_content["approval_id"]
        assert (await api(live_server, bob["user"], "POST", "/rules", rule)).status_code == 201
        ran = await client.call_tool("memo_add_note", {"text": "later"})
        fetched = await client.call_tool("companion_get_approval", {"approval_id": approval_id})
    assert [approval_id] == memo.RUNS
    assert fetched.structured_content["result"] == ran.structured_content
    decided = await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve", {})
    assert decided.status_code == 409, "a person cannot approve again what already ran"
    (approval,) = await approvals(companion)
    assert approval.decided_via == "rule" and approval.decided_by is None


async def test_a_denial_stands_for_its_repeats_even_once_a_rule_allows_the_call(live_server, bob):
    rule = {"effect": "allow", "scope": "user", "app": "memo", "tool": "memo_add_note"}
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "no"})
        approval_id = waiting.structured_content["approval_id"]
        await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/deny", {"reason": "not this"})
        await api(live_server, bob["user"], "POST", "/rules", rule)
        again = await client.call_tool("memo_add_note", {"text": "no"})
    assert again.is_error and "not this" in again.content[0].text
    assert memo.RUNS == []


# 6. "Remember" is exactly as wide as what was approved -----------------------------------------------------------


async def test_remembering_is_bound_to_the_connection_the_call_used(live_server, bob):
    call = {"to": ["ann@acme.test"], "text": "hello"}
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_share_note", call)
        await api(
            live_server, bob["user"], "POST", f"/approvals/{waiting.structured_content['approval_id']}/approve",
            {"remember": "30d"},
        )  # fmt: skip
        same_connection = await client.call_tool("memo_share_note", {**call, "text": "hello again"})
        other_connection = await client.call_tool("memo_share_note__work", {**call, "text": "hello again"})
    assert same_connection.structured_content == {"shared_with": ["ann@acme.test"]}
    assert other_connection.structured_content["status"] == "approval_required"


async def test_remembering_a_call_with_no_copies_never_approves_one_with_copies(live_server, bob, companion):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_share_note", {"to": ["ann@acme.test"], "cc": [], "text": "a"})
        approval_id = waiting.structured_content["approval_id"]
        approved = await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve", {"remember": "1h"})
        assert approved.status_code == 200, approved.text
        assert "cc empty" in approved.json()["remember_scope"]
        inside = await client.call_tool("memo_share_note", {"to": ["bo@acme.test"], "cc": [], "text": "b"})
        copied = await client.call_tool(
            "memo_share_note", {"to": ["bo@acme.test"], "cc": [], "bcc": ["drop@evil.example"], "text": "b"}
        )
    assert inside.structured_content == {"shared_with": ["bo@acme.test"]}
    assert copied.structured_content["status"] == "approval_required"


async def test_remembering_mail_to_an_international_domain_works(live_server, bob, companion):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_share_note", {"to": ["ann@bücher.example"], "text": "a"})
        approval_id = waiting.structured_content["approval_id"]
        approved = await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve", {"remember": "1h"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["arguments"]["to"] == ["ann@xn--bcher-kva.example"]
    (rule,) = await rules(companion)
    assert {"arg": "to", "op": "domain_in", "value": ["xn--bcher-kva.example"]} in rule.definition["conditions"]


async def test_a_remember_that_cannot_be_saved_leaves_the_approval_undecided(live_server, bob, companion, monkeypatch):
    from approvals.rules import RuleError

    def refuse(rule, **_):
        raise RuleError({"conditions[0].value": "cannot be kept"})

    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "a"})
    approval_id = waiting.structured_content["approval_id"]
    live_rulebooks = [companion.gateway.flow.rulebook]
    monkeypatch.setattr(type(live_rulebooks[0]), "check", lambda self, rule, **kw: refuse(rule))
    refused = await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve", {"remember": "1h"})
    assert refused.status_code == 422
    assert [a.status for a in await approvals(companion)] == [ApprovalStatus.PENDING]
    assert await rules(companion) == []


# 7. Someone else's rules never open a person's own accounts ---------------------------------------------------------


async def test_a_workspace_allow_rule_does_not_auto_approve_a_personal_connection(live_server, bob):
    rule = {"effect": "allow", "scope": "workspace", "app": "memo", "tool": "memo_*"}
    assert (await api(live_server, bob["admin"], "POST", "/rules", rule)).status_code == 201
    async with mcp_client(live_server, bob["agent"]) as client:
        sent = await client.call_tool("memo_share_note", {"to": ["ann@evil.example"], "text": "secrets"})
    assert sent.structured_content["status"] == "approval_required"
    assert memo.RUNS == []


async def test_a_workspace_deny_rule_still_binds_a_personal_connection(live_server, bob):
    rule = {"effect": "deny", "scope": "workspace", "app": "memo", "tool": "memo_share_note"}
    assert (await api(live_server, bob["admin"], "POST", "/rules", rule)).status_code == 201
    own = {"effect": "allow", "scope": "user", "app": "memo", "tool": "memo_share_note"}
    assert (await api(live_server, bob["user"], "POST", "/rules", own)).status_code == 201
    async with mcp_client(live_server, bob["agent"]) as client:
        sent = await client.call_tool("memo_share_note", {"to": ["ann@acme.test"], "text": "x"})
    assert sent.is_error and "not allowed" in sent.content[0].text


# 8. Edges ---------------------------------------------------------------------------------------------------------


async def test_an_approval_answers_only_to_the_key_that_asked(live_server, bob):
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_add_note", {"text": "mine"})
    approval_id = waiting.structured_content["approval_id"]
    await api(live_server, bob["user"], "POST", f"/approvals/{approval_id}/approve", {})
    async with mcp_client(live_server, bob["other_agent"]) as other:
        fetched = await other.call_tool("companion_get_approval", {"approval_id": approval_id})
    assert fetched.is_error and "No approval" in fetched.content[0].text
    assert memo.RUNS == []


@pytest.mark.settings(max_pending_approvals_per_key=3)
async def test_one_key_cannot_bury_a_person_in_pending_approvals(live_server, bob, companion):
    async with mcp_client(live_server, bob["agent"]) as client:
        answers = [await client.call_tool("memo_add_note", {"text": f"spam {n}"}) for n in range(5)]
    assert [a.structured_content["status"] for a in answers[:3]] == ["approval_required"] * 3
    assert all(a.is_error and "3 approvals waiting" in a.content[0].text for a in answers[3:])
    assert len(await approvals(companion)) == 3
    async with mcp_client(live_server, bob["other_agent"]) as other:
        assert (await other.call_tool("memo_add_note", {"text": "real"})).structured_content["approval_id"]
    refused = await audited(companion, AuditEntry.error == "too_many_pending", count=2)
    assert len(refused) == 2 and all(row.outcome == "refused" for row in refused)


async def test_tool_calls_count_against_the_keys_rate_like_rest_calls(live_server, bob, companion):
    async with companion.db.transaction() as session:
        await session.execute(
            update(Workspace).where(Workspace.id == bob["workspace_id"]).values(
                plan=Plan.ENTERPRISE, rate_limit_per_minute=4
            )
        )  # fmt: skip
    assert (await api(live_server, bob["agent"], "GET", "/meetings")).status_code == 200
    async with mcp_client(live_server, bob["agent"]) as client:
        answers = [await client.call_tool("memo_list_notes", {"folder": "inbox"}) for _ in range(4)]
    assert [a.is_error for a in answers] == [False, False, False, True]
    assert "4 requests a minute" in answers[-1].content[0].text
    assert (await api(live_server, bob["agent"], "GET", "/meetings")).status_code == 429


async def test_invalid_unicode_is_an_invalid_argument_and_is_audited(bob, companion):
    async with companion.db.session() as session:
        agent = await authenticate(session, bob["agent"], touch_after=timedelta(hours=1))
    for arguments in ({"text": "\ud800"}, {"text": "ok", "extra": "\udfff"}):
        result = await companion.gateway.call(agent, "memo_add_note", arguments)
        assert not result.ok and result.error_code == "invalid_arguments"
    thousands = {"to": ["(" * 3000 + "a@acme.test"], "text": "x"}
    result = await companion.gateway.call(agent, "memo_share_note", thousands)
    assert not result.ok and result.error_code == "invalid_arguments" and "to" in result.message
    await companion.audit.flush()
    async with companion.db.session() as session:
        rows = (await session.scalars(select(AuditEntry).where(AuditEntry.outcome == "invalid"))).all()
    assert len(rows) == 3
    assert memo.RUNS == []


# 9. A decision made anywhere releases the prompt in the chat at once ---------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_approving_in_the_inbox_releases_an_open_prompt_in_the_chat(live_server, bob, companion, mode):
    async def approve_elsewhere(params):
        (approval,) = await approvals(companion)
        decided = await api(live_server, bob["user"], "POST", f"/approvals/{approval.id}/approve", {})
        assert decided.status_code == 200
        if mode == "legacy":
            await asyncio.sleep(20)  # the person never answers the prompt in the chat

    callback = answering(CANCEL, before=approve_elsewhere)
    started = time.monotonic()
    async with mcp_client(live_server, bob["desktop"], mode=mode, elicitation_callback=callback) as client:
        result = await client.call_tool("memo_add_note", {"text": "decided elsewhere"})
        took = time.monotonic() - started
    assert result.structured_content == {"id": 1, "text": "decided elsewhere"}
    assert took < 10
    assert len(memo.RUNS) == 1


@pytest.mark.parametrize("mode", ERAS)
async def test_denying_on_the_page_releases_an_open_url_prompt_with_the_denial(live_server, bob, companion, mode):
    async def deny_elsewhere(params):
        (approval,) = await approvals(companion)
        await api(live_server, bob["user"], "POST", f"/approvals/{approval.id}/deny", {"reason": "no thanks"})
        if mode == "legacy":
            await asyncio.sleep(20)

    callback = answering(CANCEL, before=deny_elsewhere)
    async with mcp_client(live_server, bob["agent"], mode=mode, elicitation_callback=callback) as client:
        result = await client.call_tool("memo_add_note", {"text": "x"})
    assert [type(p) for p in callback.asked] == [types.ElicitRequestURLParams]
    assert result.is_error and "no thanks" in result.content[0].text
    assert memo.RUNS == []


async def test_remembering_a_record_update_keeps_the_record_and_the_fields_it_changes(companion):
    tool = companion.registry.tools["salesforce_update_record"]
    arguments = {"object": "Contact", "id": "003000000000001AAA", "fields": {"Title": "CTO", "Phone": "1"}}
    approval = Approval(id="apr_x", connection_id="con_x", sender="the workspace's Salesforce connection")
    rule = companion.gateway.flow.remembered_rule(approval, tool, arguments, timedelta(hours=1))
    conditions = [c.model_dump() for c in rule.conditions]
    assert conditions == [
        {"arg": "object", "op": "eq", "value": "contact"},
        {"arg": "id", "op": "eq", "value": "003000000000001AAA"},
        {"arg": "fields", "op": "keys_in", "value": ["Phone", "Title"]},
    ]
    assert rule.context.connection_ids == ["con_x"]
    assert "fields changing only Phone, Title" in rule.description


# 5. No rule stalls the server ------------------------------------------------------------------------------------


async def test_a_backtracking_pattern_never_holds_the_server(live_server, bob):
    rule = {
        "effect": "deny", "scope": "user", "app": "memo", "tool": "memo_add_note",
        "conditions": [{"arg": "text", "op": "matches", "value": "(a+)+b"}],
    }  # fmt: skip
    assert (await api(live_server, bob["user"], "POST", "/rules", rule)).status_code == 201
    async with (
        mcp_client(live_server, bob["agent"]) as client,
        httpx2.AsyncClient(base_url=live_server, timeout=5) as http,
    ):
        started = time.monotonic()
        calls = [client.call_tool("memo_add_note", {"text": "a" * n}) for n in (27, 5_000, 50_000)]
        answers, health = await asyncio.gather(asyncio.gather(*calls), http.get("/healthz"))
        took = time.monotonic() - started
    assert health.status_code == 200
    assert [a.structured_content["status"] for a in answers[:2]] == ["approval_required"] * 2
    # Too long to test: the deny rule applies, as a rule that cannot decide safely must.
    assert answers[2].is_error and "not allowed" in answers[2].content[0].text
    assert took < 5


async def test_a_stored_rule_that_no_longer_validates_fails_safe(companion, demo_keys):
    """A rule saved before patterns ran on RE2 (a lookahead) loads: a deny applies without its condition."""
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        for effect in ("deny", "allow"):
            session.add(
                RuleRow(
                    workspace_id=workspace.id, scope="workspace", user_id=None, created_by=None,
                    definition={"effect": effect, "tool": "harmony_create_action_item",
                                "conditions": [{"arg": "text", "op": "matches", "value": "(?=x)x"}]},
                )
            )  # fmt: skip
    index = await companion.rulebook.index_for(workspace.id)
    assert index.size == 2
    async with companion.db.session() as session:
        loaded = await companion.rulebook.rules_of(session, workspace.id)
    assert {(r.effect.value, r.mode, len(r.conditions)) for r in loaded} == {
        ("deny", "enforce", 0),
        ("allow", "shadow", 0),
    }


# 4. Rules decide on what will run ----------------------------------------------------------------------------------


async def test_rule_values_are_kept_in_the_form_calls_are_decided_on(live_server, bob, companion):
    allow = {"effect": "allow", "scope": "user", "app": "memo", "tool": "memo_share_note"}
    deny = {
        "effect": "deny", "scope": "user", "app": "memo", "tool": "memo_share_note",
        "conditions": [{"arg": "@recipients", "op": "in", "value": ["CEO@Acme.test", "ann@bücher.example"]}],
    }  # fmt: skip
    for rule in (allow, deny):
        assert (await api(live_server, bob["user"], "POST", "/rules", rule)).status_code == 201
    saved = (await api(live_server, bob["user"], "GET", "/rules")).json()["data"]
    assert ["ceo@acme.test", "ann@xn--bcher-kva.example"] in [c["value"] for r in saved for c in r["conditions"]]
    async with mcp_client(live_server, bob["agent"]) as client:
        shouted = await client.call_tool(
            "memo_share_note", {"to": ["ok@acme.test"], "bcc": ["ceo@ACME.TEST"], "text": "x"}
        )
        idn = await client.call_tool("memo_share_note", {"to": ["Ann@Bücher.example"], "text": "x"})
        fine = await client.call_tool("memo_share_note", {"to": ["ok@acme.test"], "text": "x"})
    assert shouted.is_error and idn.is_error
    assert fine.structured_content == {"shared_with": ["ok@acme.test"]}
    slack = Rule(
        effect="deny", scope="workspace", app="slack", tool="slack_post_message",
        conditions=[{"arg": "channel", "op": "in", "value": ["#Leadership", "D0DIRECT01"]}],
    )  # fmt: skip
    assert companion.rulebook.prepared(slack).conditions[0].value == ["leadership", "D0DIRECT01"]
    # Calls name channels by name once Slack resolved their ids: a rule on an id would never match, so it is refused.
    by_id = Rule(
        effect="deny", scope="workspace", app="slack", tool="slack_post_message",
        conditions=[{"arg": "channel", "op": "eq", "value": "C0LEADERS1"}],
    )  # fmt: skip
    with pytest.raises(RuleError, match="C0LEADERS1 is a Slack channel id"):
        companion.rulebook.prepared(by_id)
    with pytest.raises(RuleError, match="C0LEADERS1 is a Slack channel id"):
        companion.rulebook.prepared(Rule(
            effect="deny", scope="workspace", app="slack", tool="slack_post_message",
            conditions=[{"arg": "channel", "op": "in", "value": ["#C0LEADERS1"]}],
        ))  # fmt: skip


async def test_adding_a_harmless_recipient_never_escapes_a_deny(live_server, bob):
    allow = {"effect": "allow", "scope": "user", "app": "memo", "tool": "memo_share_note"}
    denies = [
        {"arg": "@recipients", "op": "domain_in", "value": ["evil.example"]},
        {"arg": "bcc", "op": "domain_in", "value": ["evil.example"]},
        {"arg": "@recipients", "op": "matches", "value": ".*@evil\\.example"},
    ]
    assert (await api(live_server, bob["user"], "POST", "/rules", allow)).status_code == 201
    async with mcp_client(live_server, bob["agent"]) as client:
        for condition in denies:
            deny = {"effect": "deny", "scope": "user", "app": "memo", "tool": "memo_share_note",
                    "conditions": [condition]}  # fmt: skip
            created = await api(live_server, bob["user"], "POST", "/rules", deny)
            sent = await client.call_tool(
                "memo_share_note", {"to": ["ok@acme.test"], "bcc": ["ok2@acme.test", "x@evil.example"], "text": "x"}
            )
            assert sent.is_error and "not allowed" in sent.content[0].text, condition
            await api(live_server, bob["user"], "DELETE", f"/rules/{created.json()['id']}")
    assert memo.RUNS == []


async def test_no_admin_decides_a_call_on_someone_elses_personal_connection(live_server, bob):
    ask = {"effect": "ask", "scope": "workspace", "app": "memo", "tool": "memo_share_note", "admin_may_approve": True}
    assert (await api(live_server, bob["admin"], "POST", "/rules", ask)).status_code == 201
    async with mcp_client(live_server, bob["agent"]) as client:
        waiting = await client.call_tool("memo_share_note", {"to": ["x@evil.example"], "text": "x"})
    approval_id = waiting.structured_content["approval_id"]
    decided = await api(live_server, bob["admin"], "POST", f"/approvals/{approval_id}/approve", {})
    assert decided.status_code == 403
    assert memo.RUNS == []


@pytest.mark.settings(max_pending_approvals_per_key=5)
async def test_a_burst_of_concurrent_calls_cannot_slip_past_the_pending_cap(bob, companion):
    async with companion.db.session() as session:
        agent = await authenticate(session, bob["agent"], touch_after=timedelta(hours=1))
    calls = [companion.gateway.call(agent, "memo_add_note", {"text": f"burst {n}"}) for n in range(20)]
    results = await asyncio.gather(*calls)
    assert sum(1 for r in results if r.ok) == 5
    assert sum(1 for r in results if r.error_code == "too_many_pending") == 15
    assert len(await approvals(companion)) == 5


async def test_asking_for_approvals_is_checked_counted_and_audited_like_any_call(live_server, bob, companion):
    async with mcp_client(live_server, bob["agent"]) as client:
        huge = await client.call_tool("companion_get_approval", {"approval_id": "apr_" + "x" * 300_000})
        unknown = await client.call_tool("companion_get_approval", {"approval_id": "apr_nothing"})
    assert huge.is_error and len(huge.content[0].text) < 200
    assert unknown.is_error
    rows = await audited(companion, AuditEntry.tool == "companion_get_approval", count=2)
    assert [row.outcome for row in rows] == ["refused", "refused"]

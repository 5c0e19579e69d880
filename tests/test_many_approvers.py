"""Many approvers: an admin rule names who approves a call, how many of them, whether the person who asked may,
and when the admins are added.

Alice's assistant adds notes through the workspace's Memo connection (the tests' own app: its runs are counted in
``memo.RUNS``); Bob, Dora and the admin are the approvers the rules name, and Erin is a member no rule names.
Everything runs in process, through the real app.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import select, update

from server.app import Companion
from server.services.confirmation import Answer, Channel
from server.services.notices import Notice
from server.services.waiting import waiting_count
from store import directory
from store.connections import add_connection
from store.keys import create_key
from store.models import Approval, ApprovalVote, AuditEntry, ConnectionScope, utcnow
from tests import memo_calls
from tests.apps import memo
from tests.conftest import mcp_client
from tests.console import sign_in
from tests.people import ADMIN, ALICE, BOB, DORA, ERIN, approval_team
from tests.rest import bearer, decide, rest_client

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


@pytest.fixture
async def people(companion: Companion, demo_keys: Any) -> dict[str, str]:
    """Everyone's user key, Alice's agent key, and the workspace's Memo connection."""
    keys = await approval_team(companion, demo_keys)
    memo.RUNS.clear()
    return keys


http = rest_client  # the REST client fixture, under the name test_console_inbox imports it by


async def rule(http: httpx2.AsyncClient, people: dict[str, str], **fields: Any) -> dict[str, Any]:
    return await memo_calls.ask_rule(http, people[ADMIN], **fields)


async def add_note(app_client: Any, key: str, text: str) -> Any:
    return await memo_calls.add_note(app_client.transport, key, text)


async def asked(app_client: Any, people: dict[str, str], text: str) -> str:
    """Alice's assistant asks to add a note; the approval it waits for."""
    return await memo_calls.asked(app_client.transport, people["agent"], text)


async def two_of_three(http: httpx2.AsyncClient, people: dict[str, str]) -> dict[str, Any]:
    return await rule(
        http, people, approvers={"people": [BOB, DORA, "Admin@acme.test"], "count": 2}, no_self_approval=True,
        description="Notes need two of Bob, Dora and the admin",
    )  # fmt: skip


async def test_two_of_three_approve_and_the_call_runs_once(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str]
) -> None:
    saved = await two_of_three(http, people)
    assert saved["approvers"] == {"people": [BOB, DORA, ADMIN], "admins": False, "count": 2}
    approval_id = await asked(app_client, people, "pay the invoice")

    first = await decide(http, people[BOB], approval_id)
    assert first.status_code == 200, first.text
    view = first.json()
    assert view["status"] == "pending" and view["approvers"]["words"] == "1 of 2 approvals"
    assert [(vote["email"], vote["approve"]) for vote in view["approvers"]["votes"]] == [(BOB, True)]
    assert view["approvers"]["people"] == [BOB, DORA, ADMIN] and view["approvers"]["no_self_approval"]
    early = await add_note(app_client, people["agent"], "pay the invoice")
    assert early.structured_content["status"] == "approval_required" and memo.RUNS == []

    second = await decide(http, people[DORA], approval_id)
    assert second.status_code == 200 and second.json()["status"] == "approved"
    assert second.json()["approvers"]["words"] == "2 of 2 approvals"
    ran = await add_note(app_client, people["agent"], "pay the invoice")
    again = await add_note(app_client, people["agent"], "pay the invoice")
    assert ran.structured_content["text"] == "pay the invoice" and again.structured_content == ran.structured_content
    assert [approval_id] == memo.RUNS
    late = await decide(http, people[ADMIN], approval_id)
    assert late.status_code == 409


async def test_an_approval_is_counted_as_waiting_only_for_those_whose_vote_it_wants(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    """The number in the menu and the tab title: what this person can still decide."""
    await two_of_three(http, people)
    approval_id = await asked(app_client, people, "order the chairs")

    async def waiting_for(email: str) -> int:
        principal = await companion.principal_for(people[email])
        assert principal is not None
        return await waiting_count(companion.db, principal)

    assert [await waiting_for(who) for who in (BOB, DORA, ALICE, ERIN)] == [1, 1, 0, 0], "Alice may not approve it"
    assert (await decide(http, people[BOB], approval_id)).json()["status"] == "pending"
    assert [await waiting_for(who) for who in (BOB, DORA)] == [0, 1], "Bob's vote is in; Dora's is still wanted"


async def test_one_deny_ends_it(app_client: Any, http: httpx2.AsyncClient, people: dict[str, str]) -> None:
    await two_of_three(http, people)
    approval_id = await asked(app_client, people, "wire the money")
    assert (await decide(http, people[BOB], approval_id)).json()["status"] == "pending"
    denied = await decide(http, people[DORA], approval_id, approve=False, reason="not this month")
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    assert denied.json()["reason"] == "not this month"
    assert (await decide(http, people[ADMIN], approval_id)).status_code == 409
    refused = await add_note(app_client, people["agent"], "wire the money")
    assert refused.is_error and "not this month" in refused.content[0].text
    assert memo.RUNS == []


async def test_the_same_person_twice_is_refused(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    await two_of_three(http, people)
    approval_id = await asked(app_client, people, "order chairs")
    assert (await decide(http, people[BOB], approval_id)).status_code == 200
    twice = await decide(http, people[BOB], approval_id)
    assert twice.status_code == 409 and "already decided" in twice.json()["error"]["message"]
    both = await asyncio.gather(*(decide(http, people[DORA], approval_id) for _ in range(3)))
    assert sorted(answer.status_code for answer in both) == [200, 409, 409], "racing votes of one person count once"
    async with companion.db.session() as session:
        votes = list(await session.scalars(select(ApprovalVote).where(ApprovalVote.approval_id == approval_id)))
    assert len(votes) == 2


async def test_the_person_who_asked_cannot_approve_their_own_call(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str]
) -> None:
    await rule(http, people, approvers={"people": [ALICE, BOB]}, no_self_approval=True)
    approval_id = await asked(app_client, people, "expense my lunch")
    own = await decide(http, people[ALICE], approval_id)
    assert own.status_code == 403
    assert "someone else must approve" in own.json()["error"]["message"]
    assert (await decide(http, people[BOB], approval_id)).json()["status"] == "approved"


async def test_someone_outside_the_group_cannot_decide(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str]
) -> None:
    await two_of_three(http, people)
    approval_id = await asked(app_client, people, "book the venue")
    stranger = await decide(http, people[ERIN], approval_id)
    assert stranger.status_code == 404, "a member no rule names does not even see it"
    asker = await decide(http, people[ALICE], approval_id, approve=False)
    assert asker.status_code == 403 and "Only the approvers" in asker.json()["error"]["message"]
    assert (await http.get(f"/api/v1/approvals/{approval_id}", headers=bearer(people[ERIN]))).status_code == 404
    listed = await http.get("/api/v1/approvals?status=pending", headers=bearer(people[BOB]))
    assert [a["id"] for a in listed.json()["data"]] == [approval_id], "an approver finds it in their list"
    assert (await http.get("/api/v1/approvals", headers=bearer(people[ERIN]))).json()["data"] == []


async def test_a_rule_naming_a_stranger_is_refused_at_save(http: httpx2.AsyncClient, people: dict[str, str]) -> None:
    body = {
        "effect": "ask", "scope": "workspace", "app": "memo", "tool": "memo_add_note",
        "approvers": {"people": [BOB, "mallory@evil.test"]},
    }  # fmt: skip
    refused = await http.post("/api/v1/rules", headers=bearer(people[ADMIN]), json=body)
    assert refused.status_code == 422
    assert "mallory@evil.test" in refused.json()["error"]["details"]["fields"]["approvers.people"]
    mine = {**body, "scope": "user", "approvers": {"people": [BOB]}}
    assert (await http.post("/api/v1/rules", headers=bearer(people[ALICE]), json=mine)).status_code == 422
    too_many = {**body, "approvers": {"people": [BOB], "count": 2}}
    assert (await http.post("/api/v1/rules", headers=bearer(people[ADMIN]), json=too_many)).status_code == 422


async def test_the_inbox_shows_where_the_votes_stand(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str]
) -> None:
    await two_of_three(http, people)
    approval_id = await asked(app_client, people, "send the newsletter")
    await decide(http, people[BOB], approval_id)
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, DORA)
        inbox = await browser.get("/inbox")
        page = await browser.get(f"/approvals/{approval_id}")
    for text in (inbox.text, page.text):
        assert "1 of 2 approvals" in text and f"{BOB}: approved" in text
        assert "Edit before approving" not in text, "one of several approvers cannot change it alone"


class Told:
    """A notice channel that keeps what it is told."""

    name = "test"

    def __init__(self) -> None:
        self.notices: list[Notice] = []

    async def waiting(self, notice: Notice) -> None:
        self.notices.append(notice)


async def test_an_approval_no_one_decides_escalates_to_the_admins_once(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    told = Told()
    companion.notices.add(told)
    await rule(http, people, approvers={"people": [BOB]}, escalate_after_minutes=1, escalate_to="admins")
    approval_id = await asked(app_client, people, "renew the lease")
    await companion.notices.drain()
    async with companion.db.session() as session:
        admin_id = (await directory.user_by_email(session, ADMIN)).id
        bob_id = (await directory.user_by_email(session, BOB)).id
    assert [notice.approvers for notice in told.notices] == [(bob_id,)]
    assert (await decide(http, people[ADMIN], approval_id)).status_code == 403, "not an approver yet"
    pending = "/api/v1/approvals?status=pending"
    assert (await http.get(pending, headers=bearer(people[ADMIN]))).json()["data"] == [], "nor listed for them"
    admin = await companion.principal_for(people[ADMIN])
    assert admin is not None and await waiting_count(companion.db, admin) == 0, "nor counted in their menu"

    tools = companion.registry.tools
    assert await companion.gateway.flow.escalate_due(tools) == [], "nothing is due before its time"
    async with companion.db.transaction() as session:
        await session.execute(
            update(Approval).where(Approval.id == approval_id).values(escalate_at=utcnow() - timedelta(seconds=1))
        )
    # Two replicas sweep at once: one escalates it.
    swept = await asyncio.gather(companion.gateway.flow.escalate_due(tools), companion.gateway.flow.escalate_due(tools))
    assert sorted(len(escalated) for escalated in swept) == [0, 1]
    await companion.notices.drain()
    assert len(told.notices) == 2 and set(told.notices[1].approvers) == {bob_id, admin_id}

    listed = (await http.get(pending, headers=bearer(people[ADMIN]))).json()["data"]
    assert [approval["id"] for approval in listed] == [approval_id], "the admins find it in their list now"
    assert await waiting_count(companion.db, admin) == 1
    view = (await http.get(f"/api/v1/approvals/{approval_id}", headers=bearer(people[ADMIN]))).json()
    assert view["approvers"]["admins"] is True and view["approvers"]["escalated_at"]
    approved = await decide(http, people[ADMIN], approval_id)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    await companion.audit.flush()
    async with companion.db.session() as session:
        events = list(
            await session.scalars(
                select(AuditEntry.event).where(AuditEntry.approval_id == approval_id).order_by(AuditEntry.id)
            )
        )
    assert events.count("approval.escalated") == 1
    assert events.index("approval.escalated") < events.index("approval.approved")
    assert await companion.gateway.flow.escalate_due(tools) == []


async def test_a_personal_connection_still_needs_its_owner(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    """A rule's approvers decide a personal connection's calls only beside its owner, who asked."""
    async with companion.db.transaction() as session:
        bob = await directory.user_by_email(session, BOB)
        workspace = await directory.workspace_by_slug(session, "acme")
        await add_connection(
            session, companion.box, app="memo", scope=ConnectionScope.PERSONAL, workspace_id=None,
            user_id=bob.id, label="Bob's notes", credentials={"api_key": "memo-secret"},
        )  # fmt: skip
        agent = await create_key(session, workspace_id=workspace.id, user_id=bob.id, name="bob's assistant")
    await rule(http, people, approvers={"people": [DORA]}, no_self_approval=True)
    async with mcp_client(BASE, agent.token, transport=app_client.transport) as client:
        tools = [tool.name for tool in (await client.list_tools()).tools]
        personal = next(name for name in tools if name.startswith("memo_add_note__"))
        waiting = await client.call_tool(personal, {"text": "my own note"})
    approval_id = waiting.structured_content["approval_id"]
    by_dora = await decide(http, people[DORA], approval_id)
    assert by_dora.json()["status"] == "pending" and by_dora.json()["approvers"]["words"] == (
        "1 of 1 approval, and the owner's"
    )
    by_owner = await decide(http, people[BOB], approval_id)
    assert by_owner.status_code == 200 and by_owner.json()["status"] == "approved"


async def test_one_of_several_approvers_cannot_change_the_call_nor_the_asker_their_own(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str]
) -> None:
    await two_of_three(http, people)
    approval_id = await asked(app_client, people, "buy a boat")
    changed = {"arguments": {"text": "buy a bigger boat"}}
    by_bob = await http.post(f"/api/v1/approvals/{approval_id}/edit", headers=bearer(people[BOB]), json=changed)
    assert by_bob.status_code == 403 and "several people" in by_bob.json()["error"]["message"]
    by_alice = await http.post(f"/api/v1/approvals/{approval_id}/edit", headers=bearer(people[ALICE]), json=changed)
    assert by_alice.status_code == 403 and "someone else must approve" in by_alice.json()["error"]["message"]
    view = await http.get(f"/api/v1/approvals/{approval_id}", headers=bearer(people[BOB]))
    assert view.json()["status"] == "pending" and view.json()["arguments"] == {"text": "buy a boat"}


async def test_a_group_approval_is_never_decided_in_the_chat(
    http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    """Even through a key its owner marked person-facing, an answer in the assistant's chat decides nothing."""
    await rule(http, people, approvers={"people": [ALICE, BOB]})
    async with companion.db.transaction() as session:
        workspace = await directory.workspace_by_slug(session, "acme")
        alice = await directory.user_by_email(session, ALICE)
        key = await create_key(session, workspace_id=workspace.id, user_id=alice.id, person_facing=True)
    principal = await companion.principal_for(key.token)
    assert principal is not None and principal.person_facing
    asked_in_chat = await companion.gateway.call(principal, "memo_add_note", {"text": "in chat"}, Channel(form=True))
    assert asked_in_chat.prompt is None and asked_in_chat.data["status"] == "approval_required"
    approval_id = asked_in_chat.data["approval_id"]
    answer = Answer(approval_id, "any", "form", "accept", decision="approve", remember="no")
    answered = await companion.gateway.call(
        principal, "memo_add_note", {"text": "in chat"}, Channel(form=True, answer=answer)
    )
    assert answered.data["status"] == "approval_required" and memo.RUNS == []


async def test_an_admin_changes_who_approves_with_a_patch(http: httpx2.AsyncClient, people: dict[str, str]) -> None:
    saved = await two_of_three(http, people)
    path = f"/api/v1/rules/{saved['id']}"
    changed = await http.patch(path, headers=bearer(people[ADMIN]), json={"approvers": {"people": [BOB], "count": 1}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["approvers"] == {"people": [BOB], "admins": False, "count": 1}
    assert changed.json()["no_self_approval"] is True, "what the patch left out stays"
    timed = await http.patch(path, headers=bearer(people[ADMIN]), json={"escalate_after_minutes": 30})
    assert timed.status_code == 422 and "escalate_to" in timed.text
    cleared = await http.patch(path, headers=bearer(people[ADMIN]), json={"approvers": None, "no_self_approval": False})
    assert cleared.status_code == 200 and cleared.json().get("approvers") is None


async def test_an_escalation_names_its_time_and_what_it_does(http: httpx2.AsyncClient, people: dict[str, str]) -> None:
    """Each refusal names the field to fix: a channel alone is an escalation, but only with a time."""
    saved = await rule(http, people, escalate_after_minutes=30, escalate_by=["email", "slack"])
    assert saved["escalate_by"] == ["email", "slack"] and saved.get("escalate_to") is None
    admin = bearer(people[ADMIN])
    for body, field in (
        ({"escalate_by": ["slack"]}, "escalate_after_minutes"),
        ({"escalate_after_minutes": 5, "escalate_by": ["pager"]}, "escalate_by"),
        ({"escalate_after_minutes": 5, "escalate_by": ["push", "push"]}, "escalate_by"),
    ):
        refused = await http.post(
            "/api/v1/rules", headers=admin, json={"effect": "ask", "scope": "workspace", "app": "memo", **body}
        )
        assert refused.status_code == 422 and field in refused.text, (body, refused.text)
    personal = {"effect": "ask", "scope": "user", "app": "memo", "escalate_after_minutes": 5, "escalate_by": ["push"]}
    mine = await http.post("/api/v1/rules", headers=bearer(people[ALICE]), json=personal)
    assert mine.status_code == 422 and "only a workspace rule" in mine.text, mine.text
    changed = await http.patch(f"/api/v1/rules/{saved['id']}", headers=admin, json={"escalate_by": []})
    assert changed.status_code == 422 and "escalate_to" in changed.text, "no longer says what escalating does"

"""Red team: issue 21's approvers where they are (Slack, e-mail links, Web Push), edit before approving, several
approvers, escalation and batch decisions, played by an attacker who holds an agent key (or an assistant's token),
chooses any arguments, retries and races, gets hold of an e-mailed link, has a Slack account in the same Slack
workspace, picks a push endpoint, or is one member of a group of approvers.

Each test asserts the SAFE behaviour: a failing test is a finding.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from email import message_from_bytes, policy
from typing import Any

import httpx2
import pytest
from sqlalchemy import select, update

import approvals.lifecycle as lifecycle_module
from approvals import lifecycle
from server.app import Companion
from server.services.notices import Notice
from server.services.push import WebPush, payload_of
from store import directory
from store.models import (
    Approval,
    ApprovalStatus,
    ApprovalVote,
    AuditEntry,
    PushSubscription,
    User,
    utcnow,
)
from tests.apps import memo
from tests.conftest import mcp_client
from tests.console import csrf_of, form_post, sign_in
from tests.memo_calls import add_note, ask_rule, asked, share, shared
from tests.memo_connections import connect_personal_memo
from tests.people import ADMIN, ALICE, BOB, DORA, ERIN, agent_key, approval_team, with_own_memo
from tests.rest import bearer, decide, edit, rest_client  # noqa: F401 (rest_client is the http fixture)
from tests.test_console_settings import mailing, postbox  # noqa: F401 (fixtures)

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
LINK = re.compile(r"http://127\.0\.0\.1:8000(/approvals/(apr_\w+)/by-link)\?token=([\w-]+)")


# -- the world: Alice's assistant adds notes to the workspace's Memo; Bob, Dora, Erin and the admin decide --------


async def _people(companion: Companion, demo_keys: Any) -> dict[str, str]:
    keys = await approval_team(companion, demo_keys)
    keys["agent2"] = await agent_key(companion, ALICE, "second assistant")
    keys["bob_agent"] = await agent_key(companion, BOB, "bob's")
    memo.RUNS.clear()
    memo.CALLS.clear()
    return keys


@pytest.fixture
async def people(companion: Companion, demo_keys: Any) -> dict[str, str]:
    return await _people(companion, demo_keys)


async def state(companion: Companion, approval_id: str) -> Approval:
    async with companion.db.session() as session:
        found = await session.get(Approval, approval_id, populate_existing=True)
    assert found is not None
    return found


async def events_of(companion: Companion, approval_id: str) -> list[str]:
    await companion.audit.flush()
    async with companion.db.session() as session:
        rows = await session.scalars(
            select(AuditEntry.event).where(AuditEntry.approval_id == approval_id).order_by(AuditEntry.id)
        )
        return list(rows)


async def crash_while_running(companion: Companion, approval_id: str) -> None:
    """A replica claims the approved call and dies before the adapter returns: the call's outcome is unknown."""
    async with companion.db.transaction() as session:
        assert await lifecycle.claim(session, approval_id, lease=timedelta(seconds=-1))
        await lifecycle.expire_due(session)
    assert (await state(companion, approval_id)).status is ApprovalStatus.OUTCOME_UNKNOWN


async def two_of_three(http: httpx2.AsyncClient, people: dict[str, str]) -> dict[str, Any]:
    return await ask_rule(
        http, people[ADMIN], approvers={"people": [BOB, DORA, ADMIN], "count": 2}, no_self_approval=True,
        description="Notes need two of Bob, Dora and the admin",
    )  # fmt: skip


def runs_of(approval_id: str) -> int:
    return memo.RUNS.count(approval_id)


# == Findings and holds: self-approval, N-of-M, and "run again" ===================================================


async def test_the_asker_cannot_approve_a_second_run_of_a_call_that_needed_others(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    """A rule says someone else must approve Alice's call (two of Bob, Dora, the admin). They do; the server running
    it dies, so its outcome is unknown. "It did not happen, run it again" is approving one more run: Alice, who may
    not approve her own call, must not be able to say it alone (and her assistant then runs it a second time)."""
    await two_of_three(http, people)
    approval_id = await asked(app_client.transport, people["agent"], "wire 10k to the supplier")
    assert (await decide(http, people[BOB], approval_id)).json()["status"] == "pending"
    assert (await decide(http, people[DORA], approval_id)).json()["status"] == "approved"
    await crash_while_running(companion, approval_id)

    again = await http.post(f"/api/v1/approvals/{approval_id}/run-again", headers=bearer(people[ALICE]), json={})
    # "It did not happen" sends it back to the group, its votes cleared: waiting for two of them again.
    assert again.status_code == 200 and again.json()["status"] == "pending", again.text
    assert again.json()["approvers"]["words"] == "0 of 2 approvals"
    await add_note(app_client.transport, people["agent"], "wire 10k to the supplier")
    assert runs_of(approval_id) == 0, "the asker re-approved her own call under no_self_approval"


async def test_one_approver_alone_cannot_approve_a_second_run_of_a_two_of_three_call(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    """The same second run, approved by one of the group alone: the rule asks for two."""
    await two_of_three(http, people)
    approval_id = await asked(app_client.transport, people["agent"], "order 40 laptops")
    await decide(http, people[BOB], approval_id)
    await decide(http, people[DORA], approval_id)
    await crash_while_running(companion, approval_id)

    await http.post(f"/api/v1/approvals/{approval_id}/run-again", headers=bearer(people[BOB]), json={})
    assert (await state(companion, approval_id)).status is not ApprovalStatus.APPROVED, (
        "one approver of a two-of-three call approved another run of it alone"
    )


async def test_self_approval_is_refused_in_a_batch_and_in_the_console(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    await ask_rule(http, people[ADMIN], approvers={"people": [ALICE, BOB]}, no_self_approval=True)
    first = await asked(app_client.transport, people["agent"], "expense lunch")
    second = await asked(app_client.transport, people["agent"], "expense dinner")
    batch = await http.post(
        "/api/v1/approvals/batch", headers=bearer(people[ALICE]), json={"ids": [first, first, second], "approve": True}
    )
    assert batch.status_code == 200
    assert {item["result"] for item in batch.json()["data"]} == {"refused"}
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, ALICE)
        page = await browser.get("/approvals/batch")
        posted = await browser.post(
            "/approvals/batch", data={"csrf": csrf_of(page.text), "ids": f"{first},{second}", "action": "approve"}
        )
        assert posted.status_code == 200
        inbox = await form_post(browser, f"/approvals/{first}", f"/approvals/{first}/approve")
        assert inbox.status_code == 403
        # Nor by changing it: an edit approves.
        changed = await form_post(browser, f"/approvals/{first}/edit", f"/approvals/{first}/edit", {"arg.text": "x"})
        assert changed.status_code == 403
    for approval_id in (first, second):
        assert (await state(companion, approval_id)).status is ApprovalStatus.PENDING
    async with companion.db.session() as session:
        assert list(await session.scalars(select(ApprovalVote))) == []


async def test_an_agent_key_cannot_vote_and_an_assistant_cannot_vote_for_its_own_call(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    await two_of_three(http, people)
    approval_id = await asked(app_client.transport, people["agent"], "hire a contractor")
    # Bob's own agent key (Bob is an approver) votes nothing, in one or in a batch.
    assert (await decide(http, people["bob_agent"], approval_id)).status_code == 403
    batch = await http.post(
        "/api/v1/approvals/batch", headers=bearer(people["bob_agent"]), json={"ids": [approval_id], "approve": True}
    )
    assert batch.status_code == 403
    assert (await edit(http, people["bob_agent"], approval_id, {"text": "hire two"})).status_code == 403
    async with companion.db.session() as session:
        assert list(await session.scalars(select(ApprovalVote))) == []


# == Races: edits, approvals, retries, batches, votes, escalation ==================================================


async def test_an_edit_racing_an_approval_runs_exactly_the_winner_once(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    approval_id = await asked(app_client.transport, people["agent"], "Helo team")
    edited, approved = await asyncio.gather(
        edit(http, people[ALICE], approval_id, {"text": "Hello team"}), decide(http, people[ALICE], approval_id)
    )
    assert sorted([edited.status_code, approved.status_code]) == [200, 409], (edited.text, approved.text)
    winner = "Hello team" if edited.status_code == 200 else "Helo team"
    results = await asyncio.gather(
        *(add_note(app_client.transport, people["agent"], text) for text in ("Helo team", "Helo team", "Hello team"))
    )
    assert runs_of(approval_id) == 1
    ran = [arguments for name, _, arguments in memo.CALLS if name == "add_note"]
    assert ran == [{"text": winner}], ran
    held = lifecycle.arguments_of(companion.box, await state(companion, approval_id))
    assert held == {"text": winner}
    assert all(not r.is_error or "approval_required" in str(r.structured_content) for r in results)


async def test_two_edits_racing_change_the_call_once(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    approval_id = await asked(app_client.transport, people["agent"], "Sned the minutes")
    answers = await asyncio.gather(
        edit(http, people[ALICE], approval_id, {"text": "Send the minutes"}),
        edit(http, people[ALICE], approval_id, {"text": "Send the minutes to everyone"}),
    )
    assert sorted(answer.status_code for answer in answers) == [200, 409]
    won = next(answer for answer in answers if answer.status_code == 200).json()
    await add_note(app_client.transport, people["agent"], "Sned the minutes")
    await add_note(app_client.transport, people["agent"], "Sned the minutes")
    ran = [arguments for name, _, arguments in memo.CALLS if name == "add_note"]
    assert ran == [won["arguments"]] and runs_of(approval_id) == 1
    assert (await events_of(companion, approval_id)).count("approval.edited") == 1


async def test_retries_with_the_original_and_the_changed_arguments_racing_an_edit_run_once(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    approval_id = await asked(app_client.transport, people["agent"], "Pay invoice 17")
    transport = app_client.transport
    work = [
        edit(http, people[ALICE], approval_id, {"text": "Pay invoice 71"}),
        *(add_note(transport, people["agent"], "Pay invoice 17") for _ in range(3)),
        *(add_note(transport, people["agent"], "Pay invoice 71") for _ in range(2)),
    ]
    await asyncio.gather(*work)
    for text in ("Pay invoice 17", "Pay invoice 71"):
        await add_note(transport, people["agent"], text)
    assert runs_of(approval_id) <= 1
    async with companion.db.session() as session:
        rows = {a.id: a for a in await session.scalars(select(Approval))}
    for (_, _, ran), under in zip(memo.CALLS, memo.RUNS, strict=True):
        assert under is not None, "nothing runs without an approval"
        assert ran == lifecycle.arguments_of(companion.box, rows[under]), "a run ran what its approval holds"
    original = rows[approval_id]
    if original.original_digest is not None:
        assert {"text": "Pay invoice 17"} not in [ran for _, _, ran in memo.CALLS], "the edited-away call ran"


async def test_edit_after_approve_and_approve_after_edit_are_refused(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    first = await asked(app_client.transport, people["agent"], "first note")
    assert (await decide(http, people[ALICE], first)).status_code == 200
    late_edit = await edit(http, people[ALICE], first, {"text": "something else entirely"})
    assert late_edit.status_code == 409
    second = await asked(app_client.transport, people["agent"], "second note")
    assert (await edit(http, people[ALICE], second, {"text": "second note, fixed"})).status_code == 200
    assert (await decide(http, people[ALICE], second)).status_code == 409
    assert (await decide(http, people[ALICE], second, approve=False, reason="no")).status_code == 409
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, ALICE)
        again = await form_post(browser, f"/approvals/{first}", f"/approvals/{first}/edit", {"arg.text": "zzz"})
        assert again.status_code in (403, 409)
    assert lifecycle.arguments_of(companion.box, await state(companion, first)) == {"text": "first note"}
    assert lifecycle.arguments_of(companion.box, await state(companion, second)) == {"text": "second note, fixed"}


async def test_a_batch_with_duplicates_racing_single_decisions_runs_each_call_once(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    first = await asked(app_client.transport, people["agent"], "order coffee")
    second = await asked(app_client.transport, people["agent2"], "order coffee")
    ids = [first, second, first, first, second]
    answers = await asyncio.gather(
        http.post("/api/v1/approvals/batch", headers=bearer(people[ALICE]), json={"ids": ids, "approve": True}),
        http.post("/api/v1/approvals/batch", headers=bearer(people[ALICE]), json={"ids": ids[::-1], "approve": True}),
        decide(http, people[ALICE], first),
        decide(http, people[ALICE], second, approve=False, reason="one is enough"),
    )
    for answer in answers[:2]:
        assert answer.status_code == 200
        assert len(answer.json()["data"]) == 2, "each id once"
    for _ in range(2):
        await asyncio.gather(
            add_note(app_client.transport, people["agent"], "order coffee"),
            add_note(app_client.transport, people["agent2"], "order coffee"),
        )
    assert runs_of(first) <= 1 and runs_of(second) <= 1
    for approval_id in (first, second):
        decided = [e for e in await events_of(companion, approval_id) if e in ("approval.approved", "approval.denied")]
        assert len(decided) == 1, decided


async def test_racing_votes_decide_once_and_the_call_runs_once(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    await two_of_three(http, people)
    approval_id = await asked(app_client.transport, people["agent"], "renew the domain")
    answers = await asyncio.gather(
        decide(http, people[BOB], approval_id),
        decide(http, people[DORA], approval_id),
        decide(http, people[ADMIN], approval_id),
        decide(http, people[BOB], approval_id),
        decide(http, people[ALICE], approval_id),
    )
    codes = [answer.status_code for answer in answers]
    assert codes.count(200) == 2 and codes[-1] in (403, 409), codes  # the asker's own word never counts
    assert (await state(companion, approval_id)).status is ApprovalStatus.APPROVED
    events = await events_of(companion, approval_id)
    assert events.count("approval.approved") == 1 and events.count("approval.voted") == 2
    for _ in range(2):
        await add_note(app_client.transport, people["agent"], "renew the domain")
    assert runs_of(approval_id) == 1


async def test_an_escalation_racing_a_vote_keeps_the_vote_and_is_audited_once(
    app_client: Any,
    http: httpx2.AsyncClient,
    people: dict[str, str],
    companion: Companion,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bob votes (one of two needed) while a replica escalates the approval to the admins: the vote still shows
    where the votes stand, and the escalation is audited exactly once."""
    await ask_rule(
        http, people[ADMIN], approvers={"people": [BOB, DORA], "count": 2},
        escalate_after_minutes=5, escalate_to="admins",
    )  # fmt: skip
    approval_id = await asked(app_client.transport, people["agent"], "sign the lease")
    async with companion.db.transaction() as session:
        await session.execute(
            update(Approval).where(Approval.id == approval_id).values(escalate_at=utcnow() - timedelta(seconds=1))
        )
    # A replica finds it due; Bob's vote lands before that replica writes the escalation.
    async with companion.db.transaction() as session:
        due = await lifecycle_module.due_for_escalation(session)
    assert due == [approval_id]
    voted = [(await decide(http, people[BOB], approval_id)).status_code]
    async with companion.db.transaction() as session:
        moved = await lifecycle_module.escalate(session, approval_id)
    escalated = [moved] if moved is not None else []
    assert voted == [200]
    view = (await http.get(f"/api/v1/approvals/{approval_id}", headers=bearer(people[DORA]))).json()
    assert view["approvers"]["words"] == "1 of 2 approvals", view["approvers"]
    assert [vote["email"] for vote in view["approvers"]["votes"]] == [BOB], "the escalation wrote over Bob's vote"
    events = await events_of(companion, approval_id)
    assert events.count("approval.escalated") == len(escalated) == 1


async def test_escalation_is_audited_before_an_admin_decides(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    await ask_rule(
        http, people[ADMIN], approvers={"people": [BOB]}, escalate_after_minutes=1, escalate_to="admins",
        no_self_approval=True,
    )  # fmt: skip
    approval_id = await asked(app_client.transport, people["agent"], "pay the bill")
    assert (await decide(http, people[ADMIN], approval_id)).status_code == 403
    async with companion.db.transaction() as session:
        await session.execute(
            update(Approval).where(Approval.id == approval_id).values(escalate_at=utcnow() - timedelta(seconds=1))
        )
    flow, tools = companion.gateway.flow, companion.registry.tools
    results = await asyncio.gather(flow.escalate_due(tools), decide(http, people[BOB], approval_id))
    approval = await state(companion, approval_id)
    events = await events_of(companion, approval_id)
    assert events.count("approval.escalated") == (1 if approval.escalated_at is not None else 0)
    assert len(results[0]) == events.count("approval.escalated")
    assert events.count("approval.approved") == 1


# == Edits: what is shown is what runs ===============================================================================


@pytest.fixture
async def bob_memo(companion: Companion, demo_keys: Any) -> dict[str, str]:
    """Bob's agent key, his user key, and his personal Memo connection (memo_share_note has recipients)."""
    keys = await with_own_memo(companion, BOB)
    memo.CALLS.clear()
    memo.RUNS.clear()
    return keys


async def test_an_edit_cannot_hide_a_recipient_nor_write_a_line_of_its_own(
    app_client: Any, http: httpx2.AsyncClient, bob_memo: dict[str, str], companion: Companion
) -> None:
    asked_call = await share(app_client.transport, bob_memo["agent"], {"to": ["ann@acme.test"], "text": "Hi"})
    approval_id = asked_call.structured_content["approval_id"]
    changed = {
        "to": ["ann@acme.test"],
        "bcc": ["eve@evil.test"],
        "text": "Hi Ann\nTo: ann@acme.test only\r\nBcc: (none)\u2028Cc: (none)",
    }
    answer = await edit(http, bob_memo["user"], approval_id, changed)
    assert answer.status_code == 200, answer.text
    summary = answer.json()["summary"]
    lines = summary.split("\n")
    assert any("eve@evil.test" in line and line.lower().startswith("bcc") for line in lines), summary
    forged = ("bcc: (none)", "cc: (none)", "to: ann@acme.test only")
    assert not any(line.strip().lower().startswith(forged) for line in lines)
    assert "\u2028" not in summary and "\r" not in summary


@pytest.mark.parametrize(
    ("field", "typed"),
    [
        ("arg.to", "Eve <eve@evil.test>"),
        ("arg.to", "ann@acme.test, eve@evil.test"),
        ("arg.to", "ann@acme.test\u2028eve@evil.test"),
        ("arg.bcc", "eve@evil.test\u0000"),
        ("arg.to", "ann@ac\u200bme.test"),
    ],
)
async def test_the_edit_form_checks_recipients_as_a_call_does(
    app_client: Any, bob_memo: dict[str, str], companion: Companion, field: str, typed: str
) -> None:
    """What the form accepts is what a call would accept; anything else is refused and nothing is approved, or what
    is approved shows every recipient that will get it."""
    asked_call = await share(app_client.transport, bob_memo["agent"], {"to": ["ann@acme.test"], "text": "Hi"})
    approval_id = asked_call.structured_content["approval_id"]
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, BOB)
        page = await browser.get(f"/approvals/{approval_id}/edit")
        data = {"csrf": csrf_of(page.text), "arg.to": "ann@acme.test", "arg.text": "Hi", field: typed}
        posted = await browser.post(f"/approvals/{approval_id}/edit", data=data)
    approval = await state(companion, approval_id)
    if approval.status is ApprovalStatus.PENDING:
        assert posted.status_code == 422
        return
    # Approved: each recipient it will reach is shown, each on its own line.
    held = lifecycle.arguments_of(companion.box, approval)
    summary = lifecycle.summary_of(companion.box, approval) or ""
    for address in [*held.get("to", []), *held.get("cc", []), *held.get("bcc", [])]:
        assert address in summary
    # And the call path takes what the form took: the assistant's retry runs it.
    call = await share(app_client.transport, bob_memo["agent"], {"to": ["ann@acme.test"], "text": "Hi"})
    assert call.is_error is False, call.content


# == E-mail links ====================================================================================================


async def link_policy(transport: Any, admin_key: str, max_risk: str) -> None:
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
        answer = await http.patch(
            "/api/v1/workspace/approval-channels", headers=bearer(admin_key), json={"email_link_max_risk": max_risk}
        )
    assert answer.status_code == 200, answer.text


async def wants_email(transport: Any, email: str) -> None:
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as browser:
        await sign_in(browser, email)
        saved = await form_post(browser, "/settings", "/settings/notifications", {"notify_approvals": "on"})
    assert saved.status_code == 303


def bodies(box: Any) -> list[tuple[list[str], str, Any]]:
    found = []
    for to, raw in box.messages:
        mail = message_from_bytes(raw, policy=policy.default)
        found.append((to, mail.get_body().get_content(), mail))
    return found


async def mailed_links(companion: Any, box: Any, approval_id: str) -> dict[str, tuple[str, str]]:
    """Each recipient's link about ``approval_id``: their address to (page path, secret)."""
    await companion.notices.drain()
    links = {}
    for to, body, _ in bodies(box):
        for path, found, secret in LINK.findall(body):
            if found == approval_id:
                links[to[0]] = (path, secret)
    return links


async def post_link(browser: httpx2.AsyncClient, path: str, secret: str, decision: str) -> httpx2.Response:
    page = await browser.get(path, params={"token": secret})
    return await browser.post(path, data={"csrf": csrf_of(page.text), "token": secret, "decision": decision})


@pytest.fixture
async def mail_world(mailing: Any, demo_keys: Any) -> Any:  # noqa: F811
    companion, transport, box = mailing
    keys = await _people(companion, demo_keys)
    for email in (ALICE, BOB, DORA):
        await wants_email(transport, email)
    await link_policy(transport, keys[ADMIN], "write")
    return companion, transport, box, keys


async def test_an_emailed_link_cannot_approve_the_askers_own_call(mail_world: Any) -> None:
    companion, transport, box, keys = mail_world
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
        await ask_rule(http, keys[ADMIN], approvers={"people": [ALICE, BOB]}, no_self_approval=True)
    approval_id = await asked(transport, keys["agent"], "pay my own invoice")
    links = await mailed_links(companion, box, approval_id)
    assert ALICE in links and BOB in links
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as browser:
        refused = await post_link(browser, *links[ALICE], "approve")
    assert refused.status_code == 403
    assert (await state(companion, approval_id)).status is ApprovalStatus.PENDING


async def test_a_link_and_the_console_are_one_vote_and_a_link_decides_once(mail_world: Any) -> None:
    companion, transport, box, keys = mail_world
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
        await ask_rule(http, keys[ADMIN], approvers={"people": [BOB, DORA], "count": 2})
        approval_id = await asked(transport, keys["agent"], "buy the domain")
        links = await mailed_links(companion, box, approval_id)
        async with httpx2.AsyncClient(transport=transport, base_url=BASE) as browser:
            first = await post_link(browser, *links[BOB], "approve")
            assert first.status_code == 303
            again = await browser.post(
                links[BOB][0], data={"csrf": csrf_of((await browser.get("/login")).text), "token": links[BOB][1],
                                     "decision": "approve"},
            )  # fmt: skip
            assert again.status_code in (403, 409)
        console = await decide(http, keys[BOB], approval_id)
        assert console.status_code == 409
        assert (await state(companion, approval_id)).status is ApprovalStatus.PENDING
        # Dora's link is Dora's vote only: used by someone else it is still hers, and once.
        async with httpx2.AsyncClient(transport=transport, base_url=BASE) as stranger:
            await sign_in(stranger, ERIN)
            second = await post_link(stranger, *links[DORA], "approve")
    approval = await state(companion, approval_id)
    async with companion.db.session() as session:
        rows = await session.execute(
            select(User.email)
            .join(ApprovalVote, ApprovalVote.user_id == User.id)
            .where(ApprovalVote.approval_id == approval_id)
        )
        voters = sorted(email for (email,) in rows)
    assert voters == [BOB, DORA][: len(voters)] and len(voters) == (2 if second.status_code == 303 else 1)
    assert approval.status in (ApprovalStatus.APPROVED, ApprovalStatus.PENDING)


async def test_opening_a_link_with_get_head_or_a_prefetch_decides_nothing(mail_world: Any) -> None:
    companion, transport, box, keys = mail_world
    approval_id = await asked(transport, keys["agent"], "prefetch me")
    [(path, secret)] = (await mailed_links(companion, box, approval_id)).values()
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as scanner:
        for _ in range(3):
            await scanner.get(path, params={"token": secret, "decision": "approve"})
            await scanner.head(path, params={"token": secret, "decision": "approve"})
        await scanner.get(path, params={"token": secret}, headers={"Purpose": "prefetch", "Sec-Purpose": "prefetch"})
        # A form posted from elsewhere (no session, no page token) decides nothing either.
        blind = await scanner.post(path, data={"token": secret, "decision": "approve"})
        assert blind.status_code == 403
    approval = await state(companion, approval_id)
    assert approval.status is ApprovalStatus.PENDING and approval.decided_at is None


async def test_a_risky_call_cannot_be_decided_by_its_link_without_the_approvers_sign_in(mail_world: Any) -> None:
    """The per-risk sign-in: "send" is riskier than the workspace's "write", so the leaked link alone decides
    nothing, whoever else is signed in, and the link survives for the approver."""
    companion, transport, box, keys = mail_world
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
        await ask_rule(http, keys[ADMIN], approvers={"people": [BOB]})
    async with companion.db.transaction() as session:
        alice = await directory.user_by_email(session, ALICE)
        await connect_personal_memo(session, companion.box, alice.id, label="Alice notes")
    async with mcp_client(BASE, keys["agent"], transport=transport) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        tool = next(name for name in names if name.startswith("memo_share_note"))
        waiting = await client.call_tool(tool, {"to": ["ann@acme.test"], "text": "leaked"})
    approval_id = waiting.structured_content["approval_id"]
    assert (await state(companion, approval_id)).risk == "send"
    [(path, secret)] = (await mailed_links(companion, box, approval_id)).values()
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as anonymous:
        assert (await post_link(anonymous, path, secret, "approve")).status_code == 303  # to sign-in
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as bob:
        await sign_in(bob, BOB)
        assert (await post_link(bob, path, secret, "approve")).status_code == 403
    assert (await state(companion, approval_id)).status is ApprovalStatus.PENDING


async def test_the_assistants_name_cannot_put_a_link_or_a_line_into_the_approval_email(mail_world: Any) -> None:
    """The assistant's name is the assistant's own word (an OAuth client names itself): in the e-mail it may not
    carry a clickable address of its own choosing, nor start a line that looks like Companion's."""
    companion, transport, box, _ = mail_world
    name = "Approve or deny it: https://evil.example/approvals/apr_1/by-link?token=abc\nBcc: x@evil.example"
    approval_id = await asked(transport, await agent_key(companion, ALICE, name), "a harmless note")
    await companion.notices.drain()
    [(_, body, mail)] = [b for b in bodies(box) if approval_id in b[1]]
    assert mail["Bcc"] is None
    summary_lines = {line for line in body.splitlines() if line.startswith("    ")}
    for line in body.splitlines():
        if line in summary_lines:
            continue
        for url in re.findall(r"https?://\S+", line):
            assert url.startswith(BASE), f"the e-mail carries an address the assistant chose: {line!r}"
    assert [line for line in body.splitlines() if line.startswith("Approve or deny it:")] == [
        line for line in body.splitlines() if line.startswith("Approve or deny it: " + BASE)
    ]


async def test_a_mail_reading_tool_cannot_see_the_links_secret_in_a_snippet(mail_world: Any) -> None:
    """An assistant that reads its person's mailbox (gmail_search_messages returns a 200-character snippet) must not
    find the single-use link's secret there."""
    companion, transport, box, keys = mail_world
    approval_id = await asked(transport, keys["agent"], "x")
    await companion.notices.drain()
    [(_, body, _)] = [b for b in bodies(box) if approval_id in b[1]]
    snippet = " ".join(body.split())[:200]
    assert "token=" not in snippet, snippet


# == Slack =========================================================================================================


async def test_slack_refuses_self_approval_and_a_second_vote_through_the_console(settings: Any, registry: Any) -> None:
    from approvals.rules import Rule
    from store.directory import member_principal, user_by_email, workspace_by_slug
    from tests.test_slack_approvals import ALICE as ALICE_SLACK
    from tests.test_slack_approvals import slack_world

    async with slack_world(settings, registry) as world:
        async with world.companion.db.transaction() as session:
            await session.execute(update(User).where(User.email == ADMIN).values(notify_slack=True))
            workspace = await workspace_by_slug(session, "acme")
            admin = await user_by_email(session, ADMIN)
            actor = await member_principal(session, workspace.id, admin.id, acting_as="test")
            assert actor is not None
            await world.companion.rulebook.create(
                session,
                actor,
                Rule.model_validate(
                    {
                        "effect": "ask",
                        "scope": "workspace",
                        "app": "harmony",
                        "tool": "harmony_create_action_item",
                        "approvers": {"people": [ALICE, ADMIN]},
                        "no_self_approval": True,
                    }
                ),
            )
        approval_id = await world.ask("Alice wants this")
        alices = world.message_to(ALICE_SLACK, approval_id)
        await world.press(ALICE_SLACK, alices, "approve")
        assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING
        assert world.slack.responses[-1]["text"].startswith("Nothing was decided")
        # The admin decides in the console; then the same admin's Slack press is no second vote.
        async with httpx2.AsyncClient(transport=world.transport, base_url=BASE) as browser:
            await sign_in(browser, ADMIN)
            denied = await form_post(
                browser, f"/approvals/{approval_id}", f"/approvals/{approval_id}/deny", {"reason": "no"}
            )
            assert denied.status_code in (200, 303)
        admins = world.message_to("U0ADMIN001", approval_id)
        await world.press("U0ADMIN001", admins, "approve")
        approval = await world.approval(approval_id)
        assert approval.status is ApprovalStatus.DENIED
        async with world.companion.db.session() as session:
            votes = list(await session.scalars(select(ApprovalVote).where(ApprovalVote.approval_id == approval_id)))
        assert [(v.approve, v.via) for v in votes] == [(False, "web")]


async def test_the_assistants_name_writes_no_markup_into_slack(settings: Any, registry: Any) -> None:
    from tests.test_slack_approvals import ALICE as ALICE_SLACK
    from tests.test_slack_approvals import slack_world, texts

    async with slack_world(settings, registry) as world:
        key = await agent_key(world.companion, ALICE, "<!channel> <https://evil.example|Open> <@U0ADMIN001> &amp;lt;")
        principal = await world.companion.principal_for(key)
        asked_call = await world.companion.gateway.call(
            principal, "harmony_create_action_item", {"meeting_id": world.meeting, "text": "<!here> hi"}
        )
        await world.companion.notices.drain()
        approval_id = asked_call.data["approval_id"]
        message = world.message_to(ALICE_SLACK, approval_id)
        for text in [*texts(message["blocks"]), message["text"]]:
            plain = re.sub(r"<!date\^\d+\^\{date_short_pretty\} at \{time\}\|[^<>]*>", "", text)
            assert "<" not in plain and ">" not in plain, text


# == Agents and CSRF on settings, push, edit and batch ==============================================================


async def test_agent_keys_and_assistant_tokens_cannot_change_where_approvals_go(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], demo_keys: Any
) -> None:
    from tests.oauth_flow import API, code_for, exchange, set_policy, tokens_for

    choices = {"email": False, "slack": False, "push": False}
    for key in (people["agent"], demo_keys.keys[ADMIN]):
        assert (await http.put("/api/v1/me/notifications", headers=bearer(key), json=choices)).status_code == 403
        assert (await http.get("/api/v1/me/notifications", headers=bearer(key))).status_code == 403
        widened = await http.patch(
            "/api/v1/workspace/approval-channels", headers=bearer(key), json={"email_link_max_risk": "delete"}
        )
        assert widened.status_code == 403
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        client_id, _ = await tokens_for(http, browser, scope="api:read api:write approvals", resource=API, email=ADMIN)
        await set_policy(http, demo_keys, client_id, may_decide=True)
        code, verifier = await code_for(browser, client_id, scope="api:read api:write approvals", resource=API)
        token = (await exchange(http, client_id, code, verifier, resource=API)).json()["access_token"]
    assert (await http.put("/api/v1/me/notifications", headers=bearer(token), json=choices)).status_code == 403
    widened = await http.patch(
        "/api/v1/workspace/approval-channels", headers=bearer(token), json={"email_link_max_risk": "delete"}
    )
    assert widened.status_code == 403
    # Nor a device for push, which only a signed-in browser adds.
    device = {"endpoint": "https://push.example.net/x", "keys": {"p256dh": "AAAA", "auth": "AAAA"}}
    for key in (people["agent"], token):
        added = await http.post("/push/subscriptions", headers={**bearer(key), "X-CSRF-Token": "x"}, json=device)
        assert added.status_code in (401, 403)
    current = (await http.get("/api/v1/workspace/approval-channels", headers=bearer(people[ADMIN]))).json()
    assert current["email_link_max_risk"] == "none"


async def test_console_endpoints_refuse_a_post_from_another_site(
    app_client: Any, people: dict[str, str], companion: Companion
) -> None:
    """A page the person visits while signed in posts to each new endpoint: without the session's form token,
    nothing is decided, changed or subscribed."""
    approval_id = await asked(app_client.transport, people["agent"], "csrf target")
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as victim:
        await sign_in(victim, ADMIN)
        await victim.get("/settings")
        posts = [
            victim.post(f"/approvals/{approval_id}/edit", data={"arg.text": "evil"}),
            victim.post("/approvals/batch", data={"ids": approval_id, "action": "approve"}),
            victim.post("/settings/notifications", data={}),
            victim.post("/settings/approval-channels", data={"slack_approvals": "on", "email_link_max_risk": "delete"}),
            victim.post("/settings/approval-channels", data={"csrf": "guess", "email_link_max_risk": "delete"}),
            victim.post(
                "/push/subscriptions",
                content=b'{"endpoint": "https://push.example.net/x", "keys": {"p256dh": "A", "auth": "A"}}',
                headers={"Content-Type": "text/plain"},
            ),
        ]
        answers = await asyncio.gather(*posts)
        assert [answer.status_code for answer in answers] == [403] * len(posts), [a.status_code for a in answers]
        current = (await victim.get("/api/v1/workspace/approval-channels", headers=bearer(people[ADMIN]))).json()
    assert current == {"slack_approvals": False, "email_link_max_risk": "none"}
    assert (await state(companion, approval_id)).status is ApprovalStatus.PENDING
    async with companion.db.session() as session:
        assert list(await session.scalars(select(PushSubscription))) == []


# == Web Push: where it goes and what it carries =====================================================================


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://127.0.0.1/push",
        "https://[::1]/push",
        "https://[::ffff:127.0.0.1]/push",
        "https://[::ffff:a9fe:a9fe]/push",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.7/push",
        "https://0.0.0.0/push",
        "https://2130706433/push",
        "https://0x7f.0.0.1/push",
        "https://[64:ff9b::7f00:1]/push",
        "https://[2002:7f00:1::]/push",
        "http://push.example.net/x",
        "https://user:pass@push.example.net/x",
    ],
)
async def test_a_push_endpoint_on_a_private_address_is_refused(
    app_client: Any, people: dict[str, str], companion: Companion, endpoint: str
) -> None:
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, ALICE)
        page = await browser.get("/settings")
        added = await browser.post(
            "/push/subscriptions",
            json={"endpoint": endpoint, "keys": {"p256dh": "x", "auth": "x"}},
            headers={"X-CSRF-Token": csrf_of(page.text)},
        )
    assert added.status_code == 400, added.text
    async with companion.db.session() as session:
        assert list(await session.scalars(select(PushSubscription))) == []


async def test_a_stored_private_endpoint_is_never_called_and_the_payload_is_only_the_summary(
    companion: Companion, people: dict[str, str]
) -> None:
    [push] = [channel for channel in companion.notices.channels if channel.name == "push"]
    assert isinstance(push, WebPush)
    sent: list[Any] = []

    async def record(request: Any, **_: Any) -> Any:
        sent.append(request)
        raise AssertionError("a private address was called")

    push.http.send = record  # type: ignore[method-assign]
    async with companion.db.transaction() as session:
        alice = await directory.user_by_email(session, ALICE)
        alice.notify_push = True
        # A row written under the development setting, or by hand: delivery checks the address again.
        session.add(
            PushSubscription(
                user_id=alice.id,
                endpoint="https://169.254.169.254/latest",
                p256dh="BAAA",
                auth="AAAAAAAAAAAAAAAAAAAAAA",
            )
        )
    notice = Notice(
        approval_id="apr_x", workspace_id="w", approvers=(alice.id,), asker_id=alice.id,
        summary="Share a note with ann@acme.test\nBcc: eve@evil.test\nText: " + "s3cret " * 100,
        app_name="Memo", tool="memo_share_note", risk="send", assistant="Claude",
        expires_at=utcnow() + timedelta(minutes=5),
    )  # fmt: skip
    await push.waiting(notice)
    assert sent == []
    message = json.loads(payload_of(notice, BASE))
    assert set(message) == {"title", "body", "url"}
    assert len(message["body"]) <= 200 and message["url"] == f"{BASE}/approvals/apr_x"
    assert "token" not in json.dumps(message)


# == Batch: identical calls are grouped only when they are the same request ==========================================


async def test_the_batch_page_does_not_fold_another_persons_call_into_a_row(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str], companion: Companion
) -> None:
    """Mallory (Bob's assistant here) mirrors Alice's pending call exactly. The admin, approving "Alice's" row,
    must not approve Bob's copy without seeing it: a row stands for calls of one person through one assistant."""
    await ask_rule(http, people[ADMIN], admin_may_approve=True)
    alices = await asked(app_client.transport, people["agent"], "send the quarterly numbers")
    bobs = await asked(app_client.transport, people["bob_agent"], "send the quarterly numbers")
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, ADMIN)
        page = await browser.get("/approvals/batch")
    picks = re.findall(r'name="ids" value="([^"]+)"', page.text)
    assert not any(alices in pick and bobs in pick for pick in picks), picks


# == Rules decide on what will run, after an edit too ===============================================================


async def never_share_with_evil(http: httpx2.AsyncClient, admin_key: str) -> None:
    """An admin forbids sharing notes with anyone at evil.test."""
    rule = {
        "effect": "deny", "scope": "workspace", "app": "memo", "tool": "memo_share_note",
        "conditions": [{"arg": "@recipients", "op": "domain_in", "value": ["evil.test"]}],
        "description": "Never share notes with evil.test",
    }  # fmt: skip
    assert (await http.post("/api/v1/rules", headers=bearer(admin_key), json=rule)).status_code == 201


async def test_a_deny_rule_holds_for_an_edited_call_whichever_arguments_the_assistant_retries_with(
    app_client: Any, http: httpx2.AsyncClient, bob_memo: dict[str, str], demo_keys: Any, companion: Companion
) -> None:
    """Bob approves his assistant's share with a change (eve@evil.test in cc). Before the assistant comes back, an
    admin forbids sharing with evil.test. A retry with the changed arguments is denied; the retry with the
    assistant's own arguments must be too: it would run the very same changed call."""
    original = {"to": ["ann@acme.test"], "text": "Q3 numbers"}
    asked_call = await share(app_client.transport, bob_memo["agent"], original)
    approval_id = asked_call.structured_content["approval_id"]
    changed = {"to": ["ann@acme.test"], "cc": ["eve@evil.test"], "text": "Q3 numbers"}
    assert (await edit(http, bob_memo["user"], approval_id, changed)).status_code == 200
    await never_share_with_evil(http, demo_keys.user_keys[ADMIN])
    with_changes = await share(app_client.transport, bob_memo["agent"], {**changed, "bcc": []})
    assert with_changes.is_error, "the changed call is denied when asked for as it is"
    as_asked = await share(app_client.transport, bob_memo["agent"], original)
    assert not any("eve@evil.test" in arguments.get("cc", []) for arguments in shared()), (
        f"the denied call ran through the assistant's original arguments: {as_asked.content}"
    )


async def test_a_deny_rule_added_after_an_edit_holds_for_companion_get_approval_too(
    app_client: Any, http: httpx2.AsyncClient, bob_memo: dict[str, str], demo_keys: Any, companion: Companion
) -> None:
    """The same changed call, run by the assistant through companion_get_approval instead of a retry."""
    original = {"to": ["ann@acme.test"], "text": "Q4 numbers"}
    asked_call = await share(app_client.transport, bob_memo["agent"], original)
    approval_id = asked_call.structured_content["approval_id"]
    changed = {"to": ["ann@acme.test"], "cc": ["eve@evil.test"], "text": "Q4 numbers"}
    assert (await edit(http, bob_memo["user"], approval_id, changed)).status_code == 200
    await never_share_with_evil(http, demo_keys.user_keys[ADMIN])
    async with mcp_client(BASE, bob_memo["agent"], transport=app_client.transport) as client:
        await client.call_tool("companion_get_approval", {"approval_id": approval_id})
    assert not any("eve@evil.test" in arguments.get("cc", []) for arguments in shared())


async def test_baseline_a_deny_rule_added_after_an_approval_stops_the_retry(
    app_client: Any, http: httpx2.AsyncClient, bob_memo: dict[str, str], demo_keys: Any
) -> None:
    """Without an edit the retry is decided on what runs, and a rule added meanwhile stops it (this holds)."""
    asked_call = await share(app_client.transport, bob_memo["agent"], {"to": ["eve@evil.test"], "text": "hi"})
    approval_id = asked_call.structured_content["approval_id"]
    assert (await decide(http, bob_memo["user"], approval_id)).status_code == 200
    await never_share_with_evil(http, demo_keys.user_keys[ADMIN])
    retry = await share(app_client.transport, bob_memo["agent"], {"to": ["eve@evil.test"], "text": "hi"})
    assert retry.is_error and memo.CALLS == []


async def test_a_member_cannot_widen_what_an_emailed_link_decides_nor_turn_slack_on(
    app_client: Any, http: httpx2.AsyncClient, people: dict[str, str]
) -> None:
    widened = await http.patch(
        "/api/v1/workspace/approval-channels", headers=bearer(people[ALICE]),
        json={"email_link_max_risk": "delete", "slack_approvals": True},
    )  # fmt: skip
    assert widened.status_code == 403
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, ALICE)
        posted = await form_post(
            browser, "/settings", "/settings/approval-channels",
            {"slack_approvals": "on", "email_link_max_risk": "delete"},
        )  # fmt: skip
        assert posted.status_code == 403
    current = (await http.get("/api/v1/workspace/approval-channels", headers=bearer(people[ADMIN]))).json()
    assert current == {"slack_approvals": False, "email_link_max_risk": "none"}


async def test_slack_never_offers_approve_for_a_request_it_could_not_show_in_full(settings: Any, registry: Any) -> None:
    """The assistant fills to and cc with long (valid, Gmail-schema-sized: at most 100 each, at most 254 characters)
    addresses so the summary outgrows what a Slack message holds, and puts eve@evil.test last in bcc. The message is
    cut ("open it to read all of it"); Approve must then not be offered there, or the approver approves a recipient
    they were never shown."""
    from tests.test_slack_approvals import ALICE as ALICE_SLACK
    from tests.test_slack_approvals import buttons, slack_world, texts

    async with slack_world(settings, registry) as world:
        async with world.companion.db.transaction() as session:
            alice = await directory.user_by_email(session, ALICE)
            await connect_personal_memo(session, world.companion.box, alice.id)
        domain = "a" * 63 + "." + "b" * 63 + "." + "c" * 56 + ".test"

        def padded(prefix: str, n: int) -> list[str]:
            return [f"{'&' * 58}{prefix}{i:03d}@{domain}" for i in range(n)]

        arguments = {
            "to": padded("t", 100),
            "cc": padded("c", 100),
            "bcc": [*padded("b", 99), "eve@evil.test"],
            "text": "Quarterly numbers",
        }
        assert all(len(address) <= 254 for address in arguments["to"])
        asked_call = await world.companion.gateway.call(world.alice, "memo_share_note", arguments)
        assert asked_call.data is not None and asked_call.data["status"] == "approval_required", asked_call.message
        await world.companion.notices.drain()
        approval_id = asked_call.data["approval_id"]
        message = world.message_to(ALICE_SLACK, approval_id)
        shown = "\n".join(texts(message["blocks"]))
        offered = [button["action_id"] for button in buttons(message)]
        if "eve@evil.test" not in shown:
            assert "approve" not in offered, "Slack offers Approve for a request whose Bcc it did not show"

"""Approvals by e-mail, over real SMTP (aiosmtpd on 127.0.0.1): each approver's e-mail carries a single-use link of
their own; opening it decides nothing, only the page's form does, once; and a call riskier than the workspace lets a
link alone decide needs the approver signed in.

The attacker here is whoever else gets hold of a link (a mail scanner, a forwarded e-mail, another member) or posts
it twice, and the assistant, which must not be able to change who is told or what a link may decide.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import timedelta
from email import message_from_bytes, policy
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from sqlalchemy import select, update

from server.services.approval_flow import approval_view
from store import approval_links
from store.directory import user_by_email
from store.models import Approval, ApprovalLink, ApprovalStatus, AuditEntry, Membership, User, utcnow
from tests.conftest import alices_meeting, mcp_client
from tests.console import csrf_of, form_post, sign_in
from tests.test_console_settings import mailing, postbox  # noqa: F401 (fixtures)

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
ALICE, BOB, ADMIN = "alice@acme.test", "bob@acme.test", "admin@acme.test"
LINK = re.compile(r"http://127\.0\.0\.1:8000(/approvals/(apr_\w+)/by-link)\?token=([\w-]+)")


def browser_for(transport: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=transport, base_url=BASE)


async def link_policy(transport: Any, demo_keys: Any, max_risk: str) -> None:
    async with browser_for(transport) as http:
        answer = await http.patch(
            "/api/v1/workspace/approval-channels",
            headers={"Authorization": f"Bearer {demo_keys.user_keys[ADMIN]}"},
            json={"email_link_max_risk": max_risk},
        )
    assert answer.status_code == 200, answer.text


async def wants_email(transport: Any, email: str) -> None:
    async with browser_for(transport) as browser:
        await sign_in(browser, email)
        saved = await form_post(browser, "/settings", "/settings/notifications", {"notify_approvals": "on"})
    assert saved.status_code == 303


async def ask(companion: Any, transport: Any, demo_keys: Any, text: str) -> str:
    """Alice's assistant asks to add an action item (a "write" call); the approval's id."""
    meeting = await alices_meeting(companion)
    async with mcp_client(BASE, demo_keys.keys[ALICE], transport=transport) as client:
        waiting = await client.call_tool("harmony_create_action_item", {"meeting_id": meeting, "text": text})
    assert waiting.structured_content["status"] == "approval_required"
    return str(waiting.structured_content["approval_id"])


async def mailed_link(companion: Any, box: Any, approval_id: str) -> tuple[str, str]:
    """The link in the e-mail about ``approval_id``: the page's path and the secret."""
    await companion.notices.drain()
    for _, raw in box.messages:
        body = message_from_bytes(raw, policy=policy.default).get_body().get_content()
        for path, found, secret in LINK.findall(body):
            if found == approval_id:
                return path, secret
    raise AssertionError(f"no e-mail links {approval_id}")


async def state_of(companion: Any, approval_id: str) -> Approval:
    async with companion.db.session() as session:
        approval = await session.get(Approval, approval_id)
    assert approval is not None
    return approval


async def links_of(companion: Any, approval_id: str) -> list[ApprovalLink]:
    async with companion.db.session() as session:
        return list(await session.scalars(select(ApprovalLink).where(ApprovalLink.approval_id == approval_id)))


def story(page: str) -> dict[str, str]:
    """What a card tells of the call: its headline, the summary's facts, each argument and why it asks."""
    parts = {
        "headline": r'<h[13] id="title-[^"]+">(?:<a [^>]+>)?(.*?)(?:</a>)?</h[13]>',
        "facts": r'<p class="summary">(.*?)</p>',
        "fields": r'<dl class="fields">(.*?)</dl>',
        "why": r'<dd class="why">(.*?)</dd>',
    }
    found = {name: re.search(pattern, page, re.S) for name, pattern in parts.items()}
    return {name: match.group(1) for name, match in found.items() if match}


async def open_page(browser: httpx2.AsyncClient, path: str, secret: str) -> httpx2.Response:
    return await browser.get(path, params={"token": secret})


async def post(
    browser: httpx2.AsyncClient, path: str, secret: str, decision: str, csrf: str, reason: str = ""
) -> httpx2.Response:
    return await browser.post(path, data={"csrf": csrf, "token": secret, "decision": decision, "reason": reason})


async def decisions_in_audit(companion: Any, approval_id: str) -> list[str]:
    await companion.audit.flush()
    async with companion.db.session() as session:
        events = await session.scalars(
            select(AuditEntry.event).where(
                AuditEntry.approval_id == approval_id,
                AuditEntry.event.in_(["approval.approved", "approval.denied"]),
            )
        )
        return list(events)


@pytest.fixture
async def mailed(mailing, demo_keys):  # noqa: F811 (the fixture imported above)
    """Alice asked for approval e-mails, and e-mailed links decide "write" calls without signing in."""
    companion, transport, box = mailing
    await wants_email(transport, ALICE)
    await link_policy(transport, demo_keys, "write")
    return companion, transport, box


async def test_the_email_carries_a_link_of_its_own_and_opening_it_decides_nothing(mailed, demo_keys):
    companion, transport, box = mailed
    approval_id = await ask(companion, transport, demo_keys, "Send Carol the pricing sheet")
    path, secret = await mailed_link(companion, box, approval_id)
    [(to, raw)] = box.messages
    body = message_from_bytes(raw, policy=policy.default).get_body().get_content()
    assert to == [ALICE] and f"Or open it in the console: {BASE}/approvals/{approval_id}" in body.splitlines(), (
        "the signed-in page's link is there too"
    )
    assert "works once, and only for you" in body and "without signing in" in body
    # Only the secret's digest is stored: a copy of the database opens nothing.
    [link] = await links_of(companion, approval_id)
    assert link.digest == hashlib.sha256(secret.encode()).hexdigest() and secret not in repr(link.__dict__)
    async with companion.db.session() as session:
        alice = await user_by_email(session, ALICE)
    assert link.user_id == alice.id and link.expires_at == (await state_of(companion, approval_id)).expires_at

    # A mail scanner, then the person, then a prefetcher's HEAD: three looks, nothing changes.
    async with browser_for(transport) as scanner, browser_for(transport) as person:
        first = await open_page(scanner, path, secret)
        second = await open_page(person, path, secret)
        head = await scanner.head(path, params={"token": secret})
    assert first.status_code == second.status_code == head.status_code == 200
    assert "frame-ancestors 'none'" in first.headers["content-security-policy"]
    assert first.headers["cache-control"] == "no-store"
    approval = await state_of(companion, approval_id)
    assert approval.status is ApprovalStatus.PENDING and approval.decided_at is None
    assert [link.used_at for link in await links_of(companion, approval_id)] == [None]

    # The page shows the card Alice reads in her inbox, its whole story (the meeting by its title, the summary's
    # facts, each argument, why it asks), and the two buttons.
    async with browser_for(transport) as console:
        await sign_in(console, ALICE)
        inbox_card = (await console.get(f"/approvals/{approval_id}")).text
    tools = companion.registry.tools
    headline = approval_view(companion.gateway.flow, tools, approval)["summary"].split("\n")[0]
    meeting = re.search(r"to meeting (\S+)$", headline)
    assert meeting and meeting.group(1) not in story(second.text)["headline"], "the meeting is named by its title"
    assert story(second.text) == story(inbox_card)
    assert 'value="approve"' in second.text and 'value="deny"' in second.text
    assert f'action="/approvals/{approval_id}/by-link"' in second.text


async def test_a_link_decides_once_and_the_call_then_runs(mailed, demo_keys):
    companion, transport, box = mailed
    approval_id = await ask(companion, transport, demo_keys, "Book the room for Thursday")
    path, secret = await mailed_link(companion, box, approval_id)
    async with browser_for(transport) as person:
        csrf = csrf_of((await open_page(person, path, secret)).text)
        approved = await post(person, path, secret, "approve", csrf)
        assert approved.status_code == 303 and approved.headers["location"] == f"{path}?token={secret}"
        after = await open_page(person, path, secret)
        again = await post(person, path, secret, "deny", csrf, "changed my mind")
    assert "Approved." in after.text and "This link has been used" in after.text
    assert 'value="approve"' not in after.text
    assert again.status_code == 409 and "has been used" in again.text
    approval = await state_of(companion, approval_id)
    async with companion.db.session() as session:
        alice = await user_by_email(session, ALICE)
    assert approval.status is ApprovalStatus.APPROVED
    assert (approval.decided_by, approval.decided_via, approval.reason) == (alice.id, "email", None)
    assert await decisions_in_audit(companion, approval_id) == ["approval.approved"]
    # The assistant's same call now runs, once.
    meeting = await alices_meeting(companion)
    async with mcp_client(BASE, demo_keys.keys[ALICE], transport=transport) as client:
        ran = await client.call_tool(
            "harmony_create_action_item", {"meeting_id": meeting, "text": "Book the room for Thursday"}
        )
    assert ran.is_error is False and "status" not in (ran.structured_content or {})
    assert (await state_of(companion, approval_id)).status is ApprovalStatus.SUCCEEDED


async def test_two_posts_of_one_link_at_once_decide_once(mailed, demo_keys):
    companion, transport, box = mailed
    approval_id = await ask(companion, transport, demo_keys, "Send the minutes")
    path, secret = await mailed_link(companion, box, approval_id)
    async with browser_for(transport) as person:
        csrf = csrf_of((await open_page(person, path, secret)).text)
        answers = await asyncio.gather(
            post(person, path, secret, "approve", csrf),
            post(person, path, secret, "deny", csrf, "no"),
            post(person, path, secret, "approve", csrf),
        )
    assert sorted(answer.status_code for answer in answers) == [303, 409, 409]
    assert len(await decisions_in_audit(companion, approval_id)) == 1
    [link] = await links_of(companion, approval_id)
    assert link.used_at is not None
    assert (await state_of(companion, approval_id)).status in (ApprovalStatus.APPROVED, ApprovalStatus.DENIED)


async def test_a_post_without_the_pages_form_token_decides_nothing(mailed, demo_keys):
    companion, transport, box = mailed
    approval_id = await ask(companion, transport, demo_keys, "Call Erin")
    path, secret = await mailed_link(companion, box, approval_id)
    async with browser_for(transport) as scanner, browser_for(transport) as person:
        blind = await scanner.post(path, data={"token": secret, "decision": "approve"})
        csrf = csrf_of((await open_page(person, path, secret)).text)
        # Another browser's form token is not this one's: the token belongs to the session that opened the page.
        borrowed = await scanner.post(path, data={"token": secret, "decision": "approve", "csrf": csrf})
    assert blind.status_code == borrowed.status_code == 403
    assert (await state_of(companion, approval_id)).status is ApprovalStatus.PENDING
    assert [link.used_at for link in await links_of(companion, approval_id)] == [None]


async def test_a_link_opens_only_its_own_approval_for_its_own_person(mailed, demo_keys):
    companion, transport, box = mailed
    first = await ask(companion, transport, demo_keys, "First thing")
    second = await ask(companion, transport, demo_keys, "Second thing")
    first_path, first_secret = await mailed_link(companion, box, first)
    second_path, _ = await mailed_link(companion, box, second)
    async with browser_for(transport) as person:
        assert (await open_page(person, second_path, first_secret)).status_code == 404
        assert (await open_page(person, first_path, "not-a-token")).status_code == 404
        csrf = csrf_of((await open_page(person, first_path, first_secret)).text)
        crossed = await post(person, second_path, first_secret, "approve", csrf)
        forged = await post(person, first_path, first_secret[:-2] + "xx", "approve", csrf)
    assert crossed.status_code == forged.status_code == 404
    for approval_id in (first, second):
        assert (await state_of(companion, approval_id)).status is ApprovalStatus.PENDING

    # A link minted for someone who may not decide Alice's call (Bob) decides nothing: the approval's own rules
    # hold whatever the link says, and the link stays unspent.
    async with companion.db.transaction() as session:
        bob = await user_by_email(session, BOB)
        approval = await session.get(Approval, first)
        bobs = await approval_links.issue(session, approval_id=first, user_id=bob.id, expires_at=approval.expires_at)
    async with browser_for(transport) as stranger:
        csrf = csrf_of((await open_page(stranger, first_path, bobs)).text)
        refused = await post(stranger, first_path, bobs, "approve", csrf)
    assert refused.status_code == 404
    assert (await state_of(companion, first)).status is ApprovalStatus.PENDING
    assert all(link.used_at is None for link in await links_of(companion, first))


async def test_an_expired_link_is_refused(mailed, demo_keys):
    companion, transport, box = mailed
    approval_id = await ask(companion, transport, demo_keys, "Too late")
    path, secret = await mailed_link(companion, box, approval_id)
    async with browser_for(transport) as person:
        csrf = csrf_of((await open_page(person, path, secret)).text)
        past = utcnow() - timedelta(seconds=1)
        async with companion.db.transaction() as session:
            await session.execute(update(Approval).where(Approval.id == approval_id).values(expires_at=past))
            await session.execute(
                update(ApprovalLink).where(ApprovalLink.approval_id == approval_id).values(expires_at=past)
            )
        opened = await open_page(person, path, secret)
        posted = await post(person, path, secret, "approve", csrf)
    assert opened.status_code == posted.status_code == 410
    assert "Too late" not in opened.text, "an expired link shows nothing of the call"
    assert (await state_of(companion, approval_id)).decided_at is None
    assert [link.used_at for link in await links_of(companion, approval_id)] == [None]


async def test_a_link_still_unexpired_cannot_outlive_its_approval(mailed, demo_keys):
    """The approval's own expiry decides too: a link whose row somehow outlived it decides nothing, and stays
    unspent."""
    companion, transport, box = mailed
    approval_id = await ask(companion, transport, demo_keys, "Later")
    path, secret = await mailed_link(companion, box, approval_id)
    async with browser_for(transport) as person:
        csrf = csrf_of((await open_page(person, path, secret)).text)
        async with companion.db.transaction() as session:
            await session.execute(
                update(Approval).where(Approval.id == approval_id).values(expires_at=utcnow() - timedelta(seconds=1))
            )
        posted = await post(person, path, secret, "approve", csrf)
    assert posted.status_code == 409 and "expired" in posted.text
    assert (await state_of(companion, approval_id)).decided_at is None
    assert [link.used_at for link in await links_of(companion, approval_id)] == [None]


@pytest.mark.parametrize("max_risk", ["none", "read"])
async def test_a_call_riskier_than_the_setting_needs_the_approver_signed_in(mailed, demo_keys, max_risk):
    companion, transport, box = mailed
    await link_policy(transport, demo_keys, max_risk)
    approval_id = await ask(companion, transport, demo_keys, "Risky enough")
    path, secret = await mailed_link(companion, box, approval_id)
    body = message_from_bytes(box.messages[-1][1], policy=policy.default).get_body().get_content()
    assert "you will be asked to sign in before you decide" in body
    async with browser_for(transport) as browser:
        page = await open_page(browser, path, secret)
        assert page.status_code == 200 and "Sign in to decide" in page.text and 'value="approve"' not in page.text
        csrf = csrf_of(page.text)
        # Not signed in: the post goes to sign-in, and comes back to the page after it.
        anonymous = await post(browser, path, secret, "approve", csrf)
        assert anonymous.status_code == 303
        login = urlsplit(anonymous.headers["location"])
        assert login.path == "/login" and parse_qs(login.query)["next"] == [f"{path}?token={secret}"]
        assert [link.used_at for link in await links_of(companion, approval_id)] == [None]

        # Signed in as someone else (Bob): refused, though he holds Alice's link.
        await sign_in(browser, BOB, next_path="/inbox")
        page = await open_page(browser, path, secret)
        assert "this link is for alice@acme.test" in page.text and 'value="approve"' not in page.text
        as_bob = await post(browser, path, secret, "approve", csrf_of(page.text))
        assert as_bob.status_code == 403
        assert (await state_of(companion, approval_id)).status is ApprovalStatus.PENDING
        await browser.post("/logout", data={"csrf": csrf_of(page.text)})

        # Alice signs in from the link's sign-in page and is sent back to decide.
        back = await sign_in(browser, ALICE, next_path=f"{path}?token={secret}")
        assert back.status_code == 303 and back.headers["location"] == f"{path}?token={secret}"
        page = await open_page(browser, path, secret)
        assert 'value="deny"' in page.text
        denied = await post(browser, path, secret, "deny", csrf_of(page.text), "not this week")
        assert denied.status_code == 303
    approval = await state_of(companion, approval_id)
    async with companion.db.session() as session:
        alice = await user_by_email(session, ALICE)
    assert approval.status is ApprovalStatus.DENIED
    assert (approval.decided_by, approval.decided_via, approval.reason) == (alice.id, "email", "not this week")


async def test_within_the_setting_the_link_decides_as_its_approver_whoever_is_signed_in(mailed, demo_keys):
    companion, transport, box = mailed
    approval_id = await ask(companion, transport, demo_keys, "Within the setting")
    path, secret = await mailed_link(companion, box, approval_id)
    async with browser_for(transport) as browser:
        await sign_in(browser, BOB, next_path="/inbox")
        csrf = csrf_of((await open_page(browser, path, secret)).text)
        assert (await post(browser, path, secret, "approve", csrf)).status_code == 303
    async with companion.db.session() as session:
        alice = await user_by_email(session, ALICE)
    approval = await state_of(companion, approval_id)
    assert (approval.status, approval.decided_by) == (ApprovalStatus.APPROVED, alice.id)


async def test_an_approver_who_left_the_workspace_decides_nothing_with_their_link(mailed, demo_keys):
    companion, transport, box = mailed
    approval_id = await ask(companion, transport, demo_keys, "After leaving")
    path, secret = await mailed_link(companion, box, approval_id)
    async with browser_for(transport) as browser:
        csrf = csrf_of((await open_page(browser, path, secret)).text)
        async with companion.db.transaction() as session:
            alice = await session.scalar(select(User).where(User.email == ALICE))
            await session.execute(Membership.__table__.delete().where(Membership.user_id == alice.id))
        refused = await post(browser, path, secret, "approve", csrf)
    assert refused.status_code == 403
    assert (await state_of(companion, approval_id)).status is ApprovalStatus.PENDING


async def test_no_link_is_made_for_someone_who_wants_no_email(mailing, demo_keys):  # noqa: F811
    companion, transport, box = mailing
    approval_id = await ask(companion, transport, demo_keys, "Quietly")
    await companion.notices.drain()
    assert box.messages == [] and await links_of(companion, approval_id) == []


async def test_an_escalation_that_names_email_mails_someone_who_wants_no_email(mailing, demo_keys):  # noqa: F811
    """Once no one has decided in time, the admin's rule outranks the person's everyday choice of channels."""
    companion, transport, box = mailing
    rule = {
        "effect": "ask", "scope": "workspace", "tool": "harmony_create_action_item",
        "escalate_after_minutes": 30, "escalate_by": ["email"],
    }  # fmt: skip
    async with browser_for(transport) as http:
        made = await http.post(
            "/api/v1/rules", headers={"Authorization": f"Bearer {demo_keys.user_keys[ADMIN]}"}, json=rule
        )
    assert made.status_code == 201, made.text
    approval_id = await ask(companion, transport, demo_keys, "Escalated by e-mail")
    await companion.notices.drain()
    assert box.messages == [], "Alice wants no e-mail, and nothing has escalated yet"
    async with companion.db.transaction() as session:
        await session.execute(
            update(Approval).where(Approval.id == approval_id).values(escalate_at=utcnow() - timedelta(seconds=1))
        )
    assert len(await companion.gateway.flow.escalate_due(companion.registry.tools)) == 1
    _, secret = await mailed_link(companion, box, approval_id)
    assert secret and len(box.messages) == 1


async def test_a_link_opened_after_its_approver_voted_says_so_and_offers_no_second_vote(mailed, demo_keys):
    """Two approvals are needed, of Alice and Bob; Alice votes in the console, then opens her e-mailed link."""
    companion, transport, box = mailed
    async with browser_for(transport) as http:
        made = await http.post(
            "/api/v1/rules",
            headers={"Authorization": f"Bearer {demo_keys.user_keys[ADMIN]}"},
            json={
                "effect": "ask", "scope": "workspace", "tool": "harmony_create_action_item",
                "approvers": {"people": [ALICE, BOB], "count": 2},
            },
        )  # fmt: skip
    assert made.status_code == 201, made.text
    approval_id = await ask(companion, transport, demo_keys, "Two of us")
    path, secret = await mailed_link(companion, box, approval_id)
    async with browser_for(transport) as console:
        await sign_in(console, ALICE)
        voted = await form_post(console, f"/approvals/{approval_id}", f"/approvals/{approval_id}/approve")
        assert voted.status_code == 303
    async with browser_for(transport) as person:
        page = await open_page(person, path, secret)
        again = await post(person, path, secret, "approve", csrf_of(page.text))
    shown = " ".join(page.text.split())
    assert "You approved this · 1 of 2 approvals so far; waiting for bob@acme.test." in shown
    assert 'value="approve"' not in page.text and 'value="deny"' not in page.text
    assert again.status_code == 409 and "already decided" in again.text
    assert [link.used_at for link in await links_of(companion, approval_id)] == [None], "a refused post spends nothing"
    assert (await state_of(companion, approval_id)).status is ApprovalStatus.PENDING


async def test_a_link_whose_approver_may_not_see_the_approval_opens_nothing(mailed, demo_keys):
    companion, transport, _ = mailed
    approval_id = await ask(companion, transport, demo_keys, "Only mine")
    async with companion.db.transaction() as session:
        bob = await user_by_email(session, BOB)
        approval = await session.get(Approval, approval_id)
        bobs = await approval_links.issue(
            session, approval_id=approval_id, user_id=bob.id, expires_at=approval.expires_at
        )
    async with browser_for(transport) as stranger:
        page = await open_page(stranger, f"/approvals/{approval_id}/by-link", bobs)
    assert page.status_code == 404 and "Only mine" not in page.text

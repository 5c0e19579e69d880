"""The approvers' flows in Chromium, clicked through as people do, at a desktop's size (1280 by 800) and a phone's
(390 by 844): edit before approving, two of several approvers, the asker refused their own approval, escalation to
the admins, deciding several at once, and a card that names the assistant and the meeting.

Alice's assistants ask over MCP for Harmony action items on one of her demo meetings; an action item in the database
is what a run leaves behind, so counting them proves each call ran once. No page visited scrolls sideways.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select, update

from server.services.demo import DEMO_PASSWORD
from store.directory import add_member, user_by_email, workspace_by_slug
from store.keys import create_key
from store.models import Approval, Meeting, Role, utcnow
from store.passwords import hash_password
from tests.browser.conftest import Console
from tests.browser.console_pages import DESKTOP, PHONE, REDIRECT, register_assistant, sideways
from tests.browser.test_inbox import a_meeting_of, action_items
from tests.conftest import mcp_client
from tests.oauth_browser import authorize_url, pkce

pytestmark = pytest.mark.anyio

CREATE_ITEM = "harmony_create_action_item"
ALICE, BOB, CAROL, ADMIN = "alice@acme.test", "bob@acme.test", "carol@acme.test", "admin@acme.test"


@pytest.fixture(params=[DESKTOP, PHONE], ids=["1280x800", "390x844"])
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    return dict(request.param)


async def person(console: Console, email: str, viewport: dict[str, int]) -> Page:
    """``email`` signed in, in a browser profile of their own, at ``viewport``; on their inbox."""
    page = await console.person(email)
    await page.set_viewport_size(viewport)
    return page


async def fits(page: Page) -> None:
    overflow = await sideways(page)
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"


async def ask(console: Console, arguments: dict[str, str], key: str | None = None) -> Any:
    """An assistant (Alice's, unless ``key`` says which) asks to add an action item."""
    async with mcp_client(console.base_url, key or console.keys.keys[ALICE]) as assistant:
        return await assistant.call_tool(CREATE_ITEM, arguments)


async def asked(console: Console, arguments: dict[str, str], key: str | None = None) -> str:
    waiting = await ask(console, arguments, key)
    assert waiting.structured_content["status"] == "approval_required", waiting.content
    return str(waiting.structured_content["approval_id"])


async def still_waits(console: Console, arguments: dict[str, str]) -> None:
    retry = await ask(console, arguments)
    assert retry.structured_content["status"] == "approval_required", retry.content
    assert await action_items(console, arguments["meeting_id"], arguments["text"]) == 0


async def runs_once(console: Console, arguments: dict[str, str], key: str | None = None) -> Any:
    """The assistant's retry runs the approved call, and a second retry returns what it returned."""
    ran = await ask(console, arguments, key)
    again = await ask(console, arguments, key)
    assert not ran.is_error, ran.content
    assert again.structured_content == ran.structured_content
    return ran


async def workspace_rule(console: Console, **fields: Any) -> None:
    """An admin's rule on action items, saved over the REST API with the admin's own key."""
    body = {"effect": "ask", "scope": "workspace", "app": "harmony", "tool": CREATE_ITEM, **fields}
    admin = {"Authorization": f"Bearer {console.keys.user_keys[ADMIN]}"}
    async with httpx2.AsyncClient(base_url=console.base_url) as http:
        made = await http.post("/api/v1/rules", headers=admin, json=body)
    assert made.status_code == 201, made.text


async def add_carol(console: Console) -> None:
    """Carol joins Acme as a member who signs in with the demo password."""
    async with console.companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        carol, _ = await add_member(session, workspace, email=CAROL, role=Role.MEMBER, name="Carol Chen")
        carol.password_hash = await hash_password(DEMO_PASSWORD)


async def agent_key(console: Console, name: str) -> str:
    """Another assistant of Alice's, with a key of its own."""
    async with console.companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        alice = await user_by_email(session, ALICE)
        return (await create_key(session, workspace_id=workspace.id, user_id=alice.id, name=name)).token


async def test_a_typo_fixed_before_approving_is_what_runs_once_and_the_assistant_is_told(console, viewport):
    meeting = await a_meeting_of(console, ALICE)
    typo = {"meeting_id": meeting, "text": "Send Carol the Q3 propsal"}
    fixed = "Send Carol the Q3 proposal"
    approval_id = await asked(console, typo)

    page = await person(console, ALICE, viewport)
    await page.goto(f"/approvals/{approval_id}")
    await fits(page)
    await page.get_by_role("link", name="Edit before approving").click()
    await page.wait_for_url(f"**/approvals/{approval_id}/edit")
    text = page.get_by_role("textbox", name=re.compile(r"^Text"))
    await expect(text).to_have_value(typo["text"])
    await fits(page)
    await text.fill(fixed)
    await page.get_by_role("button", name="Approve with these changes").click()
    await page.wait_for_url(f"**/approvals/{approval_id}")
    await expect(page.get_by_role("main")).to_contain_text("Approved with your changes.")
    card = page.locator(f"#card-{approval_id}")
    await expect(card).to_contain_text("approved with changes")
    await expect(card).to_contain_text(f"text: “{typo['text']}” → “{fixed}”")
    await fits(page)
    assert await action_items(console, meeting, fixed) == 0, "nothing runs before the assistant asks again"

    ran = await runs_once(console, typo)
    assert ran.content[0].text.startswith(f"Approved with changes: text '{typo['text']}' → '{fixed}'.")
    assert ran.structured_content["changes"] == [{"field": "text", "from": typo["text"], "to": fixed}]
    assert await action_items(console, meeting, fixed) == 1
    assert await action_items(console, meeting, typo["text"]) == 0


async def test_two_of_bob_and_carol_approve_each_in_their_own_browser_and_the_call_runs_once(console, viewport):
    await add_carol(console)
    await workspace_rule(console, approvers={"people": [BOB, CAROL], "count": 2}, description="Bob and Carol both")
    meeting = await a_meeting_of(console, ALICE)
    arguments = {"meeting_id": meeting, "text": "Order the new laptops"}
    approval_id = await asked(console, arguments)

    bob = await person(console, BOB, viewport)
    card = bob.locator(f"#card-{approval_id}")
    await expect(card).to_contain_text("0 of 2 approvals")
    await fits(bob)
    await card.get_by_role("button", name="Approve", exact=True).click()
    await expect(card.locator(".votes")).to_contain_text(f"{BOB}: approved")
    await bob.goto(f"/approvals/{approval_id}")
    card = bob.locator(f"#card-{approval_id}")
    await expect(card.locator(".badges")).to_contain_text("pending")
    await expect(card.locator(".group")).to_contain_text("1 of 2 approvals")
    await fits(bob)
    await still_waits(console, arguments)

    carol = await person(console, CAROL, viewport)
    await carol.goto(f"/approvals/{approval_id}")
    card = carol.locator(f"#card-{approval_id}")
    await expect(card.locator(".votes")).to_contain_text(f"{BOB}: approved")
    await card.get_by_role("button", name="Approve", exact=True).click()
    await expect(card.locator(".badges")).to_contain_text("approved")
    await expect(card.locator(".group")).to_contain_text("2 of 2 approvals")
    await fits(carol)

    await runs_once(console, arguments)
    assert await action_items(console, meeting, arguments["text"]) == 1


async def test_the_person_who_asked_cannot_approve_their_own_call(console, viewport):
    await workspace_rule(
        console, approvers={"people": [ALICE, BOB]}, no_self_approval=True, description="Someone else approves"
    )
    meeting = await a_meeting_of(console, ALICE)
    arguments = {"meeting_id": meeting, "text": "Expense my team dinner"}
    approval_id = await asked(console, arguments)

    page = await person(console, ALICE, viewport)
    await page.goto(f"/approvals/{approval_id}")
    card = page.locator(f"#card-{approval_id}")
    await expect(card.locator(".group")).to_contain_text("not by whoever asked")
    await expect(card.get_by_role("link", name="Edit before approving")).to_have_count(0)
    await fits(page)
    approve = card.get_by_role("button", name="Approve", exact=True)
    if await approve.count():
        # The card offers Approve to the asker still; pressing it is refused, in words, on the card.
        await approve.click()
        await expect(card.locator(".cover")).to_contain_text("someone else must approve")
        await fits(page)
        await page.reload()
    await expect(card.locator(".badges")).to_contain_text("pending")
    await still_waits(console, arguments)


async def bob_then_the_admins(console: Console, text: str) -> dict[str, str]:
    """A rule that gives Bob a minute before the admins are added, and a call of Alice's assistant under it."""
    await workspace_rule(
        console, approvers={"people": [BOB]}, escalate_after_minutes=1, escalate_to="admins",
        description="Bob, then the admins",
    )  # fmt: skip
    arguments = {"meeting_id": await a_meeting_of(console, ALICE), "text": text}
    await asked(console, arguments)
    return arguments


async def a_minute_passes(console: Console) -> str:
    """No one decides within the minute, and the sweep each server runs escalates the call: its id."""
    async with console.companion.db.transaction() as session:
        await session.execute(update(Approval).values(escalate_at=utcnow() - timedelta(seconds=1)))
    escalated = await console.companion.gateway.flow.escalate_due(console.companion.registry.tools)
    assert len(escalated) == 1
    return escalated[0].id


async def test_an_undecided_call_escalates_to_the_admins_who_approve_it_and_the_audit_says_so(console, viewport):
    arguments = await bob_then_the_admins(console, "Renew the office lease")
    admin = await person(console, ADMIN, viewport)
    await expect(admin.get_by_text("Nothing waits for you")).to_be_visible()
    await fits(admin)

    approval_id = await a_minute_passes(console)
    await admin.goto("/inbox")
    card = admin.locator(f"#card-{approval_id}")
    await expect(card.locator(".group")).to_contain_text("admins added")
    await fits(admin)
    await card.get_by_role("button", name="Approve", exact=True).click()
    await expect(card.locator(".badges")).to_contain_text("approved")
    await runs_once(console, arguments)
    assert await action_items(console, arguments["meeting_id"], arguments["text"]) == 1

    await console.companion.audit.flush()
    await admin.goto("/audit")
    await expect(admin.locator("tbody tr").filter(has_text="Admins added as approvers")).to_have_count(1)
    await fits(admin)


async def test_the_admins_are_counted_in_only_once_it_escalates_and_their_open_inbox_takes_it_in(console):
    await bob_then_the_admins(console, "Renew the parking permits")
    admin = await person(console, ADMIN, DESKTOP)
    approvals = admin.get_by_role("navigation", name="Main").get_by_role("link", name=re.compile(r"^Approvals"))
    await admin.goto("/settings")
    await expect(approvals).to_have_accessible_name("Approvals")
    await admin.goto("/inbox")
    await expect(admin.get_by_text("Nothing waits for you")).to_be_visible()

    approval_id = await a_minute_passes(console)
    await expect(admin.locator(f"#card-{approval_id}")).to_be_visible(timeout=8000)
    await admin.goto("/settings")
    await expect(approvals).to_have_accessible_name("Approvals 1 waiting")


async def test_several_approved_at_once_each_run_once_and_the_same_form_again_decides_nothing(console, viewport):
    meeting = await a_meeting_of(console, ALICE)
    second = await agent_key(console, "second assistant")
    first = console.keys.keys[ALICE]
    room = {"meeting_id": meeting, "text": "Book the boardroom"}
    lunch = {"meeting_id": meeting, "text": "Order lunch"}
    calls = [(first, room), (second, room), (first, lunch)]
    for key, arguments in calls:
        await asked(console, arguments, key)

    page = await person(console, ALICE, viewport)
    await page.get_by_role("link", name="Decide several").click()
    await page.wait_for_url("**/approvals/batch")
    await expect(page.get_by_text("2 identical requests")).to_be_visible()
    await expect(page.get_by_role("checkbox")).to_have_count(2)
    await fits(page)
    await page.get_by_role("checkbox", name=re.compile("Book the boardroom")).check()
    await page.get_by_role("checkbox", name=re.compile("Order lunch")).check()
    await page.get_by_label("Reason").fill("Booked for the offsite")
    # What the form sends on Approve selected, kept to send a second time.
    sent = await page.evaluate(
        """() => { const data = new FormData(document.querySelector("form.batch"));
                   data.append("action", "approve"); return new URLSearchParams(data).toString(); }"""
    )
    await page.get_by_role("button", name="Approve selected").click()
    await expect(page.get_by_role("heading", name="3 decided", exact=True)).to_be_visible()
    await expect(page.locator(".batch-results li")).to_have_text([re.compile(r": Approved\.$")] * 3)
    await expect(page.get_by_text("Nothing waits for you")).to_be_visible()
    await fits(page)

    again = await page.request.post(
        "/approvals/batch", data=sent, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert again.status == 200
    assert "0 decided, 3 refused" in await again.text()
    await page.goto("/inbox/history")
    await expect(page.locator("article.approval", has_text="“Booked for the offsite”")).to_have_count(3)
    await fits(page)

    for key, arguments in calls:
        await runs_once(console, arguments, key)
    assert await action_items(console, meeting, room["text"]) == 2, "two assistants asked; each call ran once"
    assert await action_items(console, meeting, lunch["text"]) == 1


async def oauth_assistant(console: Console, page: Page, name: str) -> str:
    """An assistant named ``name`` registers itself and the person on ``page`` lets it act for them: its token."""
    client_id = await register_assistant(console.base_url, name, "https://claude.ai")
    verifier, challenge = pkce()
    mcp = f"{console.base_url}/mcp"
    # The assistant's own callback is not served here: the browser's arrival there carries the code.
    await page.route(f"{REDIRECT}*", lambda route: route.fulfill(body="back at the assistant"))
    consent = authorize_url(
        console.base_url, client_id=client_id, redirect_uri=REDIRECT, code_challenge=challenge,
        code_challenge_method="S256", scope="tools", resource=mcp, state="s",
    )  # fmt: skip
    await page.goto(consent)
    await fits(page)
    await page.get_by_role("button", name="Allow").click()
    await page.wait_for_url(f"{REDIRECT}?*")
    code = parse_qs(urlsplit(page.url).query)["code"][0]
    async with httpx2.AsyncClient(base_url=console.base_url) as http:
        token = await http.post(
            "/token",
            data={
                "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                "redirect_uri": REDIRECT, "client_id": client_id, "resource": mcp,
            },
        )  # fmt: skip
    assert token.status_code == 200, token.text
    return str(token.json()["access_token"])


async def test_a_card_names_the_assistant_and_the_meeting_by_its_title(console, viewport):
    meeting = await a_meeting_of(console, ALICE)
    async with console.companion.db.session() as session:
        title = await session.scalar(select(Meeting.title).where(Meeting.id == meeting))
    assert title
    page = await person(console, ALICE, viewport)
    cursor, claude = await agent_key(console, "Cursor"), await oauth_assistant(console, page, "Claude")
    asks = [("Cursor", cursor, "Send the deck"), ("Claude", claude, "Book a follow-up")]
    shown = [(await asked(console, {"meeting_id": meeting, "text": text}, key), name, text) for name, key, text in asks]

    await page.goto("/inbox")
    for approval_id, assistant, text in shown:
        card = page.locator(f"#card-{approval_id}")
        await expect(card.locator(".asked-by")).to_have_text(f"{assistant} on behalf of you")
        await expect(card.get_by_role("heading")).to_have_text(f"Add the action item “{text}” to meeting “{title}”")
        field = card.locator(".fields .arg", has_text="Meeting")
        await expect(field.locator(".named")).to_have_text(title)
    await fits(page)
    by_claude = shown[1][0]
    await page.goto(f"/approvals/{by_claude}")
    await expect(page.locator(f"#card-{by_claude} .asked-by")).to_have_text("Claude on behalf of you")
    await fits(page)

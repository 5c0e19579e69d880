"""In Chromium: an assistant's call waits, and the person decides it in the inbox without reloading."""

from __future__ import annotations

import pytest
from playwright.async_api import expect
from sqlalchemy import func, select

from store.models import ActionItem, Meeting, User
from tests.browser.conftest import Console, sign_in
from tests.conftest import mcp_client

pytestmark = pytest.mark.anyio


async def a_meeting_of(console: Console, email: str) -> str:
    async with console.companion.db.session() as session:
        owner = await session.scalar(select(User.id).where(User.email == email))
        meeting = await session.scalar(select(Meeting.id).where(Meeting.owner_id == owner).limit(1))
    assert meeting is not None
    return meeting


async def action_items(console: Console, meeting_id: str, text: str) -> int:
    async with console.companion.db.session() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(ActionItem)
                .where(ActionItem.meeting_id == meeting_id, ActionItem.text == text)
            )
            or 0
        )


async def ask(console: Console, arguments: dict[str, str]):
    async with mcp_client(console.base_url, console.keys.keys["alice@acme.test"]) as assistant:
        return await assistant.call_tool("harmony_create_action_item", arguments)


async def test_sign_in_takes_a_password_and_says_when_it_is_wrong(console):
    page = await console.person()
    await page.goto("/inbox")
    await expect(page).to_have_url(f"{console.base_url}/login?next=/inbox")
    await page.get_by_label("E-mail").fill("alice@acme.test")
    await page.get_by_label("Password").fill("not her password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That e-mail address and password do not match.")
    await sign_in(page, "alice@acme.test")
    await expect(page.get_by_role("heading", name="Approvals", exact=True)).to_be_visible()
    await expect(page.get_by_text("Nothing waits for you")).to_be_visible()


async def test_an_approval_in_the_open_inbox_lets_the_assistant_retry_run_once(console):
    page = await console.person("alice@acme.test")
    meeting = await a_meeting_of(console, "alice@acme.test")
    arguments = {"meeting_id": meeting, "text": "Send Carol the Q3 proposal"}

    waiting = await ask(console, arguments)
    assert waiting.structured_content["status"] == "approval_required"
    card = page.locator(f"#card-{waiting.structured_content['approval_id']}")
    await expect(card).to_contain_text("Add the action item “Send Carol the Q3 proposal”", timeout=8000)
    await card.get_by_text("Full arguments").click()
    await expect(card.locator("pre")).to_contain_text(meeting)
    await card.get_by_role("button", name="Approve", exact=True).click()
    await expect(card).to_contain_text("Approved. The assistant's call runs when it asks again.")
    assert await action_items(console, meeting, arguments["text"]) == 0

    ran = await ask(console, arguments)
    again = await ask(console, arguments)
    assert not ran.is_error and ran.structured_content == again.structured_content
    assert await action_items(console, meeting, arguments["text"]) == 1


async def test_a_denial_with_a_reason_is_what_the_assistant_reads(console):
    page = await console.person("alice@acme.test")
    meeting = await a_meeting_of(console, "alice@acme.test")
    arguments = {"meeting_id": meeting, "text": "Email the whole customer list"}
    waiting = await ask(console, arguments)
    card = page.locator(f"#card-{waiting.structured_content['approval_id']}")
    await card.get_by_label("Reason, if you deny").fill("Not the whole list, only Globex")
    await card.get_by_role("button", name="Deny").click()
    await expect(card).to_contain_text("denied")
    retry = await ask(console, arguments)
    assert retry.is_error and "Not the whole list, only Globex" in retry.content[0].text
    assert await action_items(console, meeting, arguments["text"]) == 0


async def test_a_post_without_the_csrf_token_is_refused(console):
    page = await console.person("alice@acme.test")
    meeting = await a_meeting_of(console, "alice@acme.test")
    waiting = await ask(console, {"meeting_id": meeting, "text": "Book the room"})
    approval_id = waiting.structured_content["approval_id"]
    forged = await page.request.post(f"/approvals/{approval_id}/approve", form={"remember": "no"})
    assert forged.status == 403
    await page.goto(f"/approvals/{approval_id}")
    await expect(page.locator(f"#card-{approval_id}")).to_contain_text("pending")


async def test_approve_and_remember_for_an_hour_lets_the_next_such_call_run_without_asking(console):
    page = await console.person("alice@acme.test")
    meeting = await a_meeting_of(console, "alice@acme.test")
    arguments = {"meeting_id": meeting, "text": "Share the deck"}
    waiting = await ask(console, arguments)
    card = page.locator(f"#card-{waiting.structured_content['approval_id']}")
    await card.get_by_role("button", name="Approve and remember for 1 hour").click()
    await expect(card).to_contain_text("Calls like this are approved for the next hour.")
    await expect(card.get_by_role("link", name="a rule approves calls like this")).to_be_visible()
    assert not (await ask(console, arguments)).is_error

"""In Chromium: the console never decides what the person did not choose (issue 18, class 9).

Enter in a deny reason denies, with and without JavaScript; focus moves to the next card after a decision;
a new request shows a bar instead of moving the buttons under the pointer; a confirmation stays until dismissed.
"""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import Page, expect

from store.models import Approval, ApprovalStatus
from tests.browser.conftest import Console, sign_in
from tests.browser.test_inbox import a_meeting_of, ask

pytestmark = pytest.mark.anyio


async def status_of(console: Console, approval_id: str) -> tuple[ApprovalStatus, str | None]:
    async with console.companion.db.session() as session:
        approval = await session.get(Approval, approval_id)
    assert approval is not None
    return approval.status, approval.reason


async def waiting(console: Console, text: str) -> str:
    meeting = await a_meeting_of(console, "alice@acme.test")
    result = await ask(console, {"meeting_id": meeting, "text": text})
    assert result.structured_content["status"] == "approval_required"
    return result.structured_content["approval_id"]


async def focused_card(page: Page) -> str | None:
    return await page.evaluate("document.activeElement && document.activeElement.closest('article')?.id || null")


async def test_enter_in_the_reason_denies_and_never_approves(console):
    approval_id = await waiting(console, "Email the whole customer list")
    page = await console.person("alice@acme.test")
    card = page.locator(f"#card-{approval_id}")
    reason = card.get_by_label("Reason, if you deny")
    await reason.fill("Only Globex, not everyone")
    await reason.press("Enter")
    await expect(card).to_contain_text("Denied.")
    assert await status_of(console, approval_id) == (ApprovalStatus.DENIED, "Only Globex, not everyone")


async def test_enter_in_the_reason_denies_without_javascript_too(console):
    approval_id = await waiting(console, "Email the board")
    context = await console.browser.new_context(base_url=console.base_url, java_script_enabled=False)
    console.contexts.append(context)
    page = await context.new_page()
    await sign_in(page, "alice@acme.test")
    reason = page.locator(f"#card-{approval_id}").get_by_label("Reason, if you deny")
    await reason.fill("Not the board")
    await reason.press("Enter")
    await page.wait_for_url("**/inbox")
    await expect(page.get_by_role("status").first).to_have_text("Denied.")
    assert await status_of(console, approval_id) == (ApprovalStatus.DENIED, "Not the board")


async def test_after_a_decision_focus_moves_to_the_next_card_then_to_no_more_requests(console):
    older = await waiting(console, "Book the room")
    newer = await waiting(console, "Order the pizza")
    page = await console.person("alice@acme.test")
    first, second = page.locator(f"#card-{newer}"), page.locator(f"#card-{older}")
    await expect(page.locator("#pending article")).to_have_count(2)

    await first.get_by_role("button", name="Approve", exact=True).click()
    await expect(first).to_contain_text("Approved.")
    await expect(second.get_by_role("link", name="Add the action item “Book the room”", exact=False)).to_be_focused()
    assert await focused_card(page) == f"card-{older}"
    await expect(page.locator("#announcer")).to_contain_text("Approved.")
    await expect(page.locator("#announcer")).to_contain_text("Next: Add the action item “Book the room”")

    # A reason and Enter deny the last card; focus lands on "No more requests".
    await second.get_by_label("Reason, if you deny").focus()
    await page.keyboard.type("Not today")
    await page.keyboard.press("Enter")
    await expect(second).to_contain_text("Denied.")
    await expect(page.locator("#all-done")).to_be_focused()
    await expect(page.locator("#announcer")).to_contain_text("No more requests wait for you.")
    assert (await status_of(console, newer))[0] is ApprovalStatus.APPROVED
    assert await status_of(console, older) == (ApprovalStatus.DENIED, "Not today")


async def test_a_new_request_shows_a_bar_and_moves_no_button(console):
    shown = await waiting(console, "Send the minutes")
    page = await console.person("alice@acme.test")
    approve = page.locator(f"#card-{shown}").get_by_role("button", name="Approve", exact=True)
    await expect(approve).to_be_visible()
    await page.wait_for_timeout(1500)  # the stream's first event, and the refresh it starts, are done
    before = await approve.bounding_box()
    await approve.hover()

    arrived = await waiting(console, "Send the slides")
    bar = page.locator("#new-requests")
    await expect(bar).to_be_visible(timeout=8000)
    await expect(bar).to_contain_text("1 new request")
    assert await approve.bounding_box() == before
    await expect(page.locator("#pending article")).to_have_count(1)
    await expect(page.locator("#pending-count")).to_have_text("2")

    await page.wait_for_timeout(700)  # a control that just appeared ignores clicks for a moment
    await bar.get_by_role("button", name="Show").click()
    await expect(page.locator("#pending article")).to_have_count(2)
    await expect(page.locator("#pending article").first).to_have_id(f"card-{arrived}")
    await expect(bar).to_be_hidden()
    assert await focused_card(page) == f"card-{arrived}"


async def test_a_card_decided_elsewhere_stays_in_place_under_a_note(console):
    gone = await waiting(console, "Share the roadmap")
    page = await console.person("alice@acme.test")
    card = page.locator(f"#card-{gone}")
    approve = card.get_by_role("button", name="Approve", exact=True)
    await expect(approve).to_be_visible()
    before = await card.bounding_box()

    elsewhere = await console.person("alice@acme.test")
    await elsewhere.goto(f"/approvals/{gone}")
    await elsewhere.get_by_role("button", name="Deny").click()
    await expect(elsewhere.locator(f"#card-{gone}")).to_contain_text("Denied.")

    await expect(card).to_contain_text("No longer waiting", timeout=8000)
    assert await card.bounding_box() == before
    await expect(approve).to_be_disabled()
    await page.wait_for_timeout(700)  # a control that just appeared ignores clicks for a moment
    await card.get_by_role("button", name="Dismiss").click()
    await expect(card).to_have_count(0)


async def test_the_confirmation_stays_until_dismissed(console):
    approval_id = await waiting(console, "Call Erin")
    page = await console.person("alice@acme.test")
    card = page.locator(f"#card-{approval_id}")
    height = (await card.bounding_box())["height"]
    await card.get_by_role("button", name="Approve", exact=True).click()
    confirmation = card.get_by_text("Approved. The assistant's call runs when it asks again.")
    await expect(confirmation).to_be_visible()
    # The decided card keeps its height, so nothing below it slides under the pointer.
    assert (await card.bounding_box())["height"] >= height - 1
    # The stream says the pending set changed and the list is fetched again: the confirmation stays.
    await asyncio.sleep(4)
    await expect(confirmation).to_be_visible()
    assert (await card.bounding_box())["height"] >= height - 1
    await card.get_by_role("button", name="Dismiss this message").click()
    await expect(card).to_have_count(0)
    await expect(page.locator("#all-done")).to_be_visible()


async def test_on_the_approval_page_the_confirmation_stays_and_takes_focus(console):
    approval_id = await waiting(console, "Invite Dana")
    page = await console.person("alice@acme.test")
    await page.goto(f"/approvals/{approval_id}")
    await page.get_by_role("button", name="Approve", exact=True).click()
    confirmation = page.locator(f"#done-{approval_id}")
    await expect(confirmation).to_be_focused()
    await asyncio.sleep(2)
    await expect(confirmation).to_be_visible()
    assert (await status_of(console, approval_id))[0] is ApprovalStatus.APPROVED


async def test_the_approval_page_says_when_the_request_was_decided_elsewhere(console):
    approval_id = await waiting(console, "Cancel the offsite")
    page = await console.person("alice@acme.test")
    await page.goto(f"/approvals/{approval_id}")
    card = page.locator(f"#card-{approval_id}")
    approve = card.get_by_role("button", name="Approve", exact=True)
    await expect(approve).to_be_visible()
    await page.wait_for_timeout(1500)
    before = await card.bounding_box()

    inbox = await console.person("alice@acme.test")
    await inbox.locator(f"#card-{approval_id}").get_by_role("button", name="Deny").click()
    await expect(inbox.locator(f"#card-{approval_id}")).to_contain_text("Denied.")

    await expect(card).to_contain_text("No longer waiting: it is denied now", timeout=8000)
    await expect(approve).to_be_disabled()
    assert await card.bounding_box() == before
    assert (await status_of(console, approval_id))[0] is ApprovalStatus.DENIED


async def test_after_the_last_card_focus_goes_to_the_new_requests_waiting_behind_the_bar(console):
    shown = await waiting(console, "Print the agenda")
    page = await console.person("alice@acme.test")
    card = page.locator(f"#card-{shown}")
    await expect(card).to_be_visible()
    await page.wait_for_timeout(1500)
    await waiting(console, "Print the minutes")
    await expect(page.locator("#new-requests")).to_be_visible(timeout=8000)
    await card.get_by_role("button", name="Approve", exact=True).click()
    await expect(card).to_contain_text("Approved.")
    await expect(page.get_by_role("button", name="Show")).to_be_focused()
    await expect(page.locator("#announcer")).to_contain_text("1 new request waits: press Show to see them.")
    await expect(page.locator("#all-done")).to_be_hidden()

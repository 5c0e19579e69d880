"""In Chromium, every console page on a phone (390 by 844) and a desktop (1280 by 800), Alice's and those others see
(an admin's rule form naming approvers, a card after its approver voted, an e-mailed link's page): nothing scrolls
sideways, a menu stands in for the sidebar on the phone, axe-core finds no serious or critical accessibility
problem, and the approval page shows Approve and Deny on the first screen.

axe-core comes from npm, pinned in tests/conformance/package.json (``python -m tests.node`` installs it, as
``scripts/test`` does); nothing is fetched while the tests run.
"""

from __future__ import annotations

import json
import os
import re

import pytest
from playwright.async_api import Page, expect

from manifests import MANIFEST_DIR
from tests.browser.console_pages import DESKTOP, PHONE, every_page, sideways
from tests.node import AXE
from tools.registry import Registry

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(MANIFEST_DIR)


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        if os.environ.get("COMPANION_REQUIRE_BROWSER") == "1":
            pytest.fail(f"axe-core is required but {AXE} is missing: run python -m tests.node")
        pytest.skip("axe-core is not installed: run python -m tests.node")
    return AXE.read_text()


# The innermost elements that reach past the window's right edge, to say what makes a page scroll sideways.
WIDEST = """() => Array.from(document.querySelectorAll('body *'))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .filter(e => !Array.from(e.children).some(c => c.getBoundingClientRect().right > window.innerWidth + 1))
  .slice(0, 5)
  .map(e => e.tagName.toLowerCase() + (e.className ? '.' + String(e.className).split(' ').join('.') : '')
    + ' ' + Math.round(e.getBoundingClientRect().right) + 'px')"""


async def serious_problems(page: Page, axe_source: str) -> list[str]:
    """What axe-core finds of serious or critical impact, one line each."""
    await page.evaluate(axe_source + ";undefined")
    found = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.help + ' — ' + v.nodes.map(n => n.target.join(' ')).slice(0, 4).join(', '))"
    )
    return list(found)


async def test_every_page_fits_a_phone_and_a_desktop_and_axe_finds_nothing_serious(console, axe_source):
    pages = await every_page(console)
    problems: dict[str, list[str]] = {}
    for viewport in (DESKTOP, PHONE):
        size = f"{viewport['width']}x{viewport['height']}"
        outsider = await console.person()
        await outsider.set_viewport_size(viewport)
        await outsider.goto("/login")
        found = {"login": (await sideways(outsider), await serious_problems(outsider, axe_source))}
        alice = await console.person("alice@acme.test")
        await alice.set_viewport_size(viewport)
        for name, path in pages.paths.items():
            await alice.goto(path)
            found[name] = (await sideways(alice), await serious_problems(alice, axe_source))
            if found[name][0] > 0:
                found[name][1].extend(await alice.evaluate(WIDEST))
        if viewport is PHONE:
            await alice.goto("/inbox")
            await alice.get_by_role("button", name="Menu").click()
            found["inbox with the menu open"] = (await sideways(alice), await serious_problems(alice, axe_source))
        await alice.goto(pages.consent)
        await expect(alice.get_by_role("heading", name="Allow Claude to act for you?")).to_be_visible()
        found["consent"] = (await sideways(alice), await serious_problems(alice, axe_source))
        others: dict[str | None, Page] = {}
        for name, (email, path) in pages.seen_by.items():
            if email not in others:
                others[email] = await console.person(email)
                await others[email].set_viewport_size(viewport)
            other = others[email]
            await other.goto(path)
            found[name] = (await sideways(other), await serious_problems(other, axe_source))
            if found[name][0] > 0:
                found[name][1].extend(await other.evaluate(WIDEST))
        for name, (overflow, serious) in found.items():
            if overflow > 0:
                problems.setdefault(f"{name} at {size}", []).append(f"scrolls sideways by {overflow}px")
            if serious:
                problems.setdefault(f"{name} at {size}", []).extend(serious)
    assert not problems, json.dumps(problems, indent=2, ensure_ascii=False)


async def test_on_a_phone_the_approval_page_shows_approve_and_deny_first_and_the_menu_works_by_keyboard(console):
    pages = await every_page(console)
    page = await console.person("alice@acme.test")
    await page.set_viewport_size(PHONE)
    for approval in (pages.approval, pages.mail):
        await page.goto(f"/approvals/{approval}")
        card = page.locator(f"#card-{approval}")
        for button in ("Approve", "Deny"):
            box = await card.get_by_role("button", name=button, exact=True).bounding_box()
            assert box is not None and box["y"] + box["height"] <= PHONE["height"], (
                f"{button} is below the first screen"
            )
        assert await sideways(page) <= 0

    # The sidebar is a Menu button with the number waiting; its links show on Enter and go away on Escape.
    menu = page.get_by_role("button", name="Menu")
    await expect(menu).to_have_accessible_name("Menu 2 waiting")
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav).to_be_hidden()
    await menu.focus()
    await page.keyboard.press("Enter")
    await expect(menu).to_have_attribute("aria-expanded", "true")
    await expect(nav.get_by_role("link", name="Approvals 2 waiting")).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Workspace")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(nav).to_be_hidden()
    await expect(menu).to_be_focused()
    await expect(page).to_have_title(re.compile(r"^\(2\) Approve: "))

    # On a desktop the sidebar is as it was: every link in sight, no Menu button.
    await page.set_viewport_size(DESKTOP)
    await expect(nav).to_be_visible()
    await expect(menu).to_be_hidden()


async def test_a_card_names_the_assistant_and_shows_the_meetings_title_not_its_id(console):
    pages = await every_page(console)
    page = await console.person("alice@acme.test")
    await page.set_viewport_size(PHONE)
    await page.goto("/inbox")
    await expect(page).to_have_title("(2) Approvals · Harmony Companion")
    card = page.locator(f"#card-{pages.approval}")
    await expect(card.locator(".meta")).to_contain_text("demo agent key on behalf of you")
    await expect(card.get_by_role("heading")).to_have_text(
        f"Add the action item “Send Carol the pricing sheet” to meeting “{pages.meeting_title}”"
    )
    meeting = card.locator(".fields .arg", has_text="Meeting")
    await expect(meeting.locator(".named")).to_have_text(pages.meeting_title)
    mail = page.locator(f"#card-{pages.mail}")
    await expect(mail.locator(".message-head")).to_contain_text("erin@partner.io")
    await expect(mail.locator(".message-body")).to_contain_text("the Q3 proposal is attached.")
    await expect(mail.locator(".why")).to_have_text(
        "The workspace rule “Mail outside acme.test asks” asks for a person's approval."
    )

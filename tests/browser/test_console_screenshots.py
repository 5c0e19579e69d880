"""Pictures of the console where a person decides: the inbox with two cards (and the "new requests" bar), the
approval page, the settings page and the connected assistants, and every other page, at a desktop width and a
phone's.

Set ``COMPANION_CONSOLE_SHOTS=/some/folder`` to keep them; otherwise they go to a scratch folder, so the pages
are at least rendered, non-empty and without a sideways scroll at both widths every run. The pictures in the
documentation (the inbox on a phone and a desktop, the approval page on a phone) go to ``COMPANION_SCREENSHOTS``
when ``scripts/screenshots`` sets it.

The cards show what the one summary renderer (tools/summary.py) made of the calls: nothing is staged for them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx2
import pytest
from playwright.async_api import expect

from manifests import MANIFEST_DIR
from tests.browser.console_pages import DESKTOP, PHONE, REDIRECT, every_page, register_assistant, voted_on
from tests.browser.test_inbox import a_meeting_of, ask
from tests.browser.test_rules import settled
from tests.browser.test_screenshots import connect_alices_apps
from tests.conftest import mcp_client
from tests.oauth_browser import authorize_url, consent, pkce, query_of
from tools.registry import Registry

pytestmark = pytest.mark.anyio

WIDTHS = (1280, 390)
# The rule form's "Who approves" at the top of the window, below the phone's sticky menu bar (the sidebar on a
# desktop stands beside the page, and covers none of it).
SCROLL_TO_WHO_APPROVES = """() => {
  const section = document.getElementById('approvers-title').closest('section');
  const bar = document.querySelector('.sidebar').getBoundingClientRect();
  const covered = bar.width >= window.innerWidth ? bar.height : 0;
  window.scrollTo(0, section.getBoundingClientRect().top + window.scrollY - covered - 12);
}"""
LONG = "carol@globex.example.mail-relay-europe-west-and-north-backup.evil.example"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(MANIFEST_DIR)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("COMPANION_CONSOLE_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def docs_shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("COMPANION_SCREENSHOTS") or tmp_path / "docs")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def no_sideways_scroll(page) -> None:
    overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


async def test_screenshots_of_the_inbox_the_approval_page_and_settings(console, shots):
    await connect_alices_apps(console)
    meeting = await a_meeting_of(console, "alice@acme.test")
    await ask(console, {"meeting_id": meeting, "text": "Send Carol the pricing sheet"})
    async with mcp_client(console.base_url, console.keys.keys["alice@acme.test"]) as assistant:
        mail = await assistant.call_tool(
            "email_send_email",
            {
                "to": ["bob@client.com"],
                "cc": ["dana@client.com", "erin@partner.io"],
                "bcc": [LONG],
                "subject": "Q3 proposal",
                "body_text": "Hi Bob, the Q3 proposal is attached.",
            },
        )
    email_id = mail.structured_content["approval_id"]

    page = await console.person("alice@acme.test")
    await expect(page.locator("#pending article")).to_have_count(2)
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 900})
        await page.goto("/inbox")
        await expect(page.locator("#pending article")).to_have_count(2)
        await no_sideways_scroll(page)
        await page.screenshot(path=shots / f"inbox-{width}.png", full_page=True)

        # The full arguments are on the approval's own page; a list links to them.
        await page.goto(f"/approvals/{email_id}")
        await page.locator(f"#card-{email_id} details summary").click()
        await no_sideways_scroll(page)
        await page.screenshot(path=shots / f"approval-{width}.png", full_page=True)

    # A third request arrives while the inbox is open: the bar, and the cards where they were.
    await page.set_viewport_size({"width": 1280, "height": 900})
    await page.goto("/inbox")
    await expect(page.locator("#pending article")).to_have_count(2)
    await page.wait_for_timeout(1500)
    await ask(console, {"meeting_id": meeting, "text": "Book the room for Thursday"})
    await expect(page.locator("#new-requests")).to_be_visible(timeout=8000)
    await page.screenshot(path=shots / "inbox-new-bar-1280.png")
    await page.locator("#pending article").first.get_by_role("button", name="Approve", exact=True).click()
    await expect(page.locator("#pending article").first).to_contain_text("Approved.")
    await expect(page.locator("#pending-count")).to_have_text("2")  # one on the page, one behind the bar
    await page.screenshot(path=shots / "inbox-decided-1280.png")

    for email in ("alice@acme.test", "admin@acme.test"):
        who = email.split("@")[0]
        person = page if who == "alice" else await console.person(email)
        for width in WIDTHS:
            await person.set_viewport_size({"width": width, "height": 900})
            await person.goto("/settings")
            await no_sideways_scroll(person)
            await person.screenshot(path=shots / f"settings-{who}-{width}.png", full_page=True)

    for picture in shots.glob("*.png"):
        assert picture.stat().st_size > 15_000, picture.name


async def sign_in_an_assistant(base_url: str, client_id: str, email: str, *, person_facing: bool) -> None:
    """``email`` consents in a browser, and the assistant gets its first tokens."""
    async with httpx2.AsyncClient(base_url=base_url) as http, httpx2.AsyncClient(base_url=base_url) as browser:
        verifier, challenge = pkce()
        url = authorize_url(
            base_url, client_id=client_id, redirect_uri=REDIRECT, code_challenge=challenge,
            code_challenge_method="S256", scope="tools api:read", resource=base_url,
        )  # fmt: skip
        back = await consent(browser, url, email=email, person_facing=person_facing)
        tokens = await http.post(
            "/token",
            data={
                "grant_type": "authorization_code", "code": query_of(back)["code"], "code_verifier": verifier,
                "redirect_uri": REDIRECT, "client_id": client_id, "resource": base_url,
            },
        )  # fmt: skip
        assert tokens.status_code == 200, tokens.text


async def test_screenshots_of_connected_assistants(console, shots):
    claude = await register_assistant(console.base_url, "Claude", "https://claude.ai")
    helper = await register_assistant(console.base_url, "Research Helper", "https://helper.example")
    await sign_in_an_assistant(console.base_url, claude, "admin@acme.test", person_facing=True)
    await sign_in_an_assistant(console.base_url, claude, "alice@acme.test", person_facing=False)
    await sign_in_an_assistant(console.base_url, helper, "alice@acme.test", person_facing=False)
    admin = await console.person("admin@acme.test")
    await admin.goto("/assistants")
    # An admin's decisions, made on the page as a person makes them: Claude's in-chat answers may approve.
    await (
        admin.locator("li.client", has_text=claude)
        .get_by_label("Its in-chat answers may approve")
        .select_option("allowed")
    )
    await admin.locator("li.client", has_text=claude).get_by_role("button", name="Save").click()
    await expect(admin.locator(".flash")).to_contain_text("Saved the policy")
    await admin.locator("li.client", has_text=helper).get_by_role("button", name="Block for everyone").click()
    await expect(admin.locator(".flash")).to_contain_text("is blocked")
    for width in WIDTHS:
        await admin.set_viewport_size({"width": width, "height": 900})
        await admin.goto("/assistants")
        await no_sideways_scroll(admin)
        await admin.screenshot(path=shots / f"assistants-admin-{width}.png", full_page=True)
    alice = await console.person("alice@acme.test")
    for width in WIDTHS:
        await alice.set_viewport_size({"width": width, "height": 900})
        await alice.goto("/assistants")
        await no_sideways_scroll(alice)
        await alice.screenshot(path=shots / f"assistants-alice-{width}.png", full_page=True)
    for picture in shots.glob("assistants-*.png"):
        assert picture.stat().st_size > 15_000, picture.name


async def test_screenshots_of_every_page_on_a_phone_and_a_desktop(console, shots):
    pages = await every_page(console)
    for viewport in (DESKTOP, PHONE):
        width = viewport["width"]
        outsider = await console.person()
        await outsider.set_viewport_size(viewport)
        await outsider.goto("/login")
        await outsider.screenshot(path=shots / f"page-login-{width}.png", full_page=True)
        alice = await console.person("alice@acme.test")
        await alice.set_viewport_size(viewport)
        for name, path in pages.paths.items():
            await alice.goto(path)
            await no_sideways_scroll(alice)
            await alice.screenshot(path=shots / f"page-{name.replace(' ', '-')}-{width}.png", full_page=True)
        if viewport is PHONE:
            await alice.goto("/inbox")
            await alice.get_by_role("button", name="Menu").click()
            await alice.screenshot(path=shots / f"page-menu-{width}.png")
        await alice.goto(pages.consent)
        await no_sideways_scroll(alice)
        await alice.screenshot(path=shots / f"page-consent-{width}.png", full_page=True)
        others = {}
        for name, (email, path) in pages.seen_by.items():
            if email not in others:
                others[email] = await console.person(email)
                await others[email].set_viewport_size(viewport)
            await others[email].goto(path)
            await no_sideways_scroll(others[email])
            await others[email].screenshot(path=shots / f"page-{name.replace(' ', '-')}-{width}.png", full_page=True)
    for picture in shots.glob("page-*.png"):
        assert picture.stat().st_size > 10_000, picture.name


async def test_screenshots_for_the_docs_of_the_inbox_and_the_approval_page_on_a_phone(console, docs_shots):
    """A Linear issue to create (its team by name) and one to update (what changes, beside what it is now), an
    action item on a meeting (by its title) and an e-mail (as it will read): the cards as a person sees them."""
    pages = await every_page(console)
    console.linear.issues.append(
        {"id": "i-42", "identifier": "ENG-42", "teamId": "t-eng", "title": "SSO for the Globex pilot",
         "description": "From the kickoff call.", "labelIds": [], "stateId": "s-ENG-todo", "priority": 3}
    )  # fmt: skip
    async with mcp_client(console.base_url, console.keys.keys["alice@acme.test"]) as assistant:
        await assistant.call_tool("linear_create_issue", {"team": "ENG", "title": "Globex: SAML metadata"})
        await assistant.call_tool("linear_update_issue", {"issue": "ENG-42", "state": "In Progress", "priority": 2})
    page = await console.person("alice@acme.test")
    await page.set_viewport_size(PHONE)
    await page.goto("/inbox")
    await expect(page.locator("#pending article")).to_have_count(4)
    await expect(page.locator(".change .was").first).to_have_text("Todo")
    await no_sideways_scroll(page)
    await page.screenshot(path=docs_shots / "inbox-phone.png", full_page=True)
    await page.goto(f"/approvals/{pages.mail}")
    await no_sideways_scroll(page)
    # The first screen, as the phone shows it: Approve and Deny are on it.
    await page.screenshot(path=docs_shots / "approval-phone.png")
    # A window as tall as the page, rather than a full-page capture, so the sticky sidebar stays in place.
    await page.set_viewport_size(DESKTOP)
    await page.goto("/inbox")
    height = await page.evaluate("document.documentElement.scrollHeight")
    await page.set_viewport_size({"width": DESKTOP["width"], "height": height})
    await page.screenshot(path=docs_shots / "inbox-desktop.png")
    for name in ("inbox-phone.png", "approval-phone.png", "inbox-desktop.png"):
        assert (docs_shots / name).stat().st_size > 20_000, name


async def test_screenshots_for_the_docs_of_who_approves_and_a_card_after_voting(console, docs_shots):
    """An admin names two of Bob and Carol, not the person who asked, and after 30 minutes the admins and an e-mail,
    in the rule form; Bob, who has approved a call such a rule holds, reads where the votes stand. At a desktop and a
    phone."""
    _, approval_id, _ = await voted_on(console)
    admin = await console.person("admin@acme.test")
    await admin.goto("/rules/new")
    await admin.get_by_label("App", exact=True).select_option(label="Harmony")
    await settled(admin)
    await admin.get_by_label("Tool", exact=True).select_option("harmony_create_action_item")
    await settled(admin)
    who = admin.get_by_role("region", name="Who approves")
    await who.get_by_label("Approvers", exact=True).fill("bob@acme.test, carol@acme.test")
    await who.get_by_label("Approvals needed").fill("2")
    await who.get_by_label("Never approved by the person who asked").check()
    await who.get_by_label("Escalate after (minutes)").fill("30")
    await who.get_by_label("Then add the workspace's admins as approvers").check()
    await who.get_by_label("E-mail").check()
    await admin.get_by_label("Description").fill("Action items need two of Bob and Carol")
    await admin.get_by_role("button", name="Simulate").click()
    await settled(admin)
    preview = admin.get_by_role("region", name="In plain words")
    await expect(preview).to_contain_text("Approved by 2 of bob@acme.test, carol@acme.test")
    await expect(preview).to_contain_text(
        "Escalates after 30 minutes: the admins are added, and the approvers are told again by e-mail"
    )
    bob = await console.person("bob@acme.test")
    waiting = "You approved this · 1 of 2 approvals so far; waiting for carol@acme.test."
    for viewport, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
        # One screen each, as the window shows it: the form scrolled to who approves, and Bob's card from its top.
        await admin.set_viewport_size(viewport)
        await no_sideways_scroll(admin)
        await admin.evaluate(SCROLL_TO_WHO_APPROVES)
        await admin.wait_for_timeout(300)
        await admin.screenshot(path=docs_shots / f"rules-approvers{suffix}.png")
        await bob.set_viewport_size(viewport)
        await bob.goto(f"/approvals/{approval_id}")
        await expect(bob.locator(f"#turn-{approval_id}")).to_have_text(re.compile(re.escape(waiting)))
        await expect(bob.get_by_role("button", name="Approve", exact=True)).to_have_count(0)
        await no_sideways_scroll(bob)
        await bob.screenshot(path=docs_shots / f"approval-voted{suffix}.png")
    for name in ("rules-approvers.png", "rules-approvers-phone.png", "approval-voted.png", "approval-voted-phone.png"):
        assert (docs_shots / name).stat().st_size > 15_000, name

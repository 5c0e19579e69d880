"""Pictures of what approvals by e-mail look like: the page an e-mailed link opens (a link that decides alone, and
one that needs signing in), and the two Settings sections that choose the channels, at a desktop's width and a
phone's.

Set ``COMPANION_CONSOLE_SHOTS=/some/folder`` to keep them all, and ``COMPANION_SCREENSHOTS=docs/screenshots`` for
the README's (``email-link-phone.png``); otherwise they go to a scratch folder, so the pages are at least rendered,
with no sideways scroll and Approve and Deny on a phone's first screen, every run.

The link is made as the e-mail's is (``store.approval_links``) for a call the assistant really asked; the card
shows what the one summary renderer made of it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from manifests import MANIFEST_DIR
from server.services.demo import DEMO_PASSWORD
from store import approval_links
from store.approval_channels import LinkRisk, WorkspaceChannels, set_workspace_channels
from store.directory import user_by_email, workspace_by_slug
from store.models import Approval
from tests.browser.test_console_screenshots import no_sideways_scroll
from tests.browser.test_inbox import a_meeting_of, ask
from tools.registry import Registry

pytestmark = pytest.mark.anyio

SIZES = ({"width": 1280, "height": 800}, {"width": 390, "height": 844})
ALICE = "alice@acme.test"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(MANIFEST_DIR)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("COMPANION_CONSOLE_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def links_decide(console: Any, max_risk: LinkRisk) -> None:
    async with console.companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        await set_workspace_channels(session, workspace.id, WorkspaceChannels(True, max_risk))


async def mailed_link(console: Any, text: str) -> str:
    """Alice's assistant asks to add an action item; the page her e-mailed link opens."""
    meeting = await a_meeting_of(console, ALICE)
    waiting = await ask(console, {"meeting_id": meeting, "text": text})
    approval_id = waiting.structured_content["approval_id"]
    async with console.companion.db.transaction() as session:
        alice = await user_by_email(session, ALICE)
        approval = await session.get(Approval, approval_id)
        secret = await approval_links.issue(
            session, approval_id=approval_id, user_id=alice.id, expires_at=approval.expires_at
        )
    return f"/approvals/{approval_id}/by-link?token={secret}"


async def test_screenshots_of_the_email_link_page_and_the_channel_settings(console, shots):
    await links_decide(console, "write")
    link = await mailed_link(console, "Send Carol the pricing sheet and the Q3 proposal before Friday's call")
    phone = await console.person()  # opened from the e-mail: not signed in
    for size in SIZES:
        await phone.set_viewport_size(size)
        await phone.goto(link)
        await expect(phone.get_by_role("button", name="Approve")).to_be_visible()
        await no_sideways_scroll(phone)
        for name in ("Approve", "Deny"):
            box = await phone.get_by_role("button", name=name).bounding_box()
            assert box is not None and box["y"] + box["height"] <= size["height"], f"{name} is below the first screen"
        await phone.screenshot(path=shots / f"email-link-{size['width']}.png", full_page=True)
    docs = os.environ.get("COMPANION_SCREENSHOTS")
    if docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shots / "email-link-390.png", Path(docs) / "email-link-phone.png")

    await phone.get_by_role("button", name="Approve").click()
    await expect(phone.get_by_role("status")).to_have_text("Approved. The assistant's call runs when it asks again.")
    await expect(phone.locator("#link-used")).to_be_visible()
    await phone.screenshot(path=shots / "email-link-decided-390.png", full_page=True)

    # Riskier than links may decide: the page asks the approver to sign in, and sends them back.
    await links_decide(console, "none")
    link = await mailed_link(console, "Book the big room for Thursday")
    await phone.goto(link)
    await expect(phone.get_by_role("link", name="Sign in to decide")).to_be_visible()
    await no_sideways_scroll(phone)
    await phone.screenshot(path=shots / "email-link-sign-in-390.png", full_page=True)
    await phone.get_by_role("link", name="Sign in to decide").click()
    await phone.get_by_label("E-mail").fill(ALICE)
    await phone.get_by_label("Password").fill(DEMO_PASSWORD)
    await phone.get_by_role("button", name="Sign in").click()
    await expect(phone).to_have_url(f"{console.base_url}{link}")
    await phone.get_by_label("Reason, if you deny").fill("Thursday is taken")
    await phone.get_by_role("button", name="Deny").click()
    await expect(phone.get_by_role("status")).to_contain_text("Denied.")

    for email in (ALICE, "admin@acme.test"):
        person = await console.person(email)
        who = email.split("@")[0]
        for size in SIZES:
            await person.set_viewport_size(size)
            await person.goto("/settings")
            await no_sideways_scroll(person)
            for section in ("channels", "approval-channels"):
                await person.locator(f"#{section}").screenshot(
                    path=shots / f"settings-{section}-{who}-{size['width']}.png"
                )

    for picture in shots.glob("*.png"):
        assert picture.stat().st_size > 10_000, picture.name

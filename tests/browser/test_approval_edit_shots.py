"""Edit before approving in Chromium: the form built from the e-mail tool's schema, filled with what the assistant
asked, at a desktop width and a phone's, with no sideways scroll; correcting the subject approves the corrected
e-mail. And the batch page and a card that needs two approvals, at both widths.

The pictures go to ``COMPANION_SCREENSHOTS`` (docs/screenshots when ``scripts/screenshots`` runs), otherwise to a
scratch folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from httpx2 import AsyncClient
from playwright.async_api import expect

from manifests import MANIFEST_DIR
from store.directory import user_by_email, workspace_by_slug
from store.keys import create_key
from tests.browser.test_screenshots import connect_alices_apps
from tests.conftest import mcp_client
from tools.registry import Registry

pytestmark = pytest.mark.anyio

DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# axe-core, pinned in tests/conformance/package.json and installed by ``python -m tests.node``.
AXE = Path(__file__).parent.parent / "conformance" / "node_modules" / "axe-core" / "axe.min.js"

ASKED = {
    "to": ["bob@client.com"],
    "cc": ["dana@client.com"],
    "subject": "Helo from Acme",
    "body_text": "Hi Bob,\n\nthe Q3 proposal is attached. Could we talk on Thursday?\n\nAlice",
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(MANIFEST_DIR)


@pytest.fixture
def docs_shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("COMPANION_SCREENSHOTS") or tmp_path / "docs")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def no_sideways_scroll(page) -> None:
    overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


async def nothing_serious_for_axe(page) -> None:
    """axe-core finds no serious or critical accessibility problem (skipped where it is not installed)."""
    if not AXE.exists():
        return
    await page.evaluate(AXE.read_text() + ";undefined")
    found = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => v.id + ': ' + v.help + ' — ' + v.nodes.map(n => n.target.join(' ')).slice(0, 4).join(', '))"
    )
    assert found == [], found


async def test_the_edit_form_at_a_desktop_and_a_phone_approves_the_corrected_call(console, docs_shots):
    await connect_alices_apps(console)
    async with mcp_client(console.base_url, console.keys.keys["alice@acme.test"]) as assistant:
        waiting = await assistant.call_tool("email_send_email", ASKED)
    approval_id = waiting.structured_content["approval_id"]
    page = await console.person("alice@acme.test")

    await page.goto(f"/approvals/{approval_id}")
    await page.get_by_role("link", name="Edit before approving").click()
    await page.wait_for_url(f"**/approvals/{approval_id}/edit")
    await expect(page.get_by_label("Subject")).to_have_value("Helo from Acme")
    await page.get_by_label("Subject").fill("Hello from Acme")
    for viewport, name in ((DESKTOP, "approval-edit.png"), (PHONE, "approval-edit-phone.png")):
        await page.set_viewport_size(viewport)
        await no_sideways_scroll(page)
        await nothing_serious_for_axe(page)
        if viewport is DESKTOP:
            height = await page.evaluate("document.documentElement.scrollHeight")
            await page.set_viewport_size({"width": DESKTOP["width"], "height": height})
            # Painted after the resize settles; a capture at once can miss what moved.
            await page.wait_for_timeout(300)
            await page.screenshot(path=docs_shots / name)
        else:
            await page.wait_for_timeout(300)
            await page.screenshot(path=docs_shots / name, full_page=True)
        assert (docs_shots / name).stat().st_size > 15_000, name

    await page.get_by_role("button", name="Approve with these changes").click()
    await page.wait_for_url(f"**/approvals/{approval_id}")
    card = page.locator(f"#card-{approval_id}")
    await expect(card).to_contain_text("approved with changes")
    await expect(card).to_contain_text("subject: “Helo from Acme” → “Hello from Acme”")
    await no_sideways_scroll(page)


async def test_deciding_several_and_a_group_approval_fit_a_phone(console, tmp_path):
    """The batch page groups the identical pair (asked by two of Alice's assistants); a card that needs two
    approvals says where the votes stand."""
    admin = {"Authorization": f"Bearer {console.keys.user_keys['admin@acme.test']}"}
    rule = {
        "effect": "ask", "scope": "workspace", "app": "harmony", "tool": "harmony_create_action_item",
        "approvers": {"people": ["admin@acme.test", "alice@acme.test"], "count": 2},
    }  # fmt: skip
    async with AsyncClient(base_url=console.base_url) as http:
        assert (await http.post("/api/v1/rules", headers=admin, json=rule)).status_code == 201
    async with console.companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        alice = await user_by_email(session, "alice@acme.test")
        second = await create_key(session, workspace_id=workspace.id, user_id=alice.id, name="second assistant")
    first = console.keys.keys["alice@acme.test"]
    calls = [(first, "Book the boardroom"), (second.token, "Book the boardroom"), (first, "Order lunch")]
    ids = []
    for key, text in calls:
        async with mcp_client(console.base_url, key) as assistant:
            asked = await assistant.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": text})
        ids.append(asked.structured_content["approval_id"])
    page = await console.person("admin@acme.test")
    await page.goto(f"/approvals/{ids[0]}")
    await page.get_by_role("button", name="Approve", exact=True).click()
    await expect(page.locator(f"#card-{ids[0]}")).to_contain_text("1 of 2 approvals")
    for viewport in (DESKTOP, PHONE):
        await page.set_viewport_size(viewport)
        await page.goto("/approvals/batch")
        await expect(page.get_by_text("2 identical requests")).to_be_visible()
        await no_sideways_scroll(page)
        await nothing_serious_for_axe(page)
        await page.wait_for_timeout(300)
        await page.screenshot(path=tmp_path / f"batch-{viewport['width']}.png", full_page=True)
        await page.goto(f"/approvals/{ids[0]}")
        await no_sideways_scroll(page)
        await page.screenshot(path=tmp_path / f"group-{viewport['width']}.png", full_page=True)

"""The README's screenshots, taken from the running product: the Marketplace, the inbox and the rules editor.

``scripts/screenshots`` runs this with ``COMPANION_SCREENSHOTS=docs/screenshots``; in the suite the
pictures go to a scratch folder, so the pages they show are at least rendered and non-empty every run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from manifests import MANIFEST_DIR
from store.directory import member_principal, user_by_email, workspace_by_slug
from tests.browser.test_inbox import a_meeting_of, ask
from tests.browser.test_rules import allow_at_domains, settled
from tests.conftest import mcp_client
from tools.registry import Registry

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The shipped apps only, as a customer sees them (not the tests' own ``memo`` app)."""
    return Registry.load(MANIFEST_DIR)


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("COMPANION_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def connect_alices_apps(console) -> None:
    async with console.companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        alice = await user_by_email(session, "alice@acme.test")
        actor = await member_principal(session, workspace.id, alice.id, acting_as="screenshots")
    assert actor is not None
    integrations = console.companion.integrations
    await integrations.connect(
        actor, "linear", scope="personal", method="api_key", label="", setup={"api_key": console.linear.issue_key()}
    )
    await integrations.connect(
        actor,
        "email",
        scope="personal",
        method="smtp",
        label="Work mail",
        setup={
            "host": "smtp.acme.test",
            "port": 587,
            "security": "starttls",
            "username": "alice@acme.test",
            "password": "app-password-for-the-picture",
            "from_address": "alice@acme.test",
        },
    )


async def test_screenshots_of_the_marketplace_the_inbox_and_the_rules_editor(console, shots):
    await connect_alices_apps(console)
    meeting = await a_meeting_of(console, "alice@acme.test")
    async with mcp_client(console.base_url, console.keys.keys["alice@acme.test"]) as assistant:
        await assistant.call_tool("linear_create_issue", {"team": "ENG", "title": "Globex: SSO for the pilot"})
        await assistant.call_tool(
            "email_send_email",
            {"to": ["bob@client.com"], "subject": "Q3 proposal", "body_text": "Hi Bob, the Q3 proposal is attached."},
        )
    await ask(
        console,
        {"meeting_id": meeting, "text": "Send Carol the pricing sheet", "assignee_email": "carol@globex.example"},
    )
    await console.companion.audit.flush()

    page = await console.person("alice@acme.test")
    await page.wait_for_selector("article.status-pending >> nth=2")
    await page.screenshot(path=shots / "inbox.png")

    await page.goto("/marketplace")
    await page.screenshot(path=shots / "marketplace.png")

    await allow_at_domains(page, "E-mail", "email_send_email", "to", "client.com, partner.io")
    await page.get_by_label("Auto-approve at most").fill("20")
    await page.get_by_role("button", name="Simulate").click()
    await settled(page)
    # A window as tall as the page, rather than a full-page capture, so the sticky sidebar stays in place.
    height = await page.evaluate("document.documentElement.scrollHeight")
    await page.set_viewport_size({"width": 1360, "height": height})
    await page.screenshot(path=shots / "rules-editor.png")

    for name in ("inbox.png", "marketplace.png", "rules-editor.png"):
        assert (shots / name).stat().st_size > 20_000, name

"""Pictures of the consent page a person sees when an assistant asks to act for them, at a desktop width and a
phone's: the assistant's name and site, the warning that it sends them back to another host, the workspace,
what each scope allows, and Allow and Deny on the first screen.

Set ``COMPANION_CONSOLE_SHOTS=/some/folder`` to keep them (``docs/screenshots`` holds the phone's).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import expect

from tests.browser.test_console_screenshots import REDIRECT, no_sideways_scroll, register_assistant
from tests.oauth_browser import authorize_url, pkce

pytestmark = pytest.mark.anyio

SIZES = ((1280, 800), (390, 844))


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("COMPANION_CONSOLE_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def test_the_consent_page_at_a_desktop_and_a_phone(console, shots):
    # Its home site is claude.ai, but it sends people back to a loopback address: the page warns.
    client_id = await register_assistant(console.base_url, "Claude", "https://claude.ai")
    _, challenge = pkce()
    url = authorize_url(
        console.base_url, client_id=client_id, redirect_uri=REDIRECT, code_challenge=challenge,
        code_challenge_method="S256", scope="tools api:read api:write approvals", resource=f"{console.base_url}/mcp",
        state="s",
    )  # fmt: skip
    alice = await console.person("alice@acme.test")
    for width, height in SIZES:
        await alice.set_viewport_size({"width": width, "height": height})
        await alice.goto(url)
        await expect(alice.get_by_role("heading", name="Allow Claude to act for you?")).to_be_visible()
        await expect(alice.locator(".flash.warn")).to_contain_text("not its own site")
        await expect(alice.get_by_text("It also asked to decide approvals")).to_be_visible()
        await no_sideways_scroll(alice)
        allow = alice.get_by_role("button", name="Allow")
        box = await allow.bounding_box()
        assert box is not None
        await alice.screenshot(path=shots / f"consent-{width}.png", full_page=True)
        assert (shots / f"consent-{width}.png").stat().st_size > 15_000

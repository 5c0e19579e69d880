"""In Chromium: connect an app with an API key from the Marketplace, test it, and find it under Installed."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

pytestmark = pytest.mark.anyio


async def test_connect_an_api_key_app_test_it_and_see_it_installed(console):
    page = await console.person("alice@acme.test")
    await page.goto("/marketplace")
    await page.get_by_label("Search apps").fill("linear")
    linear = page.get_by_role("article").filter(has_text="Linear")
    await expect(page.get_by_role("article")).to_have_count(1)
    await linear.get_by_role("link", name="Connect").click()

    api_key_form = page.locator("form").filter(has_text="Personal API key")
    await api_key_form.get_by_label("Personal API key").fill("not-a-key-linear-knows")
    await api_key_form.get_by_role("button", name="Connect Linear").click()
    await page.get_by_role("button", name="Test connection").click()
    # Only the product's own words: a connection test never echoes what the remote said (issue 18).
    await expect(page.get_by_role("alert")).to_contain_text("Linear no longer accepts")

    key = console.linear.issue_key()
    await page.get_by_role("link", name="Update API key").click()
    await page.get_by_label("Personal API key").fill(key)
    await page.get_by_role("button", name="Save API key").click()
    await page.get_by_role("button", name="Test connection").click()
    await expect(page.get_by_text("Signed in to Linear as Alice")).to_be_visible()
    assert key not in await page.content()

    await page.goto("/marketplace/installed")
    personal = page.get_by_role("region", name="Personal integrations")
    await expect(personal.get_by_role("row").filter(has_text="Linear")).to_contain_text("Active")
    await expect(page.get_by_role("region", name="Workspace integrations")).not_to_contain_text("Linear")

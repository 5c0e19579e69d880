"""In Chromium: the settings page registers the console's service worker, and a pushed approval shows as a
notification that names the approval page.

Chromium subscribes to Web Push only through Google's push service, which this machine cannot reach, so delivery
from the server is proven against the push-service fake (tests/test_web_push.py: VAPID checked, payload
decrypted). Here the message the server sends is handed to the service worker as the push service would, through
DevTools' ``ServiceWorker.deliverPushMessage`` (what DevTools' "Push" button does).
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from playwright.async_api import expect

from tests.browser.test_inbox import a_meeting_of, ask

pytestmark = pytest.mark.anyio


async def test_the_settings_page_registers_the_service_worker_for_the_whole_console(console):
    page = await console.person("alice@acme.test")
    await page.goto("/settings")
    await expect(page.get_by_role("button", name="Enable notifications on this device")).to_be_visible()
    await expect(page.get_by_text("Get a notification on this device when an approval waits for you")).to_be_visible()
    registration = await page.evaluate(
        "navigator.serviceWorker.ready.then(r => ({scope: r.scope, script: r.active.scriptURL}))"
    )
    # Its scope is the whole site, so the approval pages a notification opens are the app's own.
    assert registration == {"scope": f"{console.base_url}/", "script": f"{console.base_url}/sw.js"}
    manifest = await page.evaluate("document.querySelector('link[rel=manifest]').href")
    assert manifest == f"{console.base_url}/manifest.webmanifest"

    # Headless Chromium has no push service: enabling fails, and the block says so in words, not as an exception.
    await page.get_by_role("button", name="Enable notifications on this device").click()
    await expect(page.locator("[data-push-state]")).to_have_text(
        re.compile("does not allow notifications from Companion|could not reach its push service")
    )


async def test_a_pushed_approval_shows_as_a_notification_that_opens_its_page(console):
    page = await console.person("alice@acme.test")
    await page.context.grant_permissions(["notifications"], origin=console.base_url)
    meeting = await a_meeting_of(console, "alice@acme.test")
    waiting = await ask(console, {"meeting_id": meeting, "text": "Send Carol the Q3 proposal"})
    approval_url = f"{console.base_url}/approvals/{waiting.structured_content['approval_id']}"
    await page.goto("/settings")
    await page.evaluate("navigator.serviceWorker.ready.then(() => true)")

    devtools = await page.context.new_cdp_session(page)
    registrations: list[dict[str, str]] = []
    devtools.on("ServiceWorker.workerRegistrationUpdated", lambda event: registrations.extend(event["registrations"]))
    await devtools.send("ServiceWorker.enable")
    for _ in range(100):
        if registrations:
            break
        await asyncio.sleep(0.05)
    [registration] = [r for r in registrations if r["scopeURL"] == f"{console.base_url}/" and not r["isDeleted"]]
    message = {
        "title": "Approval waiting · Harmony",
        "body": "Add the action item “Send Carol the Q3 proposal”",
        "url": approval_url,
    }
    await devtools.send(
        "ServiceWorker.deliverPushMessage",
        {"origin": console.base_url, "registrationId": registration["registrationId"], "data": json.dumps(message)},
    )

    shown = (
        "navigator.serviceWorker.ready.then(r => r.getNotifications())"
        ".then(list => list.map(n => ({title: n.title, body: n.body, tag: n.tag, url: n.data.url})))"
    )
    notifications: list[dict[str, str]] = []
    for _ in range(100):
        notifications = await page.evaluate(shown)
        if notifications:
            break
        await asyncio.sleep(0.05)
    assert notifications == [{**message, "tag": approval_url}]

    # What a tap opens: the approval, with its decision on the page.
    await page.goto(notifications[0]["url"])
    await expect(page.get_by_role("button", name="Approve", exact=True)).to_be_visible()

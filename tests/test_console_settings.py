"""A person's own settings: the e-mail that says an approval waits, and changing their password."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy

import httpx2
import pytest
from aiosmtpd.controller import Controller

from server.app import Companion, create_app
from server.demo import DEMO_PASSWORD
from tests.conftest import free_port, mcp_client
from tests.console import form_post, sign_in

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


class Postbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


@pytest.fixture
def postbox():
    box = Postbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


@pytest.fixture
async def mailing(settings, registry, postbox):
    """A server that sends its own mail to the test's SMTP server."""
    box, port = postbox
    companion = Companion.build(
        settings.model_copy(update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none"}),
        registry=registry,
    )
    app = create_app(companion)
    async with app.router.lifespan_context(app):
        yield companion, httpx2.ASGITransport(app=app), box


async def test_an_approver_who_asked_for_it_gets_an_email_with_a_link(mailing, demo_keys):
    companion, transport, box = mailing
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as browser:
        await sign_in(browser, "alice@acme.test")
        page = await browser.get("/settings")
        assert (
            "E-mail me when an approval waits" in page.text
            and "disabled" not in page.text.split("Notifications")[1][:400]
        )
        saved = await form_post(browser, "/settings", "/settings/notifications", {"notify_approvals": "on"})
        assert saved.status_code == 303
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=transport) as client:
        waiting = await client.call_tool(
            "harmony_create_action_item", {"meeting_id": "mtg_x", "text": "Call Erin\nBcc: everyone@acme.test"}
        )
    await companion.mail.drain()
    [(to, raw)] = box.messages
    mail = message_from_bytes(raw, policy=policy.default)
    approval_id = waiting.structured_content["approval_id"]
    assert to == ["alice@acme.test"] and mail["Subject"] == "Approval waiting: Harmony" and mail["Bcc"] is None
    body = mail.get_payload(decode=True).decode()
    assert "Add the action item “Call Erin Bcc: everyone@acme.test” to meeting mtg_x" in body
    assert f"{BASE}/approvals/{approval_id}" in body and f"{BASE}/inbox" in body


async def test_no_email_for_someone_who_did_not_ask(mailing, demo_keys):
    companion, transport, box = mailing
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=transport) as client:
        await client.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": "Call Erin"})
    await companion.mail.drain()
    await asyncio.sleep(0)
    assert box.messages == []


async def test_without_a_mail_server_the_option_says_why_it_is_off(app_client, demo_keys):
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, "alice@acme.test")
        page = await browser.get("/settings")
    assert "has no mail server configured" in page.text


async def test_changing_the_password_checks_the_current_one_and_keeps_this_session(app_client, demo_keys):
    async with (
        httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser,
        httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as other,
    ):
        await sign_in(browser, "alice@acme.test")
        await sign_in(other, "alice@acme.test")
        wrong = await form_post(
            browser, "/settings", "/settings/password", {"current": "nope", "new": "x" * 12, "repeat": "x" * 12}
        )
        assert wrong.status_code == 400 and "This is not your current password." in wrong.text
        short = await form_post(
            browser, "/settings", "/settings/password", {"current": DEMO_PASSWORD, "new": "short", "repeat": "short"}
        )
        assert short.status_code == 400 and "Use at least 10 characters." in short.text
        done = await form_post(
            browser,
            "/settings",
            "/settings/password",
            {"current": DEMO_PASSWORD, "new": "correct horse battery", "repeat": "correct horse battery"},
        )
        assert done.status_code == 303
        assert (await browser.get("/settings")).status_code == 200
        assert (await other.get("/settings")).status_code == 303

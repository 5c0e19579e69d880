"""A person's own settings: the e-mail that says an approval waits, changing their password, marking their
own agent keys as used by a person-facing host, and (admins) the workspace's in-chat approval policy."""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy

import httpx2
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from server.app import Companion, create_app
from server.services.demo import DEMO_PASSWORD
from store.directory import workspace_by_slug
from store.in_chat_policy import InChatPolicy, policy_of, set_policy
from store.keys import PERSON_FACING_WARNING, create_key
from store.models import ApiKey, KeyKind, User
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
            and "disabled" not in page.text.split('name="notify_approvals"')[1].split(">")[0]
        )
        saved = await form_post(browser, "/settings", "/settings/notifications", {"notify_approvals": "on"})
        assert saved.status_code == 303
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=transport) as client:
        waiting = await client.call_tool(
            "harmony_create_action_item", {"meeting_id": "mtg_x", "text": "Call Erin\nBcc: everyone@acme.test"}
        )
    await companion.notices.drain()
    [(to, raw)] = box.messages
    mail = message_from_bytes(raw, policy=policy.default)
    approval_id = waiting.structured_content["approval_id"]
    assert to == ["alice@acme.test"] and mail["Subject"] == "Approval waiting: Harmony" and mail["Bcc"] is None
    body = mail.get_payload(decode=True).decode()
    # The summary names the call, and a line break in an argument cannot write a line of its own (issue 18).
    assert "Add the action item “Call Erin" in body and "everyone@acme.test" in body
    assert not any(line.strip().startswith("Bcc: everyone") for line in body.splitlines())
    assert f"{BASE}/approvals/{approval_id}" in body and f"{BASE}/inbox" in body


async def test_no_email_for_someone_who_did_not_ask(mailing, demo_keys):
    companion, transport, box = mailing
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=transport) as client:
        await client.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": "Call Erin"})
    await companion.notices.drain()
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


async def agent_key_of(companion, email: str) -> ApiKey:
    async with companion.db.session() as session:
        return await session.scalar(
            select(ApiKey)
            .join(User, User.id == ApiKey.user_id)
            .where(User.email == email, ApiKey.kind == KeyKind.AGENT)
        )


async def policy_now(companion, demo_keys) -> InChatPolicy:
    async with companion.db.session() as session:
        return await policy_of(session, (await workspace_by_slug(session, demo_keys.workspace)).id)


@pytest.fixture
async def signed_in(app_client, demo_keys):
    async def browser_of(email: str) -> httpx2.AsyncClient:
        client = httpx2.AsyncClient(transport=app_client.transport, base_url=BASE)
        opened.append(client)
        await sign_in(client, email)
        return client

    opened: list[httpx2.AsyncClient] = []
    yield browser_of
    for client in opened:
        await client.aclose()


async def test_a_person_sees_their_own_agent_keys_with_the_warning_and_marks_one(signed_in, companion, demo_keys):
    async with companion.db.transaction() as session:
        bob = await session.scalar(select(User).where(User.email == "bob@acme.test"))
        workspace = await workspace_by_slug(session, demo_keys.workspace)
        bobs = (await create_key(session, workspace_id=workspace.id, user_id=bob.id, name="bob's desktop")).key
    alice = await signed_in("alice@acme.test")
    key = await agent_key_of(companion, "alice@acme.test")
    page = await alice.get("/settings")
    assert "Used by a person-facing host" in page.text
    assert PERSON_FACING_WARNING.replace("'", "&#39;") in page.text
    assert f"/settings/keys/{key.id}/person-facing" in page.text and bobs.id not in page.text

    marked = await form_post(alice, "/settings", f"/settings/keys/{key.id}/person-facing", {"person_facing": "on"})
    assert marked.status_code == 303 and marked.headers["location"] == "/settings#keys"
    assert (await agent_key_of(companion, "alice@acme.test")).person_facing is True
    after = await alice.get("/settings")
    assert "is marked as used by a person-facing host" in after.text and "in-chat answers may approve" in after.text

    unmarked = await form_post(alice, "/settings", f"/settings/keys/{key.id}/person-facing", {})
    assert unmarked.status_code == 303
    assert (await agent_key_of(companion, "alice@acme.test")).person_facing is False


async def test_only_the_owner_of_a_key_may_mark_it_not_even_an_admin(signed_in, companion):
    alices = await agent_key_of(companion, "alice@acme.test")
    for email in ("bob@acme.test", "admin@acme.test"):
        other = await signed_in(email)
        refused = await form_post(
            other, "/settings", f"/settings/keys/{alices.id}/person-facing", {"person_facing": "on"}
        )
        assert refused.status_code == 404 and "You have no such key" in refused.text
    assert (await agent_key_of(companion, "alice@acme.test")).person_facing is False


async def test_marking_a_key_where_the_workspace_forbids_it_says_why(signed_in, companion, demo_keys):
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, demo_keys.workspace)
        await set_policy(session, workspace.id, InChatPolicy(False, "write"))
    alice = await signed_in("alice@acme.test")
    page = await alice.get("/settings")
    assert "does not allow person-facing keys" in page.text
    key = await agent_key_of(companion, "alice@acme.test")
    refused = await form_post(alice, "/settings", f"/settings/keys/{key.id}/person-facing", {"person_facing": "on"})
    assert refused.status_code == 400
    assert 'role="alert">An admin of this workspace does not allow person-facing keys.</span>' in refused.text
    assert 'aria-invalid="true"' in refused.text
    assert (await agent_key_of(companion, "alice@acme.test")).person_facing is False


async def test_an_admin_sets_the_in_chat_policy_with_words_for_each_level(signed_in, companion, demo_keys):
    admin = await signed_in("admin@acme.test")
    page = await admin.get("/settings")
    assert "Approvals in the assistant" in page.text and 'action="/settings/in-chat-policy"' in page.text
    for risk in ("read", "write", "send", "delete"):
        assert f'name="in_chat_max_risk" value="{risk}"' in page.text
    assert "Only reading" in page.text and "Also sending things to people" in page.text

    saved = await form_post(admin, "/settings", "/settings/in-chat-policy", {"in_chat_max_risk": "write"})
    assert saved.status_code == 303
    assert await policy_now(companion, demo_keys) == InChatPolicy(False, "write")
    again = await form_post(
        admin, "/settings", "/settings/in-chat-policy", {"person_facing_keys": "on", "in_chat_max_risk": "send"}
    )
    assert again.status_code == 303
    assert await policy_now(companion, demo_keys) == InChatPolicy(True, "send")

    wrong = await form_post(
        admin, "/settings", "/settings/in-chat-policy", {"person_facing_keys": "on", "in_chat_max_risk": "everything"}
    )
    assert wrong.status_code == 400 and "Choose one of: read, write, send, delete." in wrong.text
    assert await policy_now(companion, demo_keys) == InChatPolicy(True, "send")


async def test_a_member_sees_the_policy_but_cannot_change_it(signed_in, companion, demo_keys):
    before = await policy_now(companion, demo_keys)
    alice = await signed_in("alice@acme.test")
    page = await alice.get("/settings")
    assert (
        'action="/settings/in-chat-policy"' not in page.text
        and "Admins and owners of the workspace set this" in page.text
    )
    refused = await form_post(alice, "/settings", "/settings/in-chat-policy", {"in_chat_max_risk": "read"})
    assert refused.status_code == 403
    assert await policy_now(companion, demo_keys) == before


async def test_settings_forms_need_the_csrf_token(signed_in, companion, demo_keys):
    admin = await signed_in("admin@acme.test")
    before = await policy_now(companion, demo_keys)
    key = await agent_key_of(companion, "admin@acme.test")
    forged = await admin.post(f"/settings/keys/{key.id}/person-facing", data={"person_facing": "on"})
    assert forged.status_code == 403
    forged = await admin.post("/settings/in-chat-policy", data={"in_chat_max_risk": "read"})
    assert forged.status_code == 403
    assert await policy_now(companion, demo_keys) == before
    assert (await agent_key_of(companion, "admin@acme.test")).person_facing is False

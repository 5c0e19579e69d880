"""Web Push: a person enables notifications on their devices in the console, and each new approval for them reaches
every device through its push service, encrypted to it and signed with the server's VAPID key.

The push service is ``tests.fakes.push_service``, a real HTTP server on 127.0.0.1 that checks the VAPID token
(RFC 8292) and decrypts each message with the browser side of the subscription (RFC 8291), which the test makes
as a browser would. A real browser's push service (Google's, Mozilla's, Apple's) is out of reach here, so this
is where delivery is proven end to end; ``tests/browser/test_push.py`` shows Chromium registering the service
worker and showing a delivered message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from pydantic import SecretStr
from sqlalchemy import select

from server.app import Companion
from server.services.notices import Notice
from server.services.push import BODY_CHARS, WebPush, payload_of, public_key_of, vapid_of
from server.settings import SettingsError
from store import push_subscriptions
from store.models import Approval, AuditEntry, PushSubscription, User, utcnow
from tests.conftest import free_port, serving
from tests.console import csrf_of, sign_in
from tests.fakes.push_service import BrowserSubscription, PushServiceFake
from tests.test_oauth_server import API, tokens_for

# The fake push service listens on 127.0.0.1, which only the development setting lets a subscription name.
pytestmark = [pytest.mark.anyio, pytest.mark.settings(webhooks_allow_private=True)]

BASE = "http://127.0.0.1:8000"


@pytest.fixture
async def push_service() -> AsyncIterator[PushServiceFake]:
    fake = PushServiceFake()
    port = free_port()
    fake.origin = f"http://127.0.0.1:{port}"
    async with serving(fake.app, port):
        yield fake


@pytest.fixture
async def browser(app_client, demo_keys) -> AsyncIterator[httpx2.AsyncClient]:
    """Alice, signed in to the console."""
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        await sign_in(client, "alice@acme.test")
        yield client


def channel_of(companion: Companion) -> WebPush:
    [push] = [channel for channel in companion.notices.channels if channel.name == "push"]
    assert isinstance(push, WebPush)
    return push


async def enable(browser: httpx2.AsyncClient, subscription: BrowserSubscription) -> httpx2.Response:
    """What push.js does once the browser subscribed: POST the subscription with the page's CSRF token."""
    page = await browser.get("/settings")
    return await browser.post(
        "/push/subscriptions", json=subscription.to_json(), headers={"X-CSRF-Token": csrf_of(page.text)}
    )


async def a_device(browser: httpx2.AsyncClient, push_service: PushServiceFake) -> BrowserSubscription:
    key = (await browser.get("/push/key")).json()["public_key"]
    subscription = push_service.subscribe(key)
    answer = await enable(browser, subscription)
    assert answer.status_code == 201, answer.text
    return subscription


async def ask(app_client, demo_keys, text: str = "Send Carol the Q3 proposal") -> str:
    async with app_client(demo_keys.keys["alice@acme.test"]) as assistant:
        waiting = await assistant.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": text})
    assert waiting.structured_content["status"] == "approval_required"
    return str(waiting.structured_content["approval_id"])


async def devices_of(companion: Companion, email: str) -> list[str]:
    async with companion.db.session() as session:
        user_id = await session.scalar(select(User.id).where(User.email == email))
        rows = await session.scalars(select(PushSubscription.endpoint).where(PushSubscription.user_id == user_id))
        return list(rows)


async def test_a_new_approval_reaches_each_of_the_persons_devices_once(
    app_client, companion, demo_keys, browser, push_service
):
    phone = await a_device(browser, push_service)
    laptop = await a_device(browser, push_service)

    approval_id = await ask(app_client, demo_keys)
    await companion.notices.drain()

    assert push_service.refused == []
    expected = {
        "title": "Approval waiting · Harmony",
        "body": "Add the action item “Send Carol the Q3 proposal” to meeting mtg_x",
        "url": f"{BASE}/approvals/{approval_id}",
    }
    for device in (phone, laptop):
        [message] = push_service.messages_for(device)
        assert message.keys() == expected.keys() and message["url"] == expected["url"]
        assert message["title"] == expected["title"] and "Send Carol the Q3 proposal" in message["body"]
    [first, second] = push_service.received
    for received in (first, second):
        headers, claims = received.headers, received.claims
        assert headers["urgency"] == "high" and headers["content-encoding"] == "aes128gcm"
        # Held no longer than the approval waits: a late notice for an expired approval would only mislead.
        assert 0 < int(headers["ttl"]) <= companion.settings.approval_ttl_seconds
        assert claims["aud"] == push_service.origin and claims["sub"] == "mailto:companion@localhost"
        assert headers["authorization"].startswith("vapid t=")
    # Delivered devices are marked used; nothing else about them changed.
    async with companion.db.session() as session:
        used = await session.scalars(select(PushSubscription.last_used_at))
        assert all(when is not None for when in used)


async def test_the_payload_is_the_one_line_summary_cut_short_and_the_approval_page():
    notice = Notice(
        approval_id="apr_1",
        workspace_id="ws",
        approvers=("usr_1",),
        asker_id="usr_1",
        summary="Send\nthe   report " + "x" * 400,
        app_name="Gmail\nBcc: all",
        tool="gmail_send",
        risk="send",
        assistant="",
        expires_at=utcnow() + timedelta(minutes=5),
    )
    message = json.loads(payload_of(notice, "https://companion.example.com"))
    assert message == {
        "title": "Approval waiting · Gmail Bcc: all",
        "body": message["body"],
        "url": "https://companion.example.com/approvals/apr_1",
    }
    assert message["body"].startswith("Send the report xxx") and "\n" not in message["body"]
    assert len(message["body"]) == BODY_CHARS and message["body"].endswith("…")


async def test_a_device_the_push_service_says_is_gone_is_forgotten(
    app_client, companion, demo_keys, browser, push_service
):
    kept = await a_device(browser, push_service)
    dropped = await a_device(browser, push_service)
    push_service.gone.add(dropped.id)

    await ask(app_client, demo_keys)
    await companion.notices.drain()

    assert len(push_service.messages_for(kept)) == 1 and push_service.messages_for(dropped) == []
    assert push_service.refused == [(410, "the subscription has expired or was unsubscribed")]
    assert await devices_of(companion, "alice@acme.test") == [kept.endpoint]


async def test_nothing_is_sent_to_someone_who_turned_push_off(app_client, companion, demo_keys, browser, push_service):
    await a_device(browser, push_service)
    async with companion.db.transaction() as session:
        alice = await session.scalar(select(User).where(User.email == "alice@acme.test"))
        assert alice is not None and alice.notify_push  # enabling a device turned the channel on
        alice.notify_push = False

    await ask(app_client, demo_keys)
    await companion.notices.drain()
    assert push_service.received == [] and push_service.refused == []


async def test_a_person_turns_a_device_off_and_cannot_turn_off_someone_elses(
    app_client, companion, demo_keys, browser, push_service
):
    device = await a_device(browser, push_service)
    token = csrf_of((await browser.get("/settings")).text)
    check = await browser.post(
        "/push/subscriptions/check", json={"endpoint": device.endpoint}, headers={"X-CSRF-Token": token}
    )
    assert check.json() == {"subscribed": True, "devices": 1}

    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as admin:
        await sign_in(admin, "admin@acme.test")
        admin_token = csrf_of((await admin.get("/settings")).text)
        taken = await admin.post(
            "/push/subscriptions/remove", json={"endpoint": device.endpoint}, headers={"X-CSRF-Token": admin_token}
        )
        assert taken.status_code == 200 and taken.json() == {"subscribed": False, "devices": 0}
        theirs = await admin.post(
            "/push/subscriptions/check", json={"endpoint": device.endpoint}, headers={"X-CSRF-Token": admin_token}
        )
        assert theirs.json()["subscribed"] is False
    assert await devices_of(companion, "alice@acme.test") == [device.endpoint]

    off = await browser.post(
        "/push/subscriptions/remove", json={"endpoint": device.endpoint}, headers={"X-CSRF-Token": token}
    )
    assert off.json() == {"subscribed": False, "devices": 0}
    assert await devices_of(companion, "alice@acme.test") == []


@pytest.mark.settings(webhooks_allow_private=False)
async def test_an_endpoint_on_a_private_address_or_over_http_is_refused(companion, browser, push_service):
    key = (await browser.get("/push/key")).json()["public_key"]
    device = push_service.subscribe(key)
    token = csrf_of((await browser.get("/settings")).text)
    for endpoint, why in [
        (device.endpoint, "must use https"),
        ("https://127.0.0.1:9/push/x", "resolves to a loopback address"),
        ("https://10.0.0.7/push/x", "resolves to a private address"),
        ("https://169.254.169.254/latest/meta-data", "resolves to a link-local address"),
        ("https://[::ffff:127.0.0.1]/push/x", "resolves to a loopback address"),
        ("file:///etc/passwd", "must be an http(s) URL"),
    ]:
        answer = await browser.post(
            "/push/subscriptions",
            json={**device.to_json(), "endpoint": endpoint},
            headers={"X-CSRF-Token": token},
        )
        assert answer.status_code == 400, endpoint
        assert answer.json()["error"]["code"] == "refused" and why in answer.json()["error"]["message"], endpoint
    assert await devices_of(companion, "alice@acme.test") == []


async def test_keys_that_are_not_a_browsers_are_refused(companion, browser, push_service):
    key = (await browser.get("/push/key")).json()["public_key"]
    device = push_service.subscribe(key).to_json()
    token = csrf_of((await browser.get("/settings")).text)
    for keys in [
        {
            "p256dh": base64.urlsafe_b64encode(b"\x04" + b"\x01" * 64).decode().rstrip("="),
            "auth": device["keys"]["auth"],
        },
        {"p256dh": device["keys"]["p256dh"], "auth": "c2hvcnQ"},
        {"p256dh": "not base64!", "auth": device["keys"]["auth"]},
    ]:
        answer = await browser.post(
            "/push/subscriptions", json={**device, "keys": keys}, headers={"X-CSRF-Token": token}
        )
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "refused", keys
    missing = await browser.post(
        "/push/subscriptions", json={"endpoint": device["endpoint"]}, headers={"X-CSRF-Token": token}
    )
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid_input"
    assert await devices_of(companion, "alice@acme.test") == []


async def test_a_subscription_saved_under_the_development_setting_is_not_called_without_it(
    settings, registry, companion, demo_keys, push_service
):
    """The address is checked again at each delivery, not only when the device subscribed."""
    strict = Companion.build(settings.model_copy(update={"webhooks_allow_private": False}), registry=registry)
    try:
        push = channel_of(strict)
        device = push_service.subscribe(push.public_key)
        async with strict.db.transaction() as session:
            alice = await session.scalar(select(User).where(User.email == "alice@acme.test"))
            assert alice is not None
            alice.notify_push = True
            await push_subscriptions.save(
                session, alice.id, device.endpoint, device.p256dh, device.to_json()["keys"]["auth"]
            )
            user_id = alice.id
        notice = Notice(
            approval_id="apr_1", workspace_id="ws", approvers=(user_id,), asker_id=user_id, summary="Do a thing",
            app_name="Harmony", tool="t", risk="write", assistant="", expires_at=utcnow() + timedelta(minutes=5),
        )  # fmt: skip
        await push.waiting(notice)
        assert push_service.received == [] and push_service.refused == []
        assert await devices_of(strict, "alice@acme.test") == [device.endpoint]
    finally:
        await strict.aclose()


async def test_an_agent_key_or_assistant_token_cannot_add_a_device(
    app_client, companion, demo_keys, browser, push_service
):
    key = (await browser.get("/push/key")).json()["public_key"]
    device = push_service.subscribe(key).to_json()
    async with (
        httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as assistant,
        httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as consenting,
    ):
        _, tokens = await tokens_for(assistant, consenting, scope="api:read api:write", resource=API)
        for credential in (demo_keys.keys["alice@acme.test"], tokens["access_token"]):
            bearer = {"Authorization": f"Bearer {credential}"}
            added = await assistant.post("/push/subscriptions", json=device, headers={**bearer, "X-CSRF-Token": "x"})
            assert added.status_code == 401 and added.json()["error"]["code"] == "not_signed_in"
            assert (await assistant.get("/push/key", headers=bearer)).status_code == 401
            # REST offers no way to add a device at all.
            assert (await assistant.post("/api/v1/push/subscriptions", json=device, headers=bearer)).status_code == 404
    # A signed-in browser without the page's CSRF token (a cross-site request riding the cookie) is refused too.
    forged = await browser.post("/push/subscriptions", json=device)
    assert forged.status_code == 403 and forged.json()["error"]["code"] == "csrf"
    token = csrf_of((await browser.get("/settings")).text)
    as_form = await browser.post("/push/subscriptions", data={"csrf": token, "endpoint": device["endpoint"]})
    assert as_form.status_code == 403
    plain = await browser.post(
        "/push/subscriptions", content=json.dumps(device), headers={"X-CSRF-Token": token, "Content-Type": "text/plain"}
    )
    assert plain.status_code == 415
    assert await devices_of(companion, "alice@acme.test") == []


async def test_a_person_keeps_at_most_ten_devices(companion, browser, push_service):
    devices = [await a_device(browser, push_service) for _ in range(push_subscriptions.MAX_DEVICES + 2)]
    kept = await devices_of(companion, "alice@acme.test")
    assert len(kept) == push_subscriptions.MAX_DEVICES
    assert devices[0].endpoint not in kept and devices[-1].endpoint in kept


async def test_the_same_browser_enabled_by_another_person_notifies_only_them(
    app_client, companion, demo_keys, browser, push_service
):
    shared = await a_device(browser, push_service)
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as admin:
        await sign_in(admin, "admin@acme.test")
        assert (await enable(admin, shared)).status_code == 201
    assert await devices_of(companion, "alice@acme.test") == []
    assert await devices_of(companion, "admin@acme.test") == [shared.endpoint]


async def test_the_vapid_key_is_the_same_on_every_replica_and_follows_the_settings(settings, registry, companion):
    replica = Companion.build(settings, registry=registry)
    try:
        assert channel_of(replica).public_key == channel_of(companion).public_key
    finally:
        await replica.aclose()
    derived = public_key_of(vapid_of(settings))
    assert derived == channel_of(companion).public_key and len(base64.urlsafe_b64decode(derived + "=")) == 65
    rotated = settings.model_copy(update={"secret_key": SecretStr("another-secret")})
    assert public_key_of(vapid_of(rotated)) != derived

    key = ec.generate_private_key(ec.SECP256R1())
    raw = base64.urlsafe_b64encode(key.private_numbers().private_value.to_bytes(32, "big")).decode().rstrip("=")
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    for configured in (raw, pem):
        chosen = settings.model_copy(update={"vapid_private_key": SecretStr(configured)})
        assert public_key_of(vapid_of(chosen)) == base64.urlsafe_b64encode(point).decode().rstrip("=")
    # A key that is not one stops the server as it starts, rather than at the first notification.
    broken = settings.model_copy(update={"vapid_private_key": SecretStr("not a key")})
    with pytest.raises(SettingsError, match="COMPANION_VAPID_PRIVATE_KEY"):
        WebPush(broken, companion.db, companion.http)


async def test_the_fake_push_service_refuses_a_token_it_cannot_verify(companion, push_service):
    """The fake's checks are what the end-to-end tests lean on: a token signed by another key is refused."""
    push = channel_of(companion)
    device = push_service.subscribe(push.public_key)
    row = PushSubscription(
        id="psh_x", user_id="u", endpoint=device.endpoint, p256dh=device.p256dh, auth=device.to_json()["keys"]["auth"]
    )
    other = push_service.subscribe("B" + "A" * 86)  # bound to another application server key
    row_other = PushSubscription(
        id="psh_y", user_id="u", endpoint=other.endpoint, p256dh=other.p256dh, auth=other.to_json()["keys"]["auth"]
    )
    assert await push.deliver(row, b'{"title":"t"}', 60) == 201
    assert await push.deliver(row_other, b'{"title":"t"}', 60) == 403
    assert push_service.refused == [(403, "k is not the key the subscription was made with")]


async def test_the_service_worker_and_the_manifest_make_the_console_an_installable_app(app_client):
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as anyone:
        worker = await anyone.get("/sw.js")
        assert worker.status_code == 200 and worker.headers["content-type"].startswith("text/javascript")
        # Its scope may be the whole site, /approvals/... included, whatever path it is served from.
        assert worker.headers["service-worker-allowed"] == "/"
        assert "notificationclick" in worker.text and "showNotification" in worker.text

        served = await anyone.get("/manifest.webmanifest")
        assert served.status_code == 200 and served.headers["content-type"].startswith("application/manifest+json")
        manifest = json.loads(served.text)
        assert manifest["name"] == "Harmony Companion" and manifest["display"] == "standalone"
        assert manifest["start_url"] == "/inbox" and manifest["scope"] == "/"
        sizes = set()
        for icon in manifest["icons"]:
            image = await anyone.get(icon["src"])
            assert image.status_code == 200 and image.headers["content-type"].startswith(icon["type"]), icon
            if icon["type"] == "image/png":
                # A PNG's width and height are the IHDR chunk's first eight bytes.
                width, height = int.from_bytes(image.content[16:20]), int.from_bytes(image.content[20:24])
                assert icon["sizes"] == f"{width}x{height}", icon
                sizes.add((width, icon["purpose"]))
        # What Chromium asks of an installable app: a 192 and a 512 pixel icon; Android masks a maskable one.
        assert {(192, "any"), (512, "any"), (512, "maskable")} <= sizes

        page = await anyone.get("/login")
        assert '<link rel="manifest" href="/manifest.webmanifest">' in page.text
        assert '<meta name="theme-color"' in page.text


async def test_an_escalation_that_names_push_reaches_a_person_who_turned_push_off(
    app_client, companion, demo_keys, browser, push_service
):
    """The admin's rule outranks the person's everyday choice once no one has decided in time: that is the point
    of escalating. It needs a device the person enabled; nothing reaches one they never did."""
    device = await a_device(browser, push_service)
    async with companion.db.transaction() as session:
        alice = await session.scalar(select(User).where(User.email == "alice@acme.test"))
        assert alice is not None
        alice.notify_push = False
    admin = {"Authorization": f"Bearer {demo_keys.user_keys['admin@acme.test']}"}
    rule = {
        "effect": "ask", "scope": "workspace", "tool": "harmony_create_action_item",
        "escalate_after_minutes": 30, "escalate_by": ["push"],
    }  # fmt: skip
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as http:
        made = await http.post("/api/v1/rules", headers=admin, json=rule)
        assert made.status_code == 201 and made.json()["escalate_by"] == ["push"], made.text
        approval_id = await ask(app_client, demo_keys)
        await companion.notices.drain()
        assert push_service.received == [], "push is off for Alice, and nothing has escalated yet"

        async with companion.db.transaction() as session:
            approval = await session.get(Approval, approval_id)
            assert approval is not None
            approval.escalate_at = utcnow() - timedelta(seconds=1)
        assert len(await companion.gateway.flow.escalate_due(companion.registry.tools)) == 1
        await companion.notices.drain()
        [message] = push_service.messages_for(device)
        assert message["url"] == f"{BASE}/approvals/{approval_id}"

        alice_key = {"Authorization": f"Bearer {demo_keys.user_keys['alice@acme.test']}"}
        view = (await http.get(f"/api/v1/approvals/{approval_id}", headers=alice_key)).json()["approvers"]
        assert view["escalate_by"] == ["push"] and view["escalate_to"] is None
        assert view["admins"] is False, "a rule that escalates by a channel alone adds no one"
    await companion.audit.flush()
    async with companion.db.session() as session:
        escalated = await session.scalar(
            select(AuditEntry).where(AuditEntry.approval_id == approval_id, AuditEntry.event == "approval.escalated")
        )
    assert escalated is not None and escalated.reasons == ["told by: push"]

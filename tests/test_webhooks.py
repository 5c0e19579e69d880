"""Webhooks against a real receiver on 127.0.0.1 that checks each delivery with the documented snippet.

Signed deliveries with their body intact, retries with backoff after a 500,
a failed delivery visible and retried, nothing lost when the server is killed
between the commit and the delivery, replays refused by the receiver, the URL
rules (private addresses, https in production, DNS rebinding), several
dispatchers sharing one database, and the API and CLI that manage endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import re
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import delete, select, update

from server.app import Companion, create_app
from server.cli import webhooks as webhooks_cli
from server.services import addresses, demo
from server.services.webhooks.dispatcher import Dispatcher, default_backoff, webhook_client, worker
from server.services.webhooks.endpoints import create_endpoint, open_secret, secret_context
from server.services.webhooks.outbox import enqueue
from store.db import Database
from store.directory import add_member, create_workspace
from store.keys import create_key
from store.models import Base, DeliveryStatus, KeyKind, Plan, Role, WebhookDelivery, WebhookEndpoint, Workspace
from tests.conftest import TEST_SECRET
from tests.webhook_receiver import Receiver, serve_receiver, snippet

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
PROCESSED = {"meeting_id": "mtg_abc123", "title": "Sales Call - Acme Corp ✓", "duration": 1800}
ROOT = Path(__file__).resolve().parent.parent


def no_wait(attempt: int) -> float:
    return 0.0


@dataclass
class World:
    companion: Companion
    keys: demo.DemoKeys
    app: Any
    receiver: Receiver
    http: httpx.AsyncClient
    workspace_id: str

    def person(self, who: str = "admin") -> httpx.AsyncClient:
        key = self.keys.user_keys[f"{who}@acme.test"]
        return self.client(key)

    def client(self, key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=BASE, headers=headers)

    def dispatcher(self, **options: Any) -> Dispatcher:
        return Dispatcher.of(
            self.companion.settings,
            self.companion.db,
            self.companion.box,
            self.http,
            **({"backoff": no_wait} | options),
        )

    async def add_endpoint(
        self, events: list[str] | None = None, url: str | None = None, who: str = "admin"
    ) -> dict[str, Any]:
        async with self.person(who) as client:
            response = await client.post(
                "/api/v1/webhooks", json={"url": url or self.receiver.url, "events": events or ["meeting.processed"]}
            )
        assert response.status_code == 201, response.text
        created = response.json()
        self.receiver.secret = created["secret"]
        return created

    async def emit(self, event: str = "meeting.processed", data: dict[str, Any] | None = None) -> int:
        async with self.companion.db.transaction() as session:
            return await enqueue(session, self.workspace_id, event, data or PROCESSED)

    async def deliveries(self) -> list[WebhookDelivery]:
        async with self.companion.db.session() as session:
            return list(await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at)))


@pytest.fixture
async def world(settings, registry) -> AsyncIterator[World]:
    # run_workers off: each test drives the dispatcher itself, or starts the worker when it means to.
    settings = settings.model_copy(update={"webhooks_allow_private": True, "run_workers": False})
    companion = Companion.build(settings, registry=registry)
    async with companion.db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(delete(table))
    async with companion.db.transaction() as session:
        keys = await demo.seed(session, companion.registry, companion.box, TEST_SECRET.encode())
    principal = await companion.principal_for(keys.user_keys["admin@acme.test"])
    assert principal is not None
    app = create_app(companion)
    async with (
        serve_receiver(Receiver()) as receiver,
        app.router.lifespan_context(app),
        webhook_client() as http,
    ):
        yield World(companion, keys, app, receiver, http, principal.workspace_id)


# --- delivery -------------------------------------------------------------------------------------------------------


async def test_a_delivery_is_signed_with_the_endpoint_secret_and_its_body_arrives_intact(world):
    endpoint = await world.add_endpoint()
    assert await world.emit() == 1

    assert await world.dispatcher().run_once() == 1

    [received] = world.receiver.received
    assert received.verdict == "processed"
    [delivery] = await world.deliveries()
    assert received.body == delivery.body.encode()
    assert received.event == {"event": "meeting.processed", "timestamp": received.event["timestamp"], "data": PROCESSED}
    assert received.event["timestamp"].endswith("Z")
    headers = received.headers
    assert headers["content-type"] == "application/json"
    assert headers["x-harmony-event"] == "meeting.processed"
    assert headers["x-harmony-delivery"] == delivery.id
    timestamp = int(headers["x-harmony-timestamp"])
    assert abs(time.time() - timestamp) < 30
    signed = f"{timestamp}.".encode() + received.body
    mac = hmac.new(endpoint["secret"].encode(), signed, hashlib.sha256).hexdigest()
    assert headers["x-harmony-signature"] == f"v1={mac}"
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.DELIVERED, 1, 200)
    assert delivery.delivered_at is not None and delivery.locked_until is None


async def test_only_subscribed_active_endpoints_of_the_workspace_get_an_event(world):
    processed = await world.add_endpoint(["meeting.processed"])
    insights = await world.add_endpoint(["meeting.failed", "insight.generated"])
    paused = await world.add_endpoint(["meeting.processed"])
    async with world.person() as client:
        assert (await client.patch(f"/api/v1/webhooks/{paused['id']}", json={"active": False})).status_code == 200
    assert await world.emit("meeting.processed") == 1
    assert await world.emit("insight.generated", {"insight_id": "ins_1", "meeting_id": "mtg_abc123"}) == 1
    assert await world.emit("meeting.started", {"meeting_id": "mtg_abc123"}) == 0
    with pytest.raises(ValueError, match="unknown webhook event"):
        await world.emit("meeting.deleted")
    assert {(d.endpoint_id, d.event) for d in await world.deliveries()} == {
        (processed["id"], "meeting.processed"),
        (insights["id"], "insight.generated"),
    }


async def test_a_500_is_retried_after_the_backoff_and_then_delivered(world):
    await world.add_endpoint()
    world.receiver.answers = [500]
    await world.emit()
    waits: list[int] = []

    def recorded(attempt: int) -> float:
        waits.append(attempt)
        return 0.0

    dispatcher = world.dispatcher(backoff=recorded)
    assert await dispatcher.run_once() == 1
    [delivery] = await world.deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.PENDING, 1, 500)
    assert delivery.last_error == "HTTP 500: receiver down for maintenance"
    assert waits == [1]

    assert await dispatcher.run_once() == 1
    assert world.receiver.verdicts() == ["answered 500", "processed"]
    first, second = world.receiver.received
    assert first.delivery_id == second.delivery_id == delivery.id and first.body == second.body
    [delivery] = await world.deliveries()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (DeliveryStatus.DELIVERED, 2, 200)
    assert delivery.last_error is None


async def test_a_retry_waits_for_its_backoff(world):
    await world.add_endpoint()
    world.receiver.answers = [503]
    await world.emit()
    dispatcher = world.dispatcher(backoff=default_backoff)
    before = time.time()
    assert await dispatcher.run_once() == 1
    assert await dispatcher.run_once() == 0, "not due for 10 s"
    [delivery] = await world.deliveries()
    assert 9 <= delivery.next_attempt_at.timestamp() - before <= 12


def test_the_default_backoff_grows_three_fold_up_to_an_hour():
    assert [default_backoff(n) for n in range(1, 9)] == [10, 30, 90, 270, 810, 2430, 3600, 3600]


async def test_after_the_attempt_limit_a_delivery_is_failed_visible_and_can_be_retried(world):
    endpoint = await world.add_endpoint()
    world.receiver.answers = [500, 500, 500]
    await world.emit()
    dispatcher = world.dispatcher(max_attempts=3)
    for _ in range(4):
        await dispatcher.run_once()
    assert world.receiver.verdicts() == ["answered 500"] * 3

    async with world.person() as client:
        failed = (await client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries", params={"status": "failed"})).json()
        assert failed["pagination"]["total"] == 1
        [shown] = failed["data"]
        assert shown["status"] == "failed" and shown["attempts"] == 3 and shown["last_status_code"] == 500
        assert shown["last_error"].startswith("HTTP 500") and shown["next_attempt_at"] is None
        assert shown["payload"] == {
            "event": "meeting.processed",
            "timestamp": shown["payload"]["timestamp"],
            "data": PROCESSED,
        }
        pending = await client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries", params={"status": "pending"})
        assert pending.json()["data"] == []

        retried = await client.post(f"/api/v1/webhooks/deliveries/{shown['id']}/retry")
        assert retried.status_code == 202
        assert retried.json()["status"] == "pending" and retried.json()["attempts"] == 0
        again = await client.post(f"/api/v1/webhooks/deliveries/{shown['id']}/retry")
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"

    assert await dispatcher.run_once() == 1
    assert world.receiver.verdicts()[-1] == "processed"
    [delivery] = await world.deliveries()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)


async def test_redirects_are_not_followed(world):
    await world.add_endpoint()
    world.receiver.answers = [307]
    await world.emit()
    await world.dispatcher(max_attempts=1).run_once()
    assert world.receiver.verdicts() == ["answered 307"], "the Location was never requested"
    [delivery] = await world.deliveries()
    assert delivery.status is DeliveryStatus.FAILED and delivery.last_status_code == 307
    assert "redirects are not followed" in delivery.last_error


async def test_an_unreachable_receiver_is_a_failed_attempt(world):
    await world.add_endpoint(url="http://127.0.0.1:9/hook")
    await world.emit()
    await world.dispatcher().run_once()
    [delivery] = await world.deliveries()
    assert delivery.status is DeliveryStatus.PENDING and delivery.last_status_code is None
    assert delivery.last_error.startswith("could not connect: ConnectError")


async def test_two_dispatchers_on_one_database_never_send_a_delivery_twice(world, settings):
    await world.add_endpoint()
    for n in range(30):
        await world.emit(data={**PROCESSED, "n": n})
    other = Database(settings.resolved_database_url)
    try:
        first = world.dispatcher(batch=7)
        second = Dispatcher(other, world.companion.box, world.http, https_only=False, allow_private=True, batch=7)

        async def drain(dispatcher: Dispatcher) -> None:
            while await dispatcher.run_once():
                pass

        await asyncio.gather(drain(first), drain(second), drain(first), drain(second))
    finally:
        await other.dispose()
    ids = [r.delivery_id for r in world.receiver.received]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert set(world.receiver.verdicts()) == {"processed"}
    assert {(d.status, d.attempts) for d in await world.deliveries()} == {(DeliveryStatus.DELIVERED, 1)}


# --- crashes --------------------------------------------------------------------------------------------------------

CHILD = """
import asyncio, sys
from datetime import timedelta
from server.settings import load_settings
from server.services.webhooks.dispatcher import Dispatcher, webhook_client
from server.services.webhooks.outbox import enqueue
from store.crypto import SecretBox
from store.db import Database

async def main(workspace_id, then):
    settings = load_settings()
    db = Database(settings.resolved_database_url)
    async with db.transaction() as session:
        data = {"meeting_id": "mtg_crash", "title": "Before the crash", "duration": 60}
        await enqueue(session, workspace_id, "meeting.processed", data)
    print("committed", flush=True)
    if then == "deliver":
        box = SecretBox(settings.encryption_keys())
        async with webhook_client() as http:
            dispatcher = Dispatcher(db, box, http, https_only=False, allow_private=True, lease=timedelta(seconds=1))
            await dispatcher.forever(poll=0.05)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def committed_then_killed(world: World, database_url: str, tmp_path: Path, then: str, killed_when: Any) -> None:
    """Run a server process that commits an event (and, with ``deliver``, starts sending it), then SIGKILL it."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "COMPANION_DATABASE_URL": database_url,
        "COMPANION_SECRET_KEY": TEST_SECRET,
        "COMPANION_DATA_DIR": str(tmp_path / "child"),
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, world.workspace_id, then, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"committed\n"
        await killed_when()
    finally:
        child.kill()
        await child.wait()


async def restarted(world: World) -> None:
    """A fresh server's worker (the one server/app.py starts) runs until every delivery is delivered."""
    task = asyncio.create_task(worker(world.companion.settings, world.companion.db, world.companion.box))
    try:
        async with asyncio.timeout(15):
            while {d.status for d in await world.deliveries()} != {DeliveryStatus.DELIVERED}:
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_no_event_is_lost_when_the_server_is_killed_between_commit_and_delivery(world, database_url, tmp_path):
    await world.add_endpoint()

    async def at_once() -> None:
        return None

    await committed_then_killed(world, database_url, tmp_path, "wait", at_once)
    assert world.receiver.received == []
    [pending] = await world.deliveries()
    assert (pending.status, pending.attempts) == (DeliveryStatus.PENDING, 0)

    await restarted(world)
    [received] = world.receiver.received
    assert received.verdict == "processed"
    assert received.event["data"] == {"meeting_id": "mtg_crash", "title": "Before the crash", "duration": 60}
    [delivery] = await world.deliveries()
    assert delivery.status is DeliveryStatus.DELIVERED and received.delivery_id == delivery.id


async def test_a_delivery_cut_short_by_a_crash_is_sent_again_once_its_lease_runs_out(world, database_url, tmp_path):
    await world.add_endpoint()
    world.receiver.hang_on_first = True

    async def while_sending() -> None:
        await world.receiver.wait_for(1)

    await committed_then_killed(world, database_url, tmp_path, "deliver", while_sending)
    [held] = await world.deliveries()
    assert (held.status, held.attempts) == (DeliveryStatus.PENDING, 1) and held.locked_until is not None

    await restarted(world)
    hung, delivered = world.receiver.received
    assert (hung.verdict, delivered.verdict) == ("hung", "processed")
    assert hung.delivery_id == delivered.delivery_id == held.id, "the receiver can tell it is the same delivery"
    [delivery] = await world.deliveries()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)


# --- the receiver's check -------------------------------------------------------------------------------------------


async def test_replays_and_forgeries_are_refused_by_the_documented_check(world):
    endpoint = await world.add_endpoint()
    await world.emit()
    await world.dispatcher().run_once()
    [original] = world.receiver.received
    assert original.verdict == "processed"

    def signed(timestamp: int, body: bytes, secret: str = endpoint["secret"]) -> dict[str, str]:
        mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return {**original.headers, "x-harmony-timestamp": str(timestamp), "x-harmony-signature": f"v1={mac}"}

    now = int(time.time())
    forged = original.body.replace(b"Sales Call", b"Fake Call")
    attempts = [
        (original.headers, original.body, "duplicate"),  # the same request again, within the tolerance
        (signed(now - 600, original.body), original.body, "invalid: signed too long ago"),
        (signed(now + 600, original.body), original.body, "invalid: signed too long ago"),
        (original.headers, forged, "invalid: signature mismatch"),
        (signed(now, forged, "whsec_guessed"), forged, "invalid: signature mismatch"),
        ({**original.headers, "x-harmony-timestamp": "soon"}, original.body, "invalid: missing or malformed"),
        ({"content-type": "application/json"}, original.body, "invalid: missing or malformed"),
    ]
    async with httpx.AsyncClient() as client:
        for headers, body, verdict in attempts:
            sent = {k: v for k, v in headers.items() if k not in ("content-length", "host")}
            answer = await client.post(world.receiver.url, content=body, headers=sent)
            assert world.receiver.received[-1].verdict.startswith(verdict)
            assert answer.status_code == (204 if verdict == "duplicate" else 400)
    assert world.receiver.verdicts().count("processed") == 1


def test_the_documented_check_accepts_what_the_server_signs():
    from server.services.webhooks.signing import headers as signed_headers
    from server.services.webhooks.signing import new_secret

    secret = new_secret()
    body = '{"event":"meeting.failed","timestamp":"2026-02-01T15:30:00Z","data":{"meeting_id":"mtg_1"}}'
    headers = signed_headers(secret, delivery_id="whd_1", event="meeting.failed", timestamp=1_700_000_000, body=body)
    event = snippet.verify_webhook(secret, headers, body.encode(), now=1_700_000_100)
    assert event["data"] == {"meeting_id": "mtg_1"}
    assert secret.startswith("whsec_") and len(secret) > 40
    with pytest.raises(snippet.InvalidWebhook, match="too long ago"):
        snippet.verify_webhook(secret, headers, body.encode(), now=1_700_000_301)
    with pytest.raises(snippet.DuplicateWebhook):
        snippet.verify_webhook(secret, headers, body.encode(), processed={"whd_1"}, now=1_700_000_100)


# --- URL rules ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.10/hook", "private"),
        ("http://172.16.5.4/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://[::1]/hook", "loopback"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[fd00::1]/hook", "private"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://240.0.0.1/hook", "private"),
        ("http://100.64.0.1/hook", "non-public"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("http://[64:ff9b::a00:1]/hook", "private"),
    ],
)
async def test_urls_that_reach_non_public_addresses_are_refused(url, reason):
    with pytest.raises(addresses.UnsafeUrl, match=f"resolves to a {reason} address"):
        await addresses.resolve(url, https_only=False, allow_private=False)
    target, resolved = await addresses.resolve(url, https_only=False, allow_private=True)
    assert resolved and target.url == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://hooks.example.com/x", "must be an http(s) URL"),
        ("https://user:pw@hooks.example.com/x", "must not contain a user name or password"),
        ("https://hooks.example.com/x#frag", "must not contain a fragment"),
        ("https:///x", "must name a host"),
        ("https://hooks.example.com:99999/x", "invalid port"),
        ("https://hooks.example.com/a b", "must not contain spaces"),
        ("https://hooks.example.com/" + "a" * 2000, "at most 2000 characters"),
    ],
)
def test_malformed_urls_are_refused(url, problem):
    with pytest.raises(addresses.UnsafeUrl, match=re.escape(problem)):
        addresses.parse(url, https_only=False)


async def test_every_address_of_a_name_must_be_public_and_production_wants_https():
    async def public(host: str, port: int) -> list[str]:
        return ["8.8.8.8", "2001:4860:4860::8888"]

    async def mixed(host: str, port: int) -> list[str]:
        return ["8.8.8.8", "10.0.0.7"]

    target, resolved = await addresses.resolve(
        "https://hooks.example.com/h", https_only=True, allow_private=False, resolver=public
    )
    assert resolved == ["8.8.8.8", "2001:4860:4860::8888"]
    assert target.pinned("2001:4860:4860::8888") == "https://[2001:4860:4860::8888]/h"
    assert target.host_header == "hooks.example.com"
    with pytest.raises(addresses.UnsafeUrl, match="private address"):
        await addresses.resolve("https://hooks.example.com/h", https_only=True, allow_private=False, resolver=mixed)
    with pytest.raises(addresses.UnsafeUrl, match="must use https"):
        await addresses.resolve("http://hooks.example.com/h", https_only=True, allow_private=False, resolver=public)
    with pytest.raises(addresses.UnsafeUrl, match="does not resolve"):
        await addresses.resolve("https://nowhere.invalid/h", https_only=False, allow_private=False)


async def test_the_api_refuses_unsafe_urls_naming_the_field(world, monkeypatch):
    async with world.person() as client:
        monkeypatch.setattr(addresses, "allow_private", lambda settings: False)
        local = await client.post("/api/v1/webhooks", json={"url": world.receiver.url, "events": ["meeting.failed"]})
        assert local.status_code == 422
        assert local.json()["error"]["code"] == "invalid_request"
        assert "loopback" in local.json()["error"]["details"]["fields"]["url"]

        monkeypatch.setattr(addresses, "require_https", lambda settings: True)
        plain = await client.post("/api/v1/webhooks", json={"url": "http://8.8.8.8/h", "events": ["meeting.failed"]})
        assert plain.json()["error"]["details"]["fields"] == {"url": "must use https"}
    assert world.receiver.received == []
    async with world.companion.db.session() as session:
        assert (await session.scalars(select(WebhookEndpoint))).all() == []


async def dns_endpoint(world: World) -> WebhookEndpoint:
    """An endpoint on a name that passed the check when it was saved (as if it then resolved to a public address)."""
    port = world.receiver.origin.rsplit(":", 1)[1]
    async with world.companion.db.transaction() as session:
        endpoint, secret = await create_endpoint(
            session,
            world.companion.box,
            workspace_id=world.workspace_id,
            url=f"http://hooks.example.test:{port}/hook",
            events=["meeting.processed"],
        )
    world.receiver.secret = secret
    return endpoint


async def to_loopback(host: str, port: int) -> list[str]:
    assert host == "hooks.example.test"
    return ["127.0.0.1"]


async def test_a_name_that_now_resolves_to_a_private_address_is_refused_at_delivery(world):
    await dns_endpoint(world)
    await world.emit()
    await world.dispatcher(allow_private=False, resolver=to_loopback).run_once()
    assert world.receiver.received == []
    [delivery] = await world.deliveries()
    assert delivery.status is DeliveryStatus.PENDING and delivery.attempts == 1
    assert delivery.last_error.startswith("refused: the URL the host hooks.example.test resolves to a loopback")


async def test_a_delivery_goes_to_the_address_that_was_checked_with_the_urls_host(world):
    await dns_endpoint(world)
    await world.emit()
    # hooks.example.test is not in any DNS: only the checked address can have been used.
    await world.dispatcher(resolver=to_loopback).run_once()
    [received] = world.receiver.received
    assert received.verdict == "processed"
    assert received.headers["host"] == f"hooks.example.test:{world.receiver.origin.rsplit(':', 1)[1]}"


def certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for the DNS name ``name``, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.mark.parametrize("certified", ["hooks.example.test", "other.example.test"])
async def test_over_https_the_pinned_connection_checks_the_certificate_against_the_urls_host(
    world, tmp_path, certified
):
    cert, key = certificate(tmp_path, certified)
    trusting = ssl.create_default_context(cafile=str(cert))
    async with (
        serve_receiver(Receiver(), tls=(cert, key)) as receiver,
        httpx.AsyncClient(verify=trusting, follow_redirects=False, trust_env=False) as http,
    ):
        port = receiver.origin.rsplit(":", 1)[1]
        async with world.companion.db.transaction() as session:
            _, receiver.secret = await create_endpoint(
                session,
                world.companion.box,
                workspace_id=world.workspace_id,
                url=f"https://hooks.example.test:{port}/hook",
                events=["meeting.processed"],
            )
        await world.emit()
        dispatcher = Dispatcher(
            world.companion.db, world.companion.box, http, https_only=True, allow_private=True, resolver=to_loopback
        )
        await dispatcher.run_once()
        [delivery] = await world.deliveries()
        if certified == "hooks.example.test":
            assert delivery.status is DeliveryStatus.DELIVERED
            assert receiver.verdicts() == ["processed"]
        else:
            assert receiver.received == [] and delivery.status is DeliveryStatus.PENDING
            assert "certificate" in delivery.last_error.lower()


# --- the API --------------------------------------------------------------------------------------------------------


async def test_the_secret_is_generated_shown_once_and_sealed_to_its_endpoint(world):
    endpoint = await world.add_endpoint(["meeting.processed", "meeting.failed", "meeting.processed"])
    assert endpoint["events"] == ["meeting.processed", "meeting.failed"]
    assert endpoint["secret"].startswith("whsec_") and endpoint["created_by"].startswith("usr_")
    async with world.person() as client:
        shown = (await client.get(f"/api/v1/webhooks/{endpoint['id']}")).json()
        listed = (await client.get("/api/v1/webhooks")).json()
    assert "secret" not in shown and endpoint["secret"] not in json.dumps(listed)
    assert {k: v for k, v in endpoint.items() if k != "secret"} == shown
    assert listed["data"] == [shown] and listed["pagination"]["total"] == 1

    async with world.companion.db.session() as session:
        row = await session.get(WebhookEndpoint, endpoint["id"])
    assert endpoint["secret"] not in row.sealed_secret
    assert world.companion.box.open(row.sealed_secret, context=f"webhook:{row.id}").decode() == endpoint["secret"]
    assert secret_context(row.id) == f"webhook:{row.id}" and open_secret(world.companion.box, row) == endpoint["secret"]

    async with world.person() as client:
        rotated = await client.post(f"/api/v1/webhooks/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != endpoint["secret"]

    await world.emit()
    await world.dispatcher().run_once()
    assert world.receiver.verdicts() == ["invalid: signature mismatch"], "the receiver still holds the old secret"
    world.receiver.secret = new_secret
    world.receiver.answers = []
    async with world.companion.db.transaction() as session:
        await session.execute(update(WebhookDelivery).values(next_attempt_at=WebhookDelivery.created_at))
    await world.dispatcher().run_once()
    assert world.receiver.verdicts()[-1] == "processed"


async def test_a_test_event_is_sent_signed_at_once_and_tried_only_once(world):
    endpoint = await world.add_endpoint(["meeting.failed"])
    async with world.person() as client:
        answer = await client.post(f"/api/v1/webhooks/{endpoint['id']}/test")
        assert answer.status_code == 200, answer.text
        delivery = answer.json()
        assert delivery["status"] == "delivered" and delivery["event"] == "webhook.test"
        assert delivery["attempts"] == 1 and delivery["last_status_code"] == 200
        [received] = world.receiver.received
        assert received.verdict == "processed" and received.headers["x-harmony-event"] == "webhook.test"
        assert received.event["data"]["endpoint_id"] == endpoint["id"]

        world.receiver.answers = [500]
        failed = (await client.post(f"/api/v1/webhooks/{endpoint['id']}/test")).json()
        assert failed["status"] == "failed" and failed["attempts"] == 1 and failed["last_status_code"] == 500

        assert (await client.patch(f"/api/v1/webhooks/{endpoint['id']}", json={"active": False})).status_code == 200
        paused = await client.post(f"/api/v1/webhooks/{endpoint['id']}/test")
        assert paused.status_code == 409
        listed = (await client.get(f"/api/v1/webhooks/{endpoint['id']}/deliveries")).json()
        assert [d["status"] for d in listed["data"]] == ["failed", "delivered"]


async def test_an_endpoint_can_be_changed_paused_and_deleted(world):
    endpoint = await world.add_endpoint()
    path = f"/api/v1/webhooks/{endpoint['id']}"
    async with world.person() as client:
        changed = await client.patch(path, json={"events": ["meeting.failed"], "description": "ops"})
        assert changed.status_code == 200
        assert changed.json()["events"] == ["meeting.failed"] and changed.json()["url"] == endpoint["url"]
        assert (await client.patch(path, json={"url": None})).json()["error"]["details"]["fields"] == {
            "url": "Input should be a valid string"
        }
        assert "secret" in (await client.patch(path, json={"secret": "mine"})).json()["error"]["details"]["fields"]
        unknown = await client.patch(path, json={"events": ["meeting.deleted"]})
        assert unknown.status_code == 422 and "events.0" in unknown.json()["error"]["details"]["fields"]
        empty = await client.post("/api/v1/webhooks", json={"url": world.receiver.url, "events": []})
        assert "events" in empty.json()["error"]["details"]["fields"]

        assert (await client.patch(path, json={"active": False})).json()["active"] is False
        await world.emit("meeting.failed", {"meeting_id": "mtg_1", "title": "t", "reason": "r"})
        assert await world.deliveries() == [], "a paused endpoint is not subscribed"
        assert (await client.patch(path, json={"active": True})).json()["active"] is True
        await world.emit("meeting.failed", {"meeting_id": "mtg_1", "title": "t", "reason": "r"})
        assert await client.patch(path, json={"active": False})
        assert await world.dispatcher().run_once() == 0, "the queue of a paused endpoint waits"
        assert (await client.patch(path, json={"active": True})).status_code == 200
        assert await world.dispatcher().run_once() == 1

        assert (await client.delete(path)).status_code == 204
        assert (await client.get(path)).status_code == 404
        assert (await client.delete(path)).status_code == 404
    assert await world.deliveries() == [], "its deliveries went with it"


async def test_members_read_endpoints_managers_change_them_agents_and_strangers_get_nothing(world):
    endpoint = await world.add_endpoint()
    await world.emit()
    path = f"/api/v1/webhooks/{endpoint['id']}"
    async with world.person("alice") as member:
        assert (await member.get("/api/v1/webhooks")).json()["data"][0]["id"] == endpoint["id"]
        assert (await member.get(path)).status_code == 200
        for method, url, body in [
            ("POST", "/api/v1/webhooks", {"url": world.receiver.url, "events": ["meeting.failed"]}),
            ("PATCH", path, {"active": False}),
            ("DELETE", path, None),
            ("POST", f"{path}/test", None),
            ("POST", f"{path}/rotate-secret", None),
            ("GET", f"{path}/deliveries", None),
        ]:
            answer = await member.request(method, url, json=body)
            assert answer.status_code == 403, (method, url)
            assert answer.json()["error"]["code"] == "forbidden"
    async with world.client(world.keys.keys["admin@acme.test"]) as agent:
        answer = await agent.get("/api/v1/webhooks")
        assert answer.status_code == 403 and "user key" in answer.json()["error"]["message"]
    async with world.client(None) as nobody:
        assert (await nobody.get("/api/v1/webhooks")).status_code == 401
    assert world.receiver.received == []


async def test_a_member_trusted_with_integrations_manages_webhooks_and_solo_has_none(world):
    async with world.companion.db.transaction() as session:
        workspace = await session.get(Workspace, world.workspace_id)
        await add_member(session, workspace, email="alice@acme.test", role=Role.MEMBER, manages_integrations=True)
    created = await world.add_endpoint(who="alice")
    async with world.person("alice") as trusted:
        assert (await trusted.get(f"/api/v1/webhooks/{created['id']}/deliveries")).status_code == 200
    async with world.companion.db.transaction() as session:
        await session.execute(update(Workspace).values(plan=Plan.SOLO))
    async with world.person() as admin:
        refused = await admin.patch(f"/api/v1/webhooks/{created['id']}", json={"active": False})
        assert refused.status_code == 403 and refused.json()["error"]["details"] == {"plan": "solo"}
        assert (await admin.get("/api/v1/webhooks")).status_code == 200


async def test_another_workspaces_endpoints_and_deliveries_are_not_found(world):
    endpoint = await world.add_endpoint()
    await world.emit()
    [delivery] = await world.deliveries()
    async with world.companion.db.transaction() as session:
        await session.execute(update(WebhookDelivery).values(status=DeliveryStatus.FAILED))
        globex = await create_workspace(session, slug="globex", name="Globex")
        user, _ = await add_member(session, globex, email="root@globex.test", role=Role.OWNER)
        issued = await create_key(session, workspace_id=globex.id, user_id=user.id, kind=KeyKind.USER)
    path = f"/api/v1/webhooks/{endpoint['id']}"
    async with world.client(issued.token) as stranger:
        assert (await stranger.get("/api/v1/webhooks")).json()["data"] == []
        for method, url, body in [
            ("GET", path, None),
            ("PATCH", path, {"active": False}),
            ("DELETE", path, None),
            ("POST", f"{path}/test", None),
            ("POST", f"{path}/rotate-secret", None),
            ("GET", f"{path}/deliveries", None),
            ("POST", f"/api/v1/webhooks/deliveries/{delivery.id}/retry", None),
        ]:
            answer = await stranger.request(method, url, json=body)
            assert answer.status_code == 404, (method, url)
            assert answer.json()["error"]["code"] == "not_found"
            assert endpoint["url"] not in answer.text
    async with world.person() as admin:
        assert (await admin.get(path)).json()["active"] is True


async def test_deliveries_page_by_number_and_by_cursor(world):
    endpoint = await world.add_endpoint()
    for n in range(5):
        await world.emit(data={**PROCESSED, "n": n})
    path = f"/api/v1/webhooks/{endpoint['id']}/deliveries"
    async with world.person() as client:
        first = (await client.get(path, params={"per_page": 2})).json()
        assert first["pagination"]["total"] == 5 and first["pagination"]["has_more"] is True
        assert [d["payload"]["data"]["n"] for d in first["data"]] == [4, 3]
        rest = (await client.get(path, params={"per_page": 3, "cursor": first["pagination"]["next_cursor"]})).json()
        assert [d["payload"]["data"]["n"] for d in rest["data"]] == [2, 1, 0]
        too_many = await client.get(path, params={"per_page": 101})
        assert too_many.status_code == 422 and "per_page" in too_many.json()["error"]["details"]["fields"]


async def test_the_openapi_document_declares_every_webhook_operation(world):
    async with world.person() as client:
        document = (await client.get("/api/v1/openapi.json")).json()
    operations = {(path, method) for path, item in document["paths"].items() for method in item if "webhook" in path}
    assert operations == {
        ("/webhooks", "post"),
        ("/webhooks", "get"),
        ("/webhooks/{id}", "get"),
        ("/webhooks/{id}", "patch"),
        ("/webhooks/{id}", "delete"),
        ("/webhooks/{id}/rotate-secret", "post"),
        ("/webhooks/{id}/deliveries", "get"),
        ("/webhooks/{id}/test", "post"),
        ("/webhooks/deliveries/{id}/retry", "post"),
    }
    patch = document["components"]["schemas"]["WebhookPatch"]["properties"]
    assert patch["url"]["type"] == "string" and "anyOf" not in patch["url"], "null is refused, so not offered"
    assert document["paths"]["/webhooks"]["post"]["responses"]["201"]["content"]


# --- the CLI --------------------------------------------------------------------------------------------------------


def cli_parser() -> argparse.ArgumentParser:
    """``companion`` with the webhook commands, as server/cli/main.py hooks them in."""
    parser = argparse.ArgumentParser(prog="companion")
    webhooks_cli.add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


async def test_the_cli_manages_endpoints_as_a_member(world, settings, monkeypatch, capsys):
    monkeypatch.setenv("COMPANION_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COMPANION_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("COMPANION_DATA_DIR", str(settings.data_dir))
    monkeypatch.setattr(addresses, "allow_private", lambda settings: True)

    async def companion(*argv: str) -> str:
        args = cli_parser().parse_args(argv)
        await anyio.to_thread.run_sync(webhooks_cli.HANDLERS[(args.command, args.action)], args)
        return capsys.readouterr().out

    admin = ("--workspace", "acme", "--as", "admin@acme.test")
    added = json.loads(
        await companion("webhooks", "add", world.receiver.url, "--events", "meeting.processed", *admin, "--json")
    )
    assert added["secret"].startswith("whsec_")
    world.receiver.secret = added["secret"]
    assert added["id"] in await companion("webhooks", "list", *admin)
    assert "delivered (HTTP 200)" in await companion("webhooks", "test", added["id"], *admin)
    deliveries = json.loads(await companion("webhooks", "deliveries", added["id"], *admin, "--json"))
    assert [(d["event"], d["status"]) for d in deliveries] == [("webhook.test", "delivered")]

    from server.cli.command import CliError

    with pytest.raises(CliError, match="manage webhooks"):
        await companion("webhooks", "remove", added["id"], "--workspace", "acme", "--as", "alice@acme.test")
    with pytest.raises(CliError, match="url: must not contain a user name"):
        await companion("webhooks", "add", "https://u:p@hooks.example.com/", "--events", "meeting.failed", *admin)
    assert f"Removed {added['id']}" in await companion("webhooks", "remove", added["id"], *admin)
    assert "no webhook endpoints" in await companion("webhooks", "list", *admin)

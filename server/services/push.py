"""Web Push to a person's devices when an approval waits for them (RFC 8030, RFC 8291, RFC 8292).

A browser that enables notifications hands over a subscription: the URL of its push service (the endpoint) and
two keys of its own. For each waiting approval Companion encrypts a small JSON message to those keys (RFC 8291,
``aes128gcm``, with ``http-ece``), signs a VAPID token that proves the message comes from this server (RFC 8292,
ES256, with ``py-vapid``), and POSTs it to the endpoint with the server's async HTTP client. The push service
hands it to the device, whose service worker (``server/web/static/sw.js``) shows it and opens the approval when
tapped.

The endpoint is chosen by whoever subscribes, and the server calls it from inside the deployment's network, so
it follows the webhook address policy (``addresses``) when a device subscribes and again at each delivery: https
to public addresses, unless ``COMPANION_WEBHOOKS_ALLOW_PRIVATE`` (development) allows http and private ones.

The message holds the approval's one-line summary, its app and the approval page's URL: what the person would
see in the inbox, never a credential or a link that decides anything. The push service sees only ciphertext.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr

import http_ece
import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid02, VapidException

from server.services import addresses
from server.services.notices import Notice
from server.settings import Settings, SettingsError
from store import push_subscriptions
from store.crypto import derive_key
from store.db import Database
from store.models import PushSubscription, User, utcnow

log = logging.getLogger(__name__)

#: The order of P-256's base point: a private key is a number in [1, ORDER - 1].
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
#: How much of the summary a notification carries: a phone shows two or three lines of it.
BODY_CHARS = 200
#: RFC 8292 section 2: a token's ``exp`` is at most 24 hours away.
TOKEN_SECONDS = 12 * 3600
#: A push service may keep a message this long at most, even for an approval that waits longer.
MAX_TTL_SECONDS = 24 * 3600
SEND_SECONDS = 10.0
#: Deliveries in flight at once for one approval, however many devices its approvers have.
PARALLEL = 8
ONLY = "push notifications go to push services on public addresses only"


class PushRefused(ValueError):
    """A subscription Companion will not use; the message says why, in words a person can act on."""


@dataclass(frozen=True)
class Device:
    """What a browser's ``PushSubscription.toJSON()`` gives: its push service URL and its RFC 8291 keys."""

    endpoint: str
    p256dh: str
    auth: str


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def vapid_of(settings: Settings) -> Vapid02:
    """The server's VAPID key: ``COMPANION_VAPID_PRIVATE_KEY``, or one derived from the secret key.

    Derived, every replica and every restart signs with the same key, which each subscription is bound to; a
    random key per process would make every device's subscription fail on the next replica.
    """
    configured = settings.vapid_private_key
    if configured is not None:
        return _configured_key(configured.get_secret_value().strip())
    return _derived_key(settings.encryption_keys()[0])


@functools.lru_cache(maxsize=4)
def _configured_key(text: str) -> Vapid02:
    try:
        key = Vapid02.from_pem(text.encode()) if text.startswith("-----BEGIN") else Vapid02.from_string(text)
    except (ValueError, TypeError, binascii.Error, VapidException):
        raise SettingsError(
            "COMPANION_VAPID_PRIVATE_KEY: not a P-256 private key (base64url of its 32 bytes, or PEM)"
        ) from None
    if not isinstance(key.private_key, ec.EllipticCurvePrivateKey) or key.private_key.curve.name != "secp256r1":
        raise SettingsError("COMPANION_VAPID_PRIVATE_KEY: VAPID keys are on the P-256 curve")
    return key


@functools.lru_cache(maxsize=4)
def _derived_key(secret: bytes) -> Vapid02:
    seed = int.from_bytes(derive_key(secret, "web push vapid v1"), "big")
    return Vapid02(ec.derive_private_key(seed % (P256_ORDER - 1) + 1, ec.SECP256R1()))


def public_key_of(vapid: Vapid02) -> str:
    """The application server key a browser subscribes with: the uncompressed P-256 point, base64url."""
    return b64url(vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


def subject_of(settings: Settings) -> str:
    """Whom a push service may contact about this server's messages (RFC 8292 section 2.1)."""
    if settings.vapid_subject:
        return settings.vapid_subject
    address = parseaddr(settings.mail_from)[1]
    return f"mailto:{address or 'companion@localhost'}"


def audience_of(target: addresses.Target) -> str:
    """The endpoint's origin, the token's ``aud``: scheme, host and a port other than the scheme's own."""
    scheme = target.parts.scheme.lower()
    default = 443 if scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{scheme}://{host}" + (f":{target.port}" if target.port != default else "")


def encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    """RFC 8291: the payload for one subscription, under a fresh sender key and salt (``aes128gcm``)."""
    sender = ec.generate_private_key(ec.SECP256R1())
    return bytes(
        http_ece.encrypt(
            payload,
            salt=os.urandom(16),
            private_key=sender,
            dh=unb64url(p256dh),
            auth_secret=unb64url(auth),
            version="aes128gcm",
        )
    )


def check_keys(p256dh: str, auth: str) -> None:
    """A browser's keys as RFC 8291 section 3 has them: a P-256 point, and a 16-byte authentication secret."""
    try:
        point = unb64url(p256dh)
        secret = unb64url(auth)
    except (ValueError, binascii.Error):
        raise PushRefused("the subscription's keys are not base64url") from None
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise PushRefused("the subscription's p256dh key is not a P-256 public key") from None
    if len(point) != 65 or len(secret) != 16:
        raise PushRefused("the subscription's keys have the wrong length (p256dh 65 bytes, auth 16)")


def payload_of(notice: Notice, base_url: str) -> bytes:
    """The message a device shows: a title, the one-line summary, and the approval page it opens."""
    summary = " ".join(notice.summary.split())
    body = summary if len(summary) <= BODY_CHARS else summary[: BODY_CHARS - 1].rstrip() + "…"
    app = " ".join(notice.app_name.split())[:60] or "an app"
    message = {"title": f"Approval waiting · {app}", "body": body, "url": f"{base_url}/approvals/{notice.approval_id}"}
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


def ttl_until(expires_at: datetime) -> int:
    """How long a push service may hold the message: until the approval expires, when it no longer matters."""
    return max(0, min(MAX_TTL_SECONDS, int((expires_at - utcnow()).total_seconds())))


class PushDevices:
    """What the console does with a person's devices: the key they subscribe with, and their subscriptions."""

    def __init__(self, settings: Settings, db: Database, resolver: addresses.Resolver = addresses.system_resolve):
        self.db = db
        self.public_key = public_key_of(vapid_of(settings))
        self.allow_private = addresses.allow_private(settings)
        self.resolver = resolver

    async def check(self, device: Device) -> None:
        """PushRefused unless Companion may call the endpoint, and the keys are a browser's."""
        try:
            await addresses.resolve(
                device.endpoint,
                https_only=not self.allow_private,
                allow_private=self.allow_private,
                resolver=self.resolver,
                only=ONLY,
            )
        except addresses.UnsafeUrl as exc:
            raise PushRefused(f"the push service's address {exc}") from None
        check_keys(device.p256dh, device.auth)

    async def subscribe(self, user_id: str, device: Device, user_agent: str = "") -> int:
        """Keep ``device`` for the person, and turn their push notifications on; how many devices they have."""
        await self.check(device)
        async with self.db.transaction() as session:
            await push_subscriptions.save(session, user_id, device.endpoint, device.p256dh, device.auth, user_agent)
            user = await session.get(User, user_id)
            if user is not None:
                # Enabling a device is the person asking for push notifications; the channel goes on with it.
                user.notify_push = True
            return await push_subscriptions.count(session, user_id)

    async def unsubscribe(self, user_id: str, endpoint: str) -> int:
        """Forget one of the person's own devices; how many they have left."""
        async with self.db.transaction() as session:
            await push_subscriptions.remove(session, user_id, endpoint)
            return await push_subscriptions.count(session, user_id)

    async def count(self, user_id: str) -> int:
        async with self.db.session() as session:
            return await push_subscriptions.count(session, user_id)

    async def is_theirs(self, user_id: str, endpoint: str) -> bool:
        """Whether this browser's subscription still reaches the person: its push service may have dropped it,
        or someone else may have enabled notifications on the same browser since."""
        async with self.db.session() as session:
            return await push_subscriptions.belongs(session, user_id, endpoint)


class WebPush:
    """The push channel of ``server.services.notices``: each approver's devices, if they chose push."""

    name = "push"

    def __init__(
        self,
        settings: Settings,
        db: Database,
        http: httpx.AsyncClient,
        resolver: addresses.Resolver = addresses.system_resolve,
    ) -> None:
        self.db = db
        self.http = http
        self.base_url = settings.base_url
        self.vapid = vapid_of(settings)
        self.public_key = public_key_of(self.vapid)
        self.subject = subject_of(settings)
        self.allow_private = addresses.allow_private(settings)
        self.resolver = resolver

    async def waiting(self, notice: Notice) -> None:
        """Tell every device of each approver who chose push; a device's failure is logged, never raised."""
        ttl = ttl_until(notice.expires_at)
        if ttl == 0:
            return
        async with self.db.session() as session:
            devices = await push_subscriptions.of_people(
                session, notice.approvers, chosen_or_not=self.name in notice.insist
            )
        if not devices:
            return
        payload = payload_of(notice, self.base_url)
        gate = asyncio.Semaphore(PARALLEL)

        async def one(device: PushSubscription) -> None:
            async with gate:
                await self.deliver(device, payload, ttl)

        await asyncio.gather(*(one(device) for device in devices))

    async def deliver(self, device: PushSubscription, payload: bytes, ttl: int) -> int | None:
        """POST the encrypted payload to the device's push service; the HTTP status, or None if none answered.

        404 and 410 mean the subscription is gone (the person turned notifications off, or the browser dropped
        it): it is forgotten. The endpoint is never logged: it is the device's address at its push service.
        """
        try:
            status = await self._post(device, payload, ttl)
        except PushRefused as exc:
            log.warning("push to device %s not sent: %s", device.id, exc)
            return None
        async with self.db.transaction() as session:
            if status in (404, 410):
                await push_subscriptions.gone(session, device.id)
            elif 200 <= status < 300:
                await push_subscriptions.delivered(session, device.id)
        if status >= 300 and status not in (404, 410):
            log.warning("push to device %s refused by its push service: HTTP %s", device.id, status)
        return status

    async def _post(self, device: PushSubscription, payload: bytes, ttl: int) -> int:
        try:
            target, resolved = await addresses.resolve(
                device.endpoint,
                https_only=not self.allow_private,
                allow_private=self.allow_private,
                resolver=self.resolver,
                only=ONLY,
            )
        except addresses.UnsafeUrl as exc:
            raise PushRefused(f"the push service's address {exc}") from None
        try:
            check_keys(device.p256dh, device.auth)
            body = encrypt(payload, device.p256dh, device.auth)
            authorization = self.vapid.sign(
                {"aud": audience_of(target), "exp": int(time.time()) + TOKEN_SECONDS, "sub": self.subject}
            )
        except (ValueError, VapidException, http_ece.ECEException) as exc:
            raise PushRefused(f"could not prepare the message ({type(exc).__name__})") from None
        headers = {
            "Host": target.host_header,
            "TTL": str(ttl),
            "Urgency": "high",
            "Content-Encoding": "aes128gcm",
            "Content-Type": "application/octet-stream",
            **authorization,
        }
        tls = {"sni_hostname": target.host} if target.parts.scheme.lower() == "https" else {}
        failure = "no address answered"
        try:
            async with asyncio.timeout(SEND_SECONDS):
                for address in resolved:
                    request = self.http.build_request(
                        "POST", target.pinned(address), headers=headers, content=body, extensions=tls
                    )
                    try:
                        # Streamed and closed unread: the answer's status is all that matters, and a body from an
                        # endpoint someone chose is never read into memory.
                        response = await self.http.send(request, stream=True)
                    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                        failure = f"could not connect ({type(exc).__name__})"
                        continue
                    await response.aclose()
                    return response.status_code
        except TimeoutError:
            raise PushRefused(f"no answer within {SEND_SECONDS:g} s") from None
        except httpx.HTTPError as exc:
            raise PushRefused(f"the request failed ({type(exc).__name__})") from None
        raise PushRefused(failure)

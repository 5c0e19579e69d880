"""A fake Web Push service, as a browser's push service (FCM, Mozilla's autopush, Apple's) answers an application
server, and the browser side of a subscription, made as a browser makes it.

It follows RFC 8030 (Generic Event Delivery Using HTTP Push), RFC 8291 (Message Encryption for Web Push) and
RFC 8292 (VAPID):

- ``POST /push/{id}`` delivers a message to one subscription. ``TTL`` is required (400 without it, RFC 8030
  section 5.2); ``Urgency``, when sent, is one of the four levels (section 5.3); the body is ``aes128gcm``
  (RFC 8188) and at most 4096 bytes (413, RFC 8030 section 7.2).
- ``Authorization: vapid t=<JWT>, k=<key>`` (RFC 8292 section 3) must carry an ES256 JWT signed with ``k``, whose
  ``aud`` is this service's origin, whose ``exp`` lies in the next 24 hours, and whose ``sub`` is a ``mailto:``
  or ``https:`` contact (section 2). ``k`` must be the application server key the subscription was made with, as
  push services bind them (section 4): 401 for a missing or malformed token, 403 for any other mismatch.
- A subscription the browser dropped answers 410 Gone, an unknown one 404 (RFC 8030 section 7.3).
- A delivered message is 201 Created with a ``Location`` (section 5).

Each delivered message is decrypted with the subscription's private key and authentication secret, as the
browser would (``http_ece``), and kept in ``received`` with its headers and the token's claims; every refusal is
kept in ``refused`` with its reason.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import jwt as vapid_jwt
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

MAX_PAYLOAD = 4096
URGENCIES = {"very-low", "low", "normal", "high"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class BrowserSubscription:
    """The browser's side of one subscription: its key pair and authentication secret (RFC 8291 section 2)."""

    id: str
    endpoint: str
    application_server_key: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def p256dh(self) -> str:
        return b64url(self.private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))

    def to_json(self) -> dict[str, Any]:
        """What ``PushSubscription.toJSON()`` gives the page."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> bytes:
        return bytes(http_ece.decrypt(body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm"))


@dataclass
class Received:
    subscription_id: str
    headers: dict[str, str]
    claims: dict[str, Any]
    message: dict[str, Any]


@dataclass
class PushServiceFake:
    origin: str = ""
    subscriptions: dict[str, BrowserSubscription] = field(default_factory=dict)
    #: Subscriptions the browser dropped: the service answers 410 Gone.
    gone: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.app = Starlette(routes=[Route("/push/{id}", self.push, methods=["POST"])])

    def subscribe(self, application_server_key: str) -> BrowserSubscription:
        """What ``pushManager.subscribe({applicationServerKey})`` does: a fresh P-256 key pair and a 16-byte
        secret on the browser, and an endpoint at the push service bound to the application server's key."""
        subscription_id = secrets.token_urlsafe(16)
        subscription = BrowserSubscription(
            id=subscription_id,
            endpoint=f"{self.origin}/push/{subscription_id}",
            application_server_key=application_server_key,
            private_key=ec.generate_private_key(ec.SECP256R1()),
            auth=secrets.token_bytes(16),
        )
        self.subscriptions[subscription_id] = subscription
        return subscription

    def messages_for(self, subscription: BrowserSubscription) -> list[dict[str, Any]]:
        return [r.message for r in self.received if r.subscription_id == subscription.id]

    def _refuse(self, status: int, reason: str) -> Response:
        self.refused.append((status, reason))
        return Response(reason, status_code=status, media_type="text/plain")

    async def push(self, request: Request) -> Response:
        subscription_id = request.path_params["id"]
        if subscription_id in self.gone:
            return self._refuse(410, "the subscription has expired or was unsubscribed")
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            return self._refuse(404, "no such subscription")
        ttl = request.headers.get("ttl", "")
        if not ttl.isdigit():
            return self._refuse(400, "TTL is required")
        urgency = request.headers.get("urgency", "normal")
        if urgency not in URGENCIES:
            return self._refuse(400, f"Urgency {urgency!r} is not one of {sorted(URGENCIES)}")
        claims, problem = self._vapid(request.headers.get("authorization", ""), subscription)
        if problem:
            return self._refuse(*problem)
        if request.headers.get("content-encoding") != "aes128gcm":
            return self._refuse(415, "Content-Encoding must be aes128gcm")
        body = await request.body()
        if len(body) > MAX_PAYLOAD:
            return self._refuse(413, "payload too large")
        try:
            message = json.loads(subscription.decrypt(body))
        except Exception as exc:  # a browser drops a message it cannot decrypt
            return self._refuse(400, f"the payload does not decrypt: {type(exc).__name__}")
        self.received.append(Received(subscription_id, dict(request.headers), claims, message))
        return Response(status_code=201, headers={"Location": f"{self.origin}/message/{secrets.token_urlsafe(8)}"})

    def _vapid(self, header: str, subscription: BrowserSubscription) -> tuple[dict[str, Any], tuple[int, str] | None]:
        scheme, _, rest = header.partition(" ")
        if scheme.lower() != "vapid":
            return {}, (401, "Authorization must use the vapid scheme")
        params: dict[str, str] = {}
        for part in rest.split(","):
            name, sep, value = part.strip().partition("=")
            if sep:
                params[name.strip().lower()] = value.strip()
        token, key = params.get("t", ""), params.get("k", "")
        if not token or not key:
            return {}, (401, "the vapid scheme needs t and k")
        if key != subscription.application_server_key:
            return {}, (403, "k is not the key the subscription was made with")
        try:
            header_part = json.loads(unb64url(token.split(".")[0]))
            claims = vapid_jwt.decode(token, key)
        except (InvalidSignature, ValueError, IndexError):
            return {}, (403, "the token's signature does not verify with k")
        if header_part.get("alg") != "ES256":
            return {}, (403, "the token must be ES256")
        parts = urlsplit(self.origin)
        if claims.get("aud") != f"{parts.scheme}://{parts.netloc}":
            return claims, (403, f"aud {claims.get('aud')!r} is not this push service's origin")
        now = time.time()
        if not isinstance(claims.get("exp"), int) or not now < claims["exp"] <= now + 24 * 3600:
            return claims, (403, "exp must lie within the next 24 hours")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            return claims, (403, "sub must be a mailto: or https: contact")
        return claims, None

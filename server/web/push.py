"""The console as an installable web app, and a person's devices for Web Push.

``/manifest.webmanifest`` describes the app to the browser; ``/sw.js`` is its service worker, served from the site
root so that its scope covers every page (``/approvals/...`` among them). ``push.js`` on the settings page asks
the browser for a subscription and hands it to ``/push/subscriptions``.

A subscription belongs to the person signed in to the console: only a browser session with its CSRF token may
add or remove one. An agent key or an assistant's access token carries no session, so it can neither add a
device to receive someone's approvals nor take one away; REST offers no such call.
"""

from __future__ import annotations

import hmac
import json
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from server.browser_session import Viewer, viewer_of
from server.services.push import Device, PushDevices, PushRefused
from server.web.pages import HERE, services_of

STATIC = HERE / "static"
#: A subscription is an endpoint URL and two short keys; anything much larger is not one.
MAX_BODY_BYTES = 8192
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
Body = TypeVar("Body", bound=BaseModel)


class Keys(BaseModel):
    p256dh: str = Field(min_length=1, max_length=200)
    auth: str = Field(min_length=1, max_length=100)


class Subscription(BaseModel):
    """A browser's ``PushSubscription.toJSON()``; ``expirationTime`` and anything else it adds are ignored."""

    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(min_length=1, max_length=2000)
    keys: Keys


class Unsubscription(BaseModel):
    """One of the person's devices, named by its endpoint."""

    model_config = ConfigDict(extra="ignore")

    endpoint: str = Field(min_length=1, max_length=2000)


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": {}}}, status_code=status, headers=NO_STORE
    )


async def service_worker(request: Request) -> Response:
    # Served from the root, its default scope is the whole console; the header says so explicitly as well.
    return FileResponse(
        STATIC / "sw.js",
        media_type="text/javascript; charset=utf-8",
        headers={
            "Service-Worker-Allowed": "/",
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'self'",
        },
    )


async def manifest(request: Request) -> Response:
    return FileResponse(
        STATIC / "manifest.webmanifest",
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


def devices_of(request: Request) -> PushDevices:
    services = services_of(request)
    return PushDevices(services.settings, services.db)


async def _signed_in(request: Request) -> Viewer | JSONResponse:
    viewer = await viewer_of(request)
    if viewer is None:
        return error(401, "not_signed_in", "Sign in to the console on this device first.")
    return viewer


async def _posted(request: Request, shape: type[Body], invalid: str) -> tuple[Viewer, Body] | JSONResponse:
    """The signed-in viewer and the posted JSON object read as ``shape``, once the CSRF header matches the session's
    token; ``invalid`` tells the browser what a body of another shape lacks."""
    viewer = await _signed_in(request)
    if isinstance(viewer, JSONResponse):
        return viewer
    sent = request.headers.get("x-csrf-token", "")
    expected = str(request.session.get("csrf", ""))
    if not expected or not hmac.compare_digest(sent, expected):
        return error(403, "csrf", "This request did not come from a Companion page. Reload the page and try again.")
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return error(415, "unsupported_media_type", "Send the subscription as application/json.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return error(413, "too_large", "That is not a push subscription: it is too large.")
    try:
        posted = json.loads(bytes(body))
    except ValueError:
        return error(400, "invalid_json", "The request body is not JSON.")
    if not isinstance(posted, dict):
        return error(400, "invalid_input", "Send a JSON object.")
    try:
        return viewer, shape.model_validate(posted)
    except ValidationError:
        return error(400, "invalid_input", invalid)


async def key(request: Request) -> Response:
    """The application server key this browser subscribes with, and how many devices the person has."""
    viewer = await _signed_in(request)
    if isinstance(viewer, JSONResponse):
        return viewer
    devices = devices_of(request)
    count = await devices.count(viewer.principal.user_id)
    return JSONResponse({"public_key": devices.public_key, "devices": count}, headers=NO_STORE)


async def subscribe(request: Request) -> Response:
    posted = await _posted(request, Subscription, "That is not a push subscription: it needs an endpoint and its keys.")
    if isinstance(posted, JSONResponse):
        return posted
    viewer, sent = posted
    device = Device(endpoint=sent.endpoint, p256dh=sent.keys.p256dh, auth=sent.keys.auth)
    try:
        count = await devices_of(request).subscribe(
            viewer.principal.user_id, device, request.headers.get("user-agent", "")
        )
    except PushRefused as exc:
        return error(400, "refused", f"Companion will not send notifications there: {exc}.")
    except IntegrityError:
        # The same browser subscribing twice at once: one of the two is kept, and this one may simply retry.
        return error(409, "conflict", "This device was being enabled at the same moment. Try again.")
    return JSONResponse({"subscribed": True, "devices": count}, status_code=201, headers=NO_STORE)


async def unsubscribe(request: Request) -> Response:
    posted = await _posted(request, Unsubscription, "Name the subscription's endpoint.")
    if isinstance(posted, JSONResponse):
        return posted
    viewer, sent = posted
    count = await devices_of(request).unsubscribe(viewer.principal.user_id, sent.endpoint)
    return JSONResponse({"subscribed": False, "devices": count}, headers=NO_STORE)


async def check(request: Request) -> Response:
    """Whether this browser's subscription is one of the person's devices (POSTed: an endpoint is never put in a
    URL, where access logs would keep it)."""
    posted = await _posted(request, Unsubscription, "Name the subscription's endpoint.")
    if isinstance(posted, JSONResponse):
        return posted
    viewer, sent = posted
    devices = devices_of(request)
    user_id = viewer.principal.user_id
    return JSONResponse(
        {"subscribed": await devices.is_theirs(user_id, sent.endpoint), "devices": await devices.count(user_id)},
        headers=NO_STORE,
    )


routes = [
    Route("/sw.js", service_worker, methods=["GET"]),
    Route("/manifest.webmanifest", manifest, methods=["GET"]),
    Route("/push/key", key, methods=["GET"]),
    Route("/push/subscriptions", subscribe, methods=["POST"]),
    Route("/push/subscriptions/remove", unsubscribe, methods=["POST"]),
    Route("/push/subscriptions/check", check, methods=["POST"]),
]

"""Webhook endpoints over the API: manage them, read their deliveries, send a test, retry a failed delivery.

Webhooks are workspace settings (Harmony's "Settings → Integrations →
Webhooks"), managed with a user key by the workspace's admins and by members
an admin trusted with its integrations. Other members may list and read the
endpoints, never their secrets; deliveries carry event data from the whole
workspace, beyond what a member's sharing rules show, so only managers read
them. The signing secret is generated here and shown twice at most: in the
answer that creates the endpoint and in the one that rotates its secret.

The service functions (``add_webhook``, ``send_test`` ...) take the Companion
and the person acting, so the CLI runs exactly what the API runs.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request

from server.api.auth import api_caller
from server.api.errors import ApiError, invalid
from server.api.router import ApiRouter
from server.services.pages import Page, PageQuery, paginate
from server.webhooks import endpoints, urls
from server.webhooks.dispatcher import Dispatcher, webhook_client
from server.webhooks.outbox import EVENTS, TEST_EVENT, WebhookEvent, enqueue_test
from store.models import DeliveryStatus, KeyKind, WebhookDelivery, WebhookEndpoint
from store.plans import RULES
from store.principal import Principal

if TYPE_CHECKING:
    from server.app import Companion

api = ApiRouter("Webhooks")

EVENTS_DESCRIPTION = "Events to receive: " + ", ".join(EVENTS)


def _unique(events: list[str] | None) -> list[str] | None:
    return None if events is None else list(dict.fromkeys(events))


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1, max_length=urls.MAX_URL_LENGTH, examples=["https://hooks.example.com/harmony"],
        description="Where to POST events: https in production, and a host with public addresses only",
    )  # fmt: skip
    events: list[WebhookEvent] = Field(min_length=1, description=EVENTS_DESCRIPTION)
    description: str = Field(default="", max_length=500)
    active: bool = Field(default=True, description="An inactive endpoint gets no new events; its queue waits")

    _dedupe = field_validator("events")(_unique)


class WebhookPatch(BaseModel):
    """The fields to change; the others stay as they are.

    A field left out is unchanged. The defaults are never validated, so they only mark "left out": a null
    sent explicitly is checked against the field's type and refused.
    """

    model_config = ConfigDict(extra="forbid")

    url: str = Field(default=None, min_length=1, max_length=urls.MAX_URL_LENGTH)  # type: ignore[assignment]
    events: list[WebhookEvent] = Field(default=None, min_length=1, description=EVENTS_DESCRIPTION)  # type: ignore[assignment]
    description: str = Field(default=None, max_length=500)  # type: ignore[assignment]
    active: bool = None  # type: ignore[assignment]

    _dedupe = field_validator("events")(_unique)

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class WebhookOut(BaseModel):
    id: str = Field(examples=["whe_4f9c2a7d1e0b3c58"])
    url: str
    events: list[str]
    description: str
    active: bool
    created_by: str | None = Field(description="The id of the user who created it")
    created_at: datetime


class WebhookWithSecret(WebhookOut):
    secret: str = Field(
        description="The signing secret (whsec_…). It is shown in this answer only: store it with your receiver."
    )


class DeliveryQuery(PageQuery):
    status: DeliveryStatus | None = Field(default=None, description="Only deliveries in this state")


class DeliveryOut(BaseModel):
    id: str = Field(description="Also sent as X-Harmony-Delivery; the same on every attempt")
    endpoint_id: str
    event: str = Field(description=f"One of the endpoint's events, or {TEST_EVENT} for a test")
    status: DeliveryStatus = Field(description="pending (queued or between attempts), delivered, or failed")
    attempts: int
    next_attempt_at: datetime | None = Field(description="When the next attempt is due; null unless pending")
    last_status_code: int | None = Field(description="The HTTP status of the last answer, if one came")
    last_error: str | None = Field(description="Why the last attempt failed")
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any] = Field(description="The body as sent: event, timestamp and data")


def webhook_out(endpoint: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id, url=endpoint.url, events=list(endpoint.events), description=endpoint.description,
        active=endpoint.active, created_by=endpoint.created_by, created_at=endpoint.created_at,
    )  # fmt: skip


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    pending = delivery.status is DeliveryStatus.PENDING
    return DeliveryOut(
        id=delivery.id, endpoint_id=delivery.endpoint_id, event=delivery.event, status=delivery.status,
        attempts=delivery.attempts, next_attempt_at=delivery.next_attempt_at if pending else None,
        last_status_code=delivery.last_status_code, last_error=delivery.last_error, created_at=delivery.created_at,
        delivered_at=delivery.delivered_at, payload=json.loads(delivery.body),
    )  # fmt: skip


def _manager(person: Principal) -> Principal:
    if not person.may_manage_workspace_integrations:
        raise ApiError(
            403, "Only workspace admins, and members trusted with the workspace's integrations, manage webhooks."
        )
    if not RULES[person.plan].may_write:
        raise ApiError(
            403,
            f"Webhooks are not part of the {person.plan.value} plan's API access; they start with Plus.",
            details={"plan": person.plan.value},
        )
    return person


async def _checked_url(companion: Companion, url: str) -> str:
    settings = companion.settings
    try:
        await urls.resolve(url, https_only=urls.require_https(settings), allow_private=urls.allow_private(settings))
    except urls.UnsafeUrl as exc:
        raise invalid({"url": str(exc)}) from None
    return url


async def _endpoint(session: Any, person: Principal, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await endpoints.endpoint_in(session, person.workspace_id, endpoint_id)
    if endpoint is None:
        raise ApiError(404, "Webhook endpoint not found")
    return endpoint


async def webhooks_page(companion: Companion, person: Principal, paging: PageQuery) -> Page[WebhookOut]:
    async with companion.db.session() as session:
        rows, pagination = await paginate(
            session,
            endpoints.endpoints_of(person.workspace_id),
            (WebhookEndpoint.created_at, WebhookEndpoint.id),
            paging,
            key=lambda e: (e.created_at, e.id),
        )
    return Page[WebhookOut](data=[webhook_out(e) for e in rows], pagination=pagination)


async def webhook_view(companion: Companion, person: Principal, endpoint_id: str) -> WebhookOut:
    async with companion.db.session() as session:
        return webhook_out(await _endpoint(session, person, endpoint_id))


async def add_webhook(companion: Companion, person: Principal, body: WebhookIn) -> WebhookWithSecret:
    _manager(person)
    url = await _checked_url(companion, body.url)
    async with companion.db.transaction() as session:
        if await endpoints.count_endpoints(session, person.workspace_id) >= endpoints.MAX_ENDPOINTS_PER_WORKSPACE:
            raise ApiError(
                409,
                f"A workspace has at most {endpoints.MAX_ENDPOINTS_PER_WORKSPACE} webhook endpoints; delete one first.",
                details={"limit": endpoints.MAX_ENDPOINTS_PER_WORKSPACE},
            )
        endpoint, secret = await endpoints.create_endpoint(
            session, companion.box, workspace_id=person.workspace_id, url=url, events=body.events,
            description=body.description, active=body.active, created_by=person.user_id,
        )  # fmt: skip
    return WebhookWithSecret(**webhook_out(endpoint).model_dump(), secret=secret)


async def change_webhook(companion: Companion, person: Principal, endpoint_id: str, body: WebhookPatch) -> WebhookOut:
    _manager(person)
    changes = body.changes()
    async with companion.db.session() as session:
        await _endpoint(session, person, endpoint_id)
    if "url" in changes:
        await _checked_url(companion, changes["url"])
    async with companion.db.transaction() as session:
        endpoint = endpoints.update_endpoint(await _endpoint(session, person, endpoint_id), changes)
        await session.flush()
        return webhook_out(endpoint)


async def remove_webhook(companion: Companion, person: Principal, endpoint_id: str) -> None:
    _manager(person)
    async with companion.db.transaction() as session:
        await endpoints.delete_endpoint(session, await _endpoint(session, person, endpoint_id))


async def new_webhook_secret(companion: Companion, person: Principal, endpoint_id: str) -> WebhookWithSecret:
    _manager(person)
    async with companion.db.transaction() as session:
        endpoint = await _endpoint(session, person, endpoint_id)
        secret = endpoints.rotate_secret(companion.box, endpoint)
        await session.flush()
        return WebhookWithSecret(**webhook_out(endpoint).model_dump(), secret=secret)


async def deliveries_page(
    companion: Companion, person: Principal, endpoint_id: str, query: DeliveryQuery
) -> Page[DeliveryOut]:
    _manager(person)
    async with companion.db.session() as session:
        await _endpoint(session, person, endpoint_id)
        rows, pagination = await paginate(
            session,
            endpoints.deliveries_of(endpoint_id, query.status),
            (WebhookDelivery.created_at, WebhookDelivery.id),
            query,
            key=lambda d: (d.created_at, d.id),
        )
    return Page[DeliveryOut](data=[delivery_out(d) for d in rows], pagination=pagination)


async def send_test(companion: Companion, person: Principal, endpoint_id: str) -> DeliveryOut:
    """Write a ``webhook.test`` delivery, held by this request, and attempt it now, once; answer its outcome."""
    _manager(person)
    async with webhook_client() as http:
        dispatcher = Dispatcher.of(companion, http)
        async with companion.db.transaction() as session:
            endpoint = await _endpoint(session, person, endpoint_id)
            if not endpoint.active:
                raise ApiError(409, "The endpoint is inactive; activate it to send a test event.")
            delivery = enqueue_test(session, endpoint)
            token = dispatcher.hold(delivery)
            await session.flush()
            delivery_id = delivery.id
        attempted = await dispatcher.attempt(delivery_id, token)
    if attempted is None:
        raise ApiError(404, "Webhook endpoint not found")  # deleted while the test ran
    return delivery_out(attempted)


async def retry_delivery(companion: Companion, person: Principal, delivery_id: str) -> DeliveryOut:
    """Give a failed delivery a new schedule of attempts, starting now; the worker sends it."""
    _manager(person)
    async with companion.db.transaction() as session:
        delivery = await endpoints.delivery_in(session, person.workspace_id, delivery_id)
        if delivery is None:
            raise ApiError(404, "Delivery not found")
        if not await endpoints.requeue(session, delivery):
            raise ApiError(
                409,
                f"Only a failed delivery can be retried; this one is {delivery.status.value}.",
                details={"status": delivery.status.value},
            )
        return delivery_out(delivery)


def _person(request: Request) -> tuple[Companion, Principal]:
    principal = api_caller(request)
    if principal.key_kind is not KeyKind.USER:
        raise ApiError(403, "Webhooks are managed with a user key; an agent key cannot read or change them.")
    return request.app.state.companion, principal


@api.post(
    "/webhooks",
    body=WebhookIn,
    response=WebhookWithSecret,
    status=201,
    errors=(403, 409),
    summary="Add a webhook endpoint",
)
async def create_webhook(request: Request, body: WebhookIn) -> WebhookWithSecret:
    """Subscribe a URL to events. The answer holds the signing secret, shown this once."""
    return await add_webhook(*_person(request), body)


@api.get("/webhooks", query=PageQuery, response=Page[WebhookOut], errors=(403,), summary="List webhook endpoints")
async def list_webhooks(request: Request, query: PageQuery) -> Page[WebhookOut]:
    """The workspace's endpoints, newest first. Any member may read them; secrets are never listed."""
    return await webhooks_page(*_person(request), query)


@api.get("/webhooks/{id}", response=WebhookOut, errors=(403, 404), summary="Get a webhook endpoint")
async def get_webhook(request: Request) -> WebhookOut:
    return await webhook_view(*_person(request), request.path_params["id"])


@api.patch(
    "/webhooks/{id}", body=WebhookPatch, response=WebhookOut, errors=(403, 404), summary="Change a webhook endpoint"
)
async def update_webhook(request: Request, body: WebhookPatch) -> WebhookOut:
    """Change the URL, the events, the description, or pause it (active: false) and resume it."""
    return await change_webhook(*_person(request), request.path_params["id"], body)


@api.delete("/webhooks/{id}", status=204, errors=(403, 404), summary="Delete a webhook endpoint")
async def delete_webhook(request: Request) -> None:
    """Delete the endpoint and its deliveries, pending ones included."""
    await remove_webhook(*_person(request), request.path_params["id"])


@api.post(
    "/webhooks/{id}/rotate-secret", response=WebhookWithSecret, errors=(403, 404), summary="Rotate the signing secret"
)
async def rotate_webhook_secret(request: Request) -> WebhookWithSecret:
    """A new secret, shown this once; every delivery from now on, retries included, is signed with it."""
    return await new_webhook_secret(*_person(request), request.path_params["id"])


@api.get(
    "/webhooks/{id}/deliveries", query=DeliveryQuery, response=Page[DeliveryOut], errors=(403, 404),
    summary="List an endpoint's deliveries",
)  # fmt: skip
async def list_webhook_deliveries(request: Request, query: DeliveryQuery) -> Page[DeliveryOut]:
    """Newest first, with each one's state, attempts and last answer; failed ones can be retried."""
    return await deliveries_page(*_person(request), request.path_params["id"], query)


@api.post("/webhooks/{id}/test", response=DeliveryOut, errors=(403, 404, 409), summary="Send a test event")
async def send_webhook_test(request: Request) -> DeliveryOut:
    """Send a signed ``webhook.test`` event now and answer how it went. A test is attempted once, not retried."""
    return await send_test(*_person(request), request.path_params["id"])


@api.post(
    "/webhooks/deliveries/{id}/retry", response=DeliveryOut, status=202, errors=(403, 404, 409),
    summary="Retry a failed delivery",
)  # fmt: skip
async def retry_webhook_delivery(request: Request) -> DeliveryOut:
    """Queue a failed delivery again with a fresh schedule of attempts; the answer shows it pending."""
    return await retry_delivery(*_person(request), request.path_params["id"])

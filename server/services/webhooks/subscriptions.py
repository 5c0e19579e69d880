"""Webhook endpoints as a person manages them: add, change, pause, rotate the secret, read deliveries, test, retry.

Webhooks are workspace settings (Harmony's "Settings → Integrations →
Webhooks"), managed with a user key by the workspace's admins and by members
an admin trusted with its integrations. Other members may list and read the
endpoints, never their secrets; deliveries carry event data from the whole
workspace, beyond what a member's sharing rules show, so only managers read
them. The signing secret is generated here and shown twice at most: in the
answer that creates the endpoint and in the one that rotates its secret.

REST (``server.api.webhooks``) and the CLI (``companion webhooks``) both run
these, so the permission rules, the URL checks and the one-time secret are the
same in each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from server.services import addresses
from server.services.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.services.pages import Page, PageQuery, paginate
from server.services.webhooks import endpoints
from server.services.webhooks.dispatcher import Dispatcher, webhook_client
from server.services.webhooks.outbox import EVENTS, TEST_EVENT, WebhookEvent, enqueue_test
from server.settings import Settings
from store.crypto import SecretBox
from store.db import Database
from store.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from store.plans import RULES
from store.principal import Principal

EVENTS_DESCRIPTION = "Events to receive: " + ", ".join(EVENTS)


def _unique(events: list[str] | None) -> list[str] | None:
    return None if events is None else list(dict.fromkeys(events))


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1, max_length=addresses.MAX_URL_LENGTH, examples=["https://hooks.example.com/harmony"],
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

    url: str = Field(default=None, min_length=1, max_length=addresses.MAX_URL_LENGTH)  # type: ignore[assignment]
    events: list[WebhookEvent] = Field(default=None, min_length=1, description=EVENTS_DESCRIPTION)  # type: ignore[arg-type]
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
        raise Forbidden(
            "Only workspace admins, and members trusted with the workspace's integrations, manage webhooks."
        )
    if not RULES[person.plan].may_write:
        raise Forbidden(
            f"Webhooks are not part of the {person.plan.value} plan's API access; they start with Plus.",
            details={"plan": person.plan.value},
        )
    return person


async def _endpoint(session: AsyncSession, person: Principal, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await endpoints.endpoint_in(session, person.workspace_id, endpoint_id)
    if endpoint is None:
        raise NotFound("Webhook endpoint not found")
    return endpoint


@dataclass(frozen=True)
class Webhooks:
    """The webhook use cases, over the store, the secret box and the deployment's URL rules."""

    db: Database
    box: SecretBox
    settings: Settings

    async def _checked_url(self, url: str) -> str:
        # Looked up at each call, not once: the rules follow the settings (and tests that change them).
        https_only, allow_private = addresses.require_https(self.settings), addresses.allow_private(self.settings)
        try:
            await addresses.resolve(url, https_only=https_only, allow_private=allow_private)
        except addresses.UnsafeUrl as exc:
            raise InvalidInput({"url": str(exc)}) from None
        return url

    async def page(self, person: Principal, paging: PageQuery) -> Page[WebhookOut]:
        async with self.db.session() as session:
            rows, pagination = await paginate(
                session,
                endpoints.endpoints_of(person.workspace_id),
                (WebhookEndpoint.created_at, WebhookEndpoint.id),
                paging,
                key=lambda e: (e.created_at, e.id),
            )
        return Page[WebhookOut](data=[webhook_out(e) for e in rows], pagination=pagination)

    async def get(self, person: Principal, endpoint_id: str) -> WebhookOut:
        async with self.db.session() as session:
            return webhook_out(await _endpoint(session, person, endpoint_id))

    async def add(self, person: Principal, body: WebhookIn) -> WebhookWithSecret:
        _manager(person)
        url = await self._checked_url(body.url)
        limit = endpoints.MAX_ENDPOINTS_PER_WORKSPACE
        async with self.db.transaction() as session:
            if await endpoints.count_endpoints(session, person.workspace_id) >= limit:
                raise Conflict(
                    f"A workspace has at most {limit} webhook endpoints; delete one first.", details={"limit": limit}
                )
            endpoint, secret = await endpoints.create_endpoint(
                session, self.box, workspace_id=person.workspace_id, url=url, events=body.events,
                description=body.description, active=body.active, created_by=person.user_id,
            )  # fmt: skip
        return WebhookWithSecret(**webhook_out(endpoint).model_dump(), secret=secret)

    async def change(self, person: Principal, endpoint_id: str, body: WebhookPatch) -> WebhookOut:
        _manager(person)
        changes = body.changes()
        async with self.db.session() as session:
            await _endpoint(session, person, endpoint_id)
        if "url" in changes:
            # Resolving may take seconds: done before the write, outside its transaction.
            await self._checked_url(changes["url"])
        async with self.db.transaction() as session:
            endpoint = endpoints.update_endpoint(await _endpoint(session, person, endpoint_id), changes)
            await session.flush()
            return webhook_out(endpoint)

    async def remove(self, person: Principal, endpoint_id: str) -> None:
        _manager(person)
        async with self.db.transaction() as session:
            await endpoints.delete_endpoint(session, await _endpoint(session, person, endpoint_id))

    async def new_secret(self, person: Principal, endpoint_id: str) -> WebhookWithSecret:
        _manager(person)
        async with self.db.transaction() as session:
            endpoint = await _endpoint(session, person, endpoint_id)
            secret = endpoints.rotate_secret(self.box, endpoint)
            await session.flush()
            return WebhookWithSecret(**webhook_out(endpoint).model_dump(), secret=secret)

    async def deliveries(self, person: Principal, endpoint_id: str, query: DeliveryQuery) -> Page[DeliveryOut]:
        _manager(person)
        async with self.db.session() as session:
            await _endpoint(session, person, endpoint_id)
            rows, pagination = await paginate(
                session,
                endpoints.deliveries_of(endpoint_id, query.status),
                (WebhookDelivery.created_at, WebhookDelivery.id),
                query,
                key=lambda d: (d.created_at, d.id),
            )
        return Page[DeliveryOut](data=[delivery_out(d) for d in rows], pagination=pagination)

    async def send_test(self, person: Principal, endpoint_id: str) -> DeliveryOut:
        """Write a ``webhook.test`` delivery, held by this request, and attempt it now, once; answer its outcome."""
        _manager(person)
        async with webhook_client() as http:
            dispatcher = Dispatcher(
                self.db, self.box, http,
                https_only=addresses.require_https(self.settings), allow_private=addresses.allow_private(self.settings),
            )  # fmt: skip
            async with self.db.transaction() as session:
                endpoint = await _endpoint(session, person, endpoint_id)
                if not endpoint.active:
                    raise Conflict("The endpoint is inactive; activate it to send a test event.")
                delivery = enqueue_test(session, endpoint)
                token = dispatcher.hold(delivery)
                await session.flush()
                delivery_id = delivery.id
            attempted = await dispatcher.attempt(delivery_id, token)
        if attempted is None:
            raise NotFound("Webhook endpoint not found")  # deleted while the test ran
        return delivery_out(attempted)

    async def retry(self, person: Principal, delivery_id: str) -> DeliveryOut:
        """Give a failed delivery a new schedule of attempts, starting now; the worker sends it."""
        _manager(person)
        async with self.db.transaction() as session:
            delivery = await endpoints.delivery_in(session, person.workspace_id, delivery_id)
            if delivery is None:
                raise NotFound("Delivery not found")
            if not await endpoints.requeue(session, delivery):
                raise Conflict(
                    f"Only a failed delivery can be retried; this one is {delivery.status.value}.",
                    details={"status": delivery.status.value},
                )
            return delivery_out(delivery)

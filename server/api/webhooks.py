"""Webhook endpoints over the API: manage them, read their deliveries, send a test, retry a failed delivery.

What each operation does, and who may, is the use case's (``server.services.webhooks.subscriptions``); the CLI runs the
same one. This module declares the operations and says who is asking.
"""

from __future__ import annotations

from starlette.requests import Request

from server.api.auth import api_caller
from server.api.errors import ApiError
from server.api.router import ApiRouter
from server.api.services import services_of
from server.services.pages import Page, PageQuery
from server.services.webhooks.subscriptions import (
    DeliveryOut,
    DeliveryQuery,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
    Webhooks,
    WebhookWithSecret,
)
from store.models import KeyKind
from store.principal import Principal

api = ApiRouter("Webhooks")


def _person(request: Request) -> tuple[Webhooks, Principal]:
    principal = api_caller(request)
    if principal.key_kind is not KeyKind.USER:
        raise ApiError(403, "Webhooks are managed with a user key; an agent key cannot read or change them.")
    services = services_of(request)
    return Webhooks(services.db, services.box, services.settings), principal


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
    webhooks, person = _person(request)
    return await webhooks.add(person, body)


@api.get("/webhooks", query=PageQuery, response=Page[WebhookOut], errors=(403,), summary="List webhook endpoints")
async def list_webhooks(request: Request, query: PageQuery) -> Page[WebhookOut]:
    """The workspace's endpoints, newest first. Any member may read them; secrets are never listed."""
    webhooks, person = _person(request)
    return await webhooks.page(person, query)


@api.get("/webhooks/{id}", response=WebhookOut, errors=(403, 404), summary="Get a webhook endpoint")
async def get_webhook(request: Request) -> WebhookOut:
    webhooks, person = _person(request)
    return await webhooks.get(person, request.path_params["id"])


@api.patch(
    "/webhooks/{id}", body=WebhookPatch, response=WebhookOut, errors=(403, 404), summary="Change a webhook endpoint"
)
async def update_webhook(request: Request, body: WebhookPatch) -> WebhookOut:
    """Change the URL, the events, the description, or pause it (active: false) and resume it."""
    webhooks, person = _person(request)
    return await webhooks.change(person, request.path_params["id"], body)


@api.delete("/webhooks/{id}", status=204, errors=(403, 404), summary="Delete a webhook endpoint")
async def delete_webhook(request: Request) -> None:
    """Delete the endpoint and its deliveries, pending ones included."""
    webhooks, person = _person(request)
    await webhooks.remove(person, request.path_params["id"])


@api.post(
    "/webhooks/{id}/rotate-secret", response=WebhookWithSecret, errors=(403, 404), summary="Rotate the signing secret"
)
async def rotate_webhook_secret(request: Request) -> WebhookWithSecret:
    """A new secret, shown this once; every delivery from now on, retries included, is signed with it."""
    webhooks, person = _person(request)
    return await webhooks.new_secret(person, request.path_params["id"])


@api.get(
    "/webhooks/{id}/deliveries", query=DeliveryQuery, response=Page[DeliveryOut], errors=(403, 404),
    summary="List an endpoint's deliveries",
)  # fmt: skip
async def list_webhook_deliveries(request: Request, query: DeliveryQuery) -> Page[DeliveryOut]:
    """Newest first, with each one's state, attempts and last answer; failed ones can be retried."""
    webhooks, person = _person(request)
    return await webhooks.deliveries(person, request.path_params["id"], query)


@api.post("/webhooks/{id}/test", response=DeliveryOut, errors=(403, 404, 409), summary="Send a test event")
async def send_webhook_test(request: Request) -> DeliveryOut:
    """Send a signed ``webhook.test`` event now and answer how it went. A test is attempted once, not retried."""
    webhooks, person = _person(request)
    return await webhooks.send_test(person, request.path_params["id"])


@api.post(
    "/webhooks/deliveries/{id}/retry", response=DeliveryOut, status=202, errors=(403, 404, 409),
    summary="Retry a failed delivery",
)  # fmt: skip
async def retry_webhook_delivery(request: Request) -> DeliveryOut:
    """Queue a failed delivery again with a fresh schedule of attempts; the answer shows it pending."""
    webhooks, person = _person(request)
    return await webhooks.retry(person, request.path_params["id"])

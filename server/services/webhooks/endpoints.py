"""Webhook endpoints in the store: created with a fresh secret, sealed at rest, changed, deleted.

The signing secret is sealed with the server key under the context
``webhook:{endpoint id}`` (the key rotation re-seals it under that context),
so a sealed secret copied onto another endpoint's row does not open there.
Its plaintext leaves the server twice at most: when the endpoint is created
and when the secret is rotated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.services.webhooks.signing import new_secret
from store.crypto import SecretBox
from store.db import rows_matched
from store.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, new_id, utcnow
from store.sealing import webhook_secret_context as secret_context

#: A workspace's endpoints are few and each delivery is fanned out to all that subscribe; this keeps it bounded.
MAX_ENDPOINTS_PER_WORKSPACE = 20
EDITABLE = frozenset({"url", "events", "description", "active"})


def open_secret(box: SecretBox, endpoint: WebhookEndpoint) -> str:
    return box.open(endpoint.sealed_secret, context=secret_context(endpoint.id)).decode()


def _seal(box: SecretBox, endpoint_id: str, secret: str) -> str:
    return box.seal(secret.encode(), context=secret_context(endpoint_id))


async def count_endpoints(session: AsyncSession, workspace_id: str) -> int:
    found = await session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id)
    )
    return int(found or 0)


async def create_endpoint(
    session: AsyncSession,
    box: SecretBox,
    *,
    workspace_id: str,
    url: str,
    events: Sequence[str],
    description: str = "",
    active: bool = True,
    created_by: str | None = None,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret in plaintext, which the caller shows once and forgets."""
    endpoint_id = new_id("whe")
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        workspace_id=workspace_id,
        url=url,
        events=list(events),
        sealed_secret=_seal(box, endpoint_id, secret),
        description=description,
        active=active,
        created_by=created_by,
        created_at=utcnow(),
    )
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


def endpoints_of(workspace_id: str) -> Select[WebhookEndpoint]:
    return select(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id)


async def endpoint_in(session: AsyncSession, workspace_id: str, endpoint_id: str) -> WebhookEndpoint | None:
    """The endpoint if it belongs to the workspace; another workspace's is as absent as a missing one."""
    return await session.scalar(endpoints_of(workspace_id).where(WebhookEndpoint.id == endpoint_id))


def update_endpoint(endpoint: WebhookEndpoint, changes: dict[str, Any]) -> WebhookEndpoint:
    unknown = set(changes) - EDITABLE
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(endpoint, name, list(value) if name == "events" else value)
    return endpoint


def rotate_secret(box: SecretBox, endpoint: WebhookEndpoint) -> str:
    """Replace the secret at once: deliveries from now on, retries included, are signed with the new one."""
    secret = new_secret()
    endpoint.sealed_secret = _seal(box, endpoint.id, secret)
    return secret


async def delete_endpoint(session: AsyncSession, endpoint: WebhookEndpoint) -> None:
    """Remove the endpoint; the database's cascade removes its deliveries, pending ones included."""
    await session.delete(endpoint)


def deliveries_of(endpoint_id: str, status: DeliveryStatus | None = None) -> Select[WebhookDelivery]:
    found = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    return found if status is None else found.where(WebhookDelivery.status == status)


async def delivery_in(session: AsyncSession, workspace_id: str, delivery_id: str) -> WebhookDelivery | None:
    return await session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.workspace_id == workspace_id)
    )


async def requeue(session: AsyncSession, delivery: WebhookDelivery) -> bool:
    """Give a failed delivery a fresh schedule of attempts, due now; False if it is not failed (any more)."""
    done = await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, WebhookDelivery.status == DeliveryStatus.FAILED)
        .values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=utcnow(), locked_until=None)
        .execution_options(synchronize_session=False)
    )
    if rows_matched(done) != 1:
        return False
    await session.refresh(delivery)
    return True

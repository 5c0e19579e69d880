"""The outbox: an event becomes one delivery row per subscribed endpoint, in the transaction of the change.

Because the rows commit with the change they report, a crash between the
commit and the delivery loses nothing: the dispatcher finds them on restart.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import WebhookDelivery, WebhookEndpoint, utcnow

WebhookEvent = Literal["meeting.started", "meeting.processed", "meeting.failed", "insight.generated"]
EVENTS: tuple[str, ...] = get_args(WebhookEvent)
#: Sent only by "send a test event"; no endpoint subscribes to it.
TEST_EVENT = "webhook.test"


def payload(event: str, data: dict[str, Any], at: datetime) -> str:
    """The body as Harmony's API page shows it: event, timestamp, data."""
    timestamp = at.isoformat(timespec="seconds").replace("+00:00", "Z")
    return json.dumps({"event": event, "timestamp": timestamp, "data": data}, separators=(",", ":"))


def delivery(endpoint: WebhookEndpoint, event: str, body: str, at: datetime) -> WebhookDelivery:
    """A delivery of ``body`` to ``endpoint``, due at once."""
    return WebhookDelivery(
        endpoint_id=endpoint.id,
        workspace_id=endpoint.workspace_id,
        event=event,
        body=body,
        next_attempt_at=at,
        created_at=at,
    )


async def enqueue(session: AsyncSession, workspace_id: str, event: str, data: dict[str, Any]) -> int:
    """Add a delivery for each active endpoint of the workspace that wants ``event``; returns how many."""
    if event not in EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    now = utcnow()
    body = payload(event, data, now)
    endpoints = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id, WebhookEndpoint.active.is_(True))
    )
    added = 0
    for endpoint in endpoints:
        if event in (endpoint.events or []):
            session.add(delivery(endpoint, event, body, now))
            added += 1
    return added


def enqueue_test(session: AsyncSession, endpoint: WebhookEndpoint) -> WebhookDelivery:
    """A ``webhook.test`` delivery to one endpoint, whatever it subscribes to (flushed with the session)."""
    now = utcnow()
    data = {"endpoint_id": endpoint.id, "message": "A test event from Harmony Companion."}
    row = delivery(endpoint, TEST_EVENT, payload(TEST_EVENT, data, now), now)
    session.add(row)
    return row

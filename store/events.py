"""Events: things that happened to a workspace's setup, kept for people and for webhooks."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Event


def record_event(
    session: AsyncSession,
    type: str,
    *,
    workspace_id: str | None,
    user_id: str | None = None,
    subject_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> Event:
    """Add an event to the session's transaction, so it is recorded exactly when the change it reports is."""
    event = Event(type=type, workspace_id=workspace_id, user_id=user_id, subject_id=subject_id, data=data or {})
    session.add(event)
    return event

"""Signed-in browser sessions, kept in the database so that signing out ends them everywhere.

The cookie is signed and names the session; the row is what makes it live.
Rows older than the cookie's lifetime are removed as new sessions begin.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import WebSession, utcnow

LIFETIME = timedelta(hours=12)


async def open_session(session: AsyncSession, user_id: str) -> str:
    await session.execute(delete(WebSession).where(WebSession.created_at < utcnow() - LIFETIME))
    sid = secrets.token_hex(8)
    session.add(WebSession(id=sid, user_id=user_id))
    await session.flush()
    return sid


async def is_open(session: AsyncSession, sid: str, user_id: str) -> bool:
    found = await session.scalar(
        select(WebSession.id).where(
            WebSession.id == sid, WebSession.user_id == user_id, WebSession.created_at >= utcnow() - LIFETIME
        )
    )
    return found is not None


async def close_session(session: AsyncSession, sid: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.id == sid))


async def close_others(session: AsyncSession, user_id: str, keep: str) -> None:
    await session.execute(delete(WebSession).where(WebSession.user_id == user_id, WebSession.id != keep))

"""Signed requests already handled (Slack's interactions), so a replay is refused on every replica.

A signature covers its timestamp, and a request whose timestamp is more than a few minutes away is refused
before it gets here; so a digest needs keeping only that long, and ``forget_before`` drops the older ones.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import dialect_name, rows_matched
from store.models import SeenRequest, utcnow


async def first_sight(session: AsyncSession, digest: str) -> bool:
    """Record ``digest``; False if some replica recorded it before (the request is a replay).

    One INSERT that does nothing on a conflict, so two replicas handed the same request at once cannot both
    see it first.
    """
    insert = (postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert)(SeenRequest)
    inserted = await session.execute(
        insert.values(digest=digest, seen_at=utcnow()).on_conflict_do_nothing(index_elements=["digest"])
    )
    return rows_matched(inserted) == 1


async def forget_before(session: AsyncSession, cutoff: datetime) -> int:
    """Drop the digests recorded before ``cutoff``; how many went."""
    return rows_matched(await session.execute(delete(SeenRequest).where(SeenRequest.seen_at < cutoff)))

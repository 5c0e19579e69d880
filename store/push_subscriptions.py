"""A person's devices that take Web Push notifications: each browser's push endpoint and its RFC 8291 keys.

A browser has one subscription per site, so an endpoint belongs to one person at a time: whoever enabled
notifications on that browser last (a shared computer passes from one person to the next). A person keeps at most
``MAX_DEVICES``; enabling one more forgets the oldest, so no one can make each approval fan out to a crowd of
endpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import rows_matched
from store.models import PushSubscription, User, utcnow

MAX_DEVICES = 10


async def save(
    session: AsyncSession, user_id: str, endpoint: str, p256dh: str, auth: str, user_agent: str = ""
) -> PushSubscription:
    """Subscribe ``endpoint`` for ``user_id``, replacing whatever that browser subscribed before."""
    await session.execute(delete(PushSubscription).where(PushSubscription.endpoint == endpoint))
    subscription = PushSubscription(
        user_id=user_id, endpoint=endpoint, p256dh=p256dh, auth=auth, user_agent=user_agent[:300]
    )
    session.add(subscription)
    await session.flush()
    beyond = (
        select(PushSubscription.id)
        .where(PushSubscription.user_id == user_id)
        .order_by(PushSubscription.created_at.desc(), PushSubscription.id.desc())
        .offset(MAX_DEVICES)
    )
    old = list(await session.scalars(beyond))
    if old:
        await session.execute(delete(PushSubscription).where(PushSubscription.id.in_(old)))
    return subscription


async def remove(session: AsyncSession, user_id: str, endpoint: str) -> bool:
    """Unsubscribe one of ``user_id``'s own devices; another person's endpoint is left alone."""
    result = await session.execute(
        delete(PushSubscription).where(PushSubscription.user_id == user_id, PushSubscription.endpoint == endpoint)
    )
    return rows_matched(result) > 0


async def belongs(session: AsyncSession, user_id: str, endpoint: str) -> bool:
    """Whether ``endpoint`` is one of ``user_id``'s devices now."""
    query = select(PushSubscription.id).where(
        PushSubscription.user_id == user_id, PushSubscription.endpoint == endpoint
    )
    return await session.scalar(query) is not None


async def count(session: AsyncSession, user_id: str) -> int:
    query = select(func.count()).select_from(PushSubscription).where(PushSubscription.user_id == user_id)
    return int(await session.scalar(query) or 0)


async def of_people(
    session: AsyncSession, user_ids: Iterable[str], *, chosen_or_not: bool = False
) -> Sequence[PushSubscription]:
    """The devices of those among ``user_ids`` who chose push notifications; with ``chosen_or_not`` (an
    escalation's), of each who has a device, whether push is on for them or not."""
    wanted = list(user_ids)
    if not wanted:
        return []
    query = (
        select(PushSubscription)
        .join(User, User.id == PushSubscription.user_id)
        .where(PushSubscription.user_id.in_(wanted), true() if chosen_or_not else User.notify_push.is_(True))
        .order_by(PushSubscription.created_at)
    )
    return list(await session.scalars(query))


async def gone(session: AsyncSession, subscription_id: str) -> None:
    """The push service said the subscription no longer exists (404 or 410): forget it."""
    await session.execute(delete(PushSubscription).where(PushSubscription.id == subscription_id))


async def delivered(session: AsyncSession, subscription_id: str) -> None:
    await session.execute(
        update(PushSubscription).where(PushSubscription.id == subscription_id).values(last_used_at=utcnow())
    )

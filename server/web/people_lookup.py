"""Names and e-mail addresses for the user ids that rules and audit entries carry, and a workspace's members."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Membership, User


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    email: str

    @property
    def label(self) -> str:
        return self.name or self.email


async def people_by_id(session: AsyncSession, ids: Iterable[str | None]) -> dict[str, Person]:
    wanted = {i for i in ids if i}
    if not wanted:
        return {}
    rows = await session.execute(select(User.id, User.name, User.email).where(User.id.in_(wanted)))
    return {uid: Person(uid, name, email) for uid, name, email in rows}


async def members_of(session: AsyncSession, workspace_id: str) -> list[Person]:
    """Everyone in the workspace, by name, for the pickers of admins."""
    rows = await session.execute(
        select(User.id, User.name, User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace_id)
        .order_by(User.name, User.email)
    )
    return [Person(uid, name, email) for uid, name, email in rows]

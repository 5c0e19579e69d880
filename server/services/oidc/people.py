"""Who a verified e-mail address signs in as, in the workspace whose provider vouched for it.

A person is matched by e-mail, case aside, and must already be a member of that workspace. Someone the provider
vouches for who has no account at all gets one, as a member, only where an admin allowed it. An account that
exists but is not a member is never added by a sign-in: which workspaces an account belongs to stays an
admin's decision, and a workspace's provider does not speak for accounts it did not create. Nor does it speak
for someone who belongs to other workspaces too: their personal connections go with them into every workspace,
and one workspace's admins, who may run its provider, must not reach them; such a person signs in with their
password.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.services.errors import ServiceError
from store.directory import add_member
from store.models import Membership, Role, User, Workspace


class NotAMember(ServiceError):
    code = "forbidden"


async def person_for(session: AsyncSession, workspace: Workspace, email: str, name: str, *, create: bool) -> User:
    """The member ``email`` names, created first if allowed; NotAMember, in words for them, otherwise."""
    user = await session.scalar(select(User).where(func.lower(User.email) == email.lower()))
    if user is None and create:
        created, _ = await add_member(session, workspace, email=email, role=Role.MEMBER, name=name)
        return created
    if user is not None:
        member = await session.scalar(
            select(Membership.id).where(Membership.workspace_id == workspace.id, Membership.user_id == user.id)
        )
        elsewhere = await session.scalar(
            select(Membership.id).where(Membership.workspace_id != workspace.id, Membership.user_id == user.id).limit(1)
        )
        if member is not None and elsewhere is not None:
            # Their personal connections follow them into every workspace: one workspace's provider (its admins
            # may run it) must not reach what belongs to them elsewhere.
            raise NotAMember(
                f"{email} belongs to other workspaces too, so {workspace.name}'s identity provider cannot sign them "
                "in. Sign in with your password."
            )
        if member is not None:
            return user
    raise NotAMember(f"{email} is not a member of {workspace.name}. Ask an admin of the workspace to add you.")

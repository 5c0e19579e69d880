"""Workspaces, users and their memberships."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.invalidation import Topic, announce
from store.models import KeyKind, Membership, Plan, Role, User, Workspace
from store.principal import Principal

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class DirectoryError(ValueError):
    """A request about workspaces or users that cannot be carried out; the message names the field."""


async def workspace_by_slug(session: AsyncSession, slug: str) -> Workspace:
    workspace = await session.scalar(select(Workspace).where(Workspace.slug == slug))
    if workspace is None:
        raise DirectoryError(f"workspace: no workspace with slug {slug!r}")
    return workspace


async def user_by_email(session: AsyncSession, email: str) -> User:
    user = await session.scalar(select(User).where(User.email == email.lower()))
    if user is None:
        raise DirectoryError(f"user: no user with e-mail {email!r}")
    return user


async def create_workspace(session: AsyncSession, *, slug: str, name: str, plan: Plan = Plan.PLUS) -> Workspace:
    if not SLUG.match(slug):
        raise DirectoryError("slug: use 2-63 lowercase letters, digits and dashes, starting with a letter or digit")
    if not name.strip():
        raise DirectoryError("name: must not be empty")
    if await session.scalar(select(Workspace.id).where(Workspace.slug == slug)):
        raise DirectoryError(f"slug: a workspace {slug!r} already exists")
    workspace = Workspace(slug=slug, name=name.strip(), plan=plan)
    session.add(workspace)
    await session.flush()
    return workspace


async def add_member(
    session: AsyncSession,
    workspace: Workspace,
    *,
    email: str,
    role: Role,
    name: str = "",
    manages_integrations: bool | None = None,
) -> tuple[User, Membership]:
    """Add a user to a workspace, creating the user on first sight; an existing member gets the new role.

    ``manages_integrations`` grants or withdraws the integration permission; None leaves it as it is.
    """
    email = email.strip().lower()
    if not EMAIL.match(email):
        raise DirectoryError(f"email: {email!r} is not an e-mail address")
    user = await session.scalar(select(User).where(User.email == email))
    if user is None:
        user = User(email=email, name=name or email.split("@")[0].title())
        session.add(user)
        await session.flush()
    membership = await session.scalar(
        select(Membership).where(Membership.workspace_id == workspace.id, Membership.user_id == user.id)
    )
    if membership is None:
        membership = Membership(workspace_id=workspace.id, user_id=user.id, role=role)
        session.add(membership)
    else:
        membership.role = role
    if manages_integrations is not None:
        membership.manages_integrations = manages_integrations
    await session.flush()
    # A role changes what a cached key may do and which connections it uses.
    await announce(session, Topic.KEYS)
    return user, membership


async def member_principal(
    session: AsyncSession, workspace_id: str, user_id: str, *, acting_as: str
) -> Principal | None:
    """A member acting without a key (the CLI, background sync), or None if they are not a member."""
    row = (
        await session.execute(
            select(User, Workspace, Membership)
            .join(Membership, Membership.user_id == User.id)
            .join(Workspace, Workspace.id == Membership.workspace_id)
            .where(User.id == user_id, Workspace.id == workspace_id)
        )
    ).one_or_none()
    if row is None:
        return None
    user, workspace, membership = row
    return Principal(
        user_id=user.id,
        email=user.email,
        workspace_id=workspace.id,
        workspace_slug=workspace.slug,
        role=membership.role,
        key_id=acting_as,
        key_kind=KeyKind.USER,
        scopes=frozenset({"api"}),
        timezone=workspace.timezone,
        manages_integrations=membership.manages_integrations,
        plan=workspace.plan,
        rate_limit=workspace.rate_limit_per_minute,
    )


async def first_workspace_of(session: AsyncSession, user_id: str) -> str | None:
    return await session.scalar(
        select(Membership.workspace_id).where(Membership.user_id == user_id).order_by(Membership.created_at).limit(1)
    )

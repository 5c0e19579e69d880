"""API keys: issued once in plaintext, kept only as a SHA-256 digest.

Keys are long random strings, so a fast digest is enough to make a stolen
table useless; a slow password hash would only slow every request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import rows_matched
from store.invalidation import Topic, announce
from store.models import ApiKey, KeyKind, Membership, Role, User, Workspace, utcnow
from store.principal import Principal

TOKEN_PREFIX = "hck_"
VISIBLE_CHARS = 12
SCOPES = frozenset({"tools", "api"})
DEFAULT_SCOPES = {KeyKind.AGENT: ["tools", "api"], KeyKind.USER: ["api"]}


class KeyRequestError(ValueError):
    """A key request that cannot be honoured (unknown scope, say)."""


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    token: str


async def create_key(
    session: AsyncSession,
    *,
    workspace_id: str,
    user_id: str,
    name: str = "",
    kind: KeyKind = KeyKind.AGENT,
    scopes: list[str] | None = None,
    token: str | None = None,
    person_facing: bool = False,
) -> IssuedKey:
    scopes = list(DEFAULT_SCOPES[kind] if scopes is None else scopes)
    unknown = sorted(set(scopes) - SCOPES)
    if unknown:
        raise KeyRequestError(f"scopes: unknown scope {', '.join(unknown)} (known: {', '.join(sorted(SCOPES))})")
    if person_facing:
        await _check_person_facing(session, workspace_id, kind)
    token = token or new_token()
    key = ApiKey(
        prefix=token[:VISIBLE_CHARS],
        secret_hash=digest(token),
        kind=kind,
        workspace_id=workspace_id,
        user_id=user_id,
        name=name,
        scopes=scopes,
        person_facing=person_facing,
    )
    session.add(key)
    await session.flush()
    return IssuedKey(key=key, token=token)


def live() -> ColumnElement[bool]:
    """A key that still works: never revoked, or rotated and still in its grace period."""
    return or_(ApiKey.revoked_at.is_(None), ApiKey.revoked_at > utcnow())


def _principal_query() -> Select[ApiKey, str, Workspace, Role, bool]:
    return (
        select(ApiKey, User.email, Workspace, Membership.role, Membership.manages_integrations)
        .join(User, User.id == ApiKey.user_id)
        .join(Workspace, Workspace.id == ApiKey.workspace_id)
        .join(Membership, (Membership.user_id == ApiKey.user_id) & (Membership.workspace_id == ApiKey.workspace_id))
        .where(live())
    )


def _principal(key: ApiKey, email: str, workspace: Workspace, role: Role, integrations: bool) -> Principal:
    return Principal(
        user_id=key.user_id,
        email=email,
        workspace_id=key.workspace_id,
        workspace_slug=workspace.slug,
        role=role,
        key_id=key.id,
        key_kind=key.kind,
        scopes=frozenset(key.scopes),
        timezone=workspace.timezone,
        manages_integrations=integrations,
        plan=workspace.plan,
        rate_limit=workspace.rate_limit_per_minute,
        person_facing=key.person_facing and key.kind is KeyKind.AGENT and workspace.person_facing_keys,
        in_chat_max_risk=workspace.in_chat_max_risk,
        last_asked_at=key.last_asked_at,
        assistant=key.name,
    )


async def authenticate(session: AsyncSession, token: str, *, touch_after: timedelta) -> Principal | None:
    """The principal behind ``token``, or None for an unknown, revoked or orphaned key.

    The user must still be a member of the key's workspace: removing someone
    from a workspace disables their keys there at once.
    """
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = (await session.execute(_principal_query().where(ApiKey.secret_hash == digest(token)))).one_or_none()
    if row is None:
        return None
    key = row[0]
    now = utcnow()
    # Writing on every request would turn each read into a write; a coarse
    # last-used time is all a person needs to spot a stale key.
    if key.last_used_at is None or now - key.last_used_at >= touch_after:
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
        await session.commit()
    return _principal(*row)


PERSON_FACING_WARNING = (
    "Mark a key person-facing only if the program using it (Claude Desktop, Claude Code, VS Code…) shows "
    "approval forms to you and never to the AI model. Answers given in its chat then approve calls as if you "
    "had clicked Approve in the inbox, and a remembered answer lasts at most 1 hour. If the model or anyone "
    "else can answer those forms, it can approve its own actions."
)


async def _check_person_facing(session: AsyncSession, workspace_id: str, kind: KeyKind) -> None:
    if kind is not KeyKind.AGENT:
        raise KeyRequestError("person_facing: only an agent key is used by an assistant's host")
    allowed = await session.scalar(select(Workspace.person_facing_keys).where(Workspace.id == workspace_id))
    if not allowed:
        raise KeyRequestError("person_facing: an admin of this workspace does not allow person-facing keys")


async def set_person_facing(session: AsyncSession, key: ApiKey, value: bool) -> None:
    """Mark (or unmark) an agent key as used by a person-facing host; the owner alone may, within the policy."""
    if value:
        await _check_person_facing(session, key.workspace_id, key.kind)
    key.person_facing = value
    await session.flush()
    await announce(session, Topic.KEYS)


async def revoke_key(session: AsyncSession, key_id: str, *, at: datetime | None = None) -> bool:
    """Revoke a key (a rotated one still in its grace period too); False if there is no such live key."""
    result = await session.execute(update(ApiKey).where(ApiKey.id == key_id, live()).values(revoked_at=at or utcnow()))
    await announce(session, Topic.KEYS)
    return bool(rows_matched(result))


async def rotate_key(session: AsyncSession, key: ApiKey, *, grace: timedelta) -> IssuedKey:
    """A new key like ``key`` (owner, name, kind, scopes); the old one stops working after ``grace``."""
    issued = await create_key(
        session, workspace_id=key.workspace_id, user_id=key.user_id, name=key.name, kind=key.kind,
        scopes=list(key.scopes),
    )  # fmt: skip
    # Set directly: the owner's word carries over, and the workspace's policy still decides whether it counts.
    issued.key.person_facing = key.person_facing
    key.revoked_at = utcnow() + grace
    await session.flush()
    await announce(session, Topic.KEYS)
    return issued


async def list_keys(session: AsyncSession, workspace_id: str) -> list[tuple[ApiKey, str]]:
    """The workspace's keys with their owners' e-mail, newest first."""
    rows = await session.execute(
        select(ApiKey, User.email)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.workspace_id == workspace_id)
        .order_by(ApiKey.created_at.desc())
    )
    return [(key, email) for key, email in rows.tuples()]

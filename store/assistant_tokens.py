"""Codes and tokens of Companion's own authorization server, kept only as SHA-256 digests.

They are long random strings, as API keys are, so a fast digest makes a stolen table useless. A code is spent
once; a refresh token is spent by the refresh that replaces it. Spending either twice is the sign of a stolen
one, and revokes everything issued from the same code (its family).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, Select, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import rows_matched
from store.invalidation import Topic, announce
from store.keys import digest
from store.models import (
    AssistantClient,
    AssistantGrant,
    AssistantPolicy,
    AssistantToken,
    KeyKind,
    Membership,
    Role,
    User,
    Workspace,
    new_id,
    utcnow,
)
from store.principal import APPROVALS, Principal

CODE = "code"
ACCESS = "access"
REFRESH = "refresh"
PREFIXES = {CODE: "hcc_", ACCESS: "hca_", REFRESH: "hcr_"}
#: How a grant's id begins (``AssistantGrant.id``): it stands where an API key's id stands, in approvals and audit.
GRANT_ID_PREFIX = "agr_"


def is_grant_id(key_id: str) -> bool:
    """Whether a principal's ``key_id`` is an assistant's grant rather than an API key."""
    return key_id.startswith(GRANT_ID_PREFIX)


def new_secret(kind: str) -> str:
    return PREFIXES[kind] + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Issued:
    access_token: str
    refresh_token: str
    expires_in: int
    scopes: list[str]


async def issue_code(
    session: AsyncSession,
    grant: AssistantGrant,
    *,
    scopes: list[str],
    resource: str,
    code_challenge: str,
    redirect_uri: str | None,
    ttl: timedelta,
) -> str:
    code = new_secret(CODE)
    session.add(
        AssistantToken(
            digest=digest(code), kind=CODE, grant_id=grant.id, family_id=new_id("fam"), scopes=scopes,
            resource=resource, code_challenge=code_challenge, redirect_uri=redirect_uri, expires_at=utcnow() + ttl,
        )
    )  # fmt: skip
    await session.flush()
    return code


def _unrevoked() -> ColumnElement[bool]:
    return AssistantToken.revoked_at.is_(None)


async def find(session: AsyncSession, secret: str, kind: str) -> AssistantToken | None:
    """The code or token ``secret`` names, unless revoked (spent or expired ones are returned: callers judge)."""
    if not secret.startswith(PREFIXES[kind]):
        return None
    return await session.scalar(
        select(AssistantToken).where(AssistantToken.digest == digest(secret), AssistantToken.kind == kind, _unrevoked())
    )


async def spend(session: AsyncSession, token: AssistantToken) -> bool:
    """Spend a code or refresh token once; False (and its family revoked) if it was spent already."""
    now = utcnow()
    result = await session.execute(
        update(AssistantToken)
        .where(AssistantToken.id == token.id, AssistantToken.spent_at.is_(None), _unrevoked())
        .values(spent_at=now)
    )
    if rows_matched(result):
        return True
    await revoke_family(session, token.family_id)
    return False


async def issue_tokens(
    session: AsyncSession,
    *,
    grant_id: str,
    family_id: str,
    scopes: list[str],
    resource: str,
    access_ttl: timedelta,
    refresh_ttl: timedelta,
) -> Issued:
    access, refresh = new_secret(ACCESS), new_secret(REFRESH)
    now = utcnow()
    for kind, secret, ttl in ((ACCESS, access, access_ttl), (REFRESH, refresh, refresh_ttl)):
        session.add(
            AssistantToken(
                digest=digest(secret), kind=kind, grant_id=grant_id, family_id=family_id, scopes=scopes,
                resource=resource, created_at=now, expires_at=now + ttl,
            )
        )  # fmt: skip
    await session.execute(update(AssistantGrant).where(AssistantGrant.id == grant_id).values(last_used_at=now))
    await session.flush()
    return Issued(access, refresh, int(access_ttl.total_seconds()), scopes)


async def revoke_family(session: AsyncSession, family_id: str) -> None:
    await session.execute(
        update(AssistantToken).where(AssistantToken.family_id == family_id, _unrevoked()).values(revoked_at=utcnow())
    )
    await announce(session, Topic.KEYS)


async def client_of_grant(session: AsyncSession, grant_id: str) -> str | None:
    """The client a grant (a principal's ``key_id`` for an access token) was given to, if it still stands."""
    if not is_grant_id(grant_id):
        return None
    return await session.scalar(
        select(AssistantClient.client_id)
        .join(AssistantGrant, AssistantGrant.client_ref == AssistantClient.id)
        .where(AssistantGrant.id == grant_id)
    )


async def revoke_grant(session: AsyncSession, grant_id: str) -> bool:
    """Revoke a person's grant to a client with every token issued under it; False if there was none."""
    result = await session.execute(
        update(AssistantToken).where(AssistantToken.grant_id == grant_id, _unrevoked()).values(revoked_at=utcnow())
    )
    grant = await session.get(AssistantGrant, grant_id)
    if grant is not None:
        await session.delete(grant)
    await announce(session, Topic.KEYS)
    return grant is not None or bool(rows_matched(result))


def _principal_query() -> Select[
    AssistantToken, AssistantGrant, AssistantClient, AssistantPolicy, str, Workspace, Role, bool
]:
    policy = and_(
        AssistantPolicy.workspace_id == AssistantGrant.workspace_id,
        AssistantPolicy.client_id == AssistantClient.client_id,
    )
    return (
        select(
            AssistantToken,
            AssistantGrant,
            AssistantClient,
            AssistantPolicy,
            User.email,
            Workspace,
            Membership.role,
            Membership.manages_integrations,
        )
        .join(AssistantGrant, AssistantGrant.id == AssistantToken.grant_id)
        .join(AssistantClient, AssistantClient.id == AssistantGrant.client_ref)
        .join(User, User.id == AssistantGrant.user_id)
        .join(Workspace, Workspace.id == AssistantGrant.workspace_id)
        .join(
            Membership,
            (Membership.user_id == AssistantGrant.user_id) & (Membership.workspace_id == AssistantGrant.workspace_id),
        )
        .outerjoin(AssistantPolicy, policy)
        .where(or_(AssistantPolicy.blocked.is_(None), AssistantPolicy.blocked.is_(False)))
    )


async def authenticate(session: AsyncSession, token: str, *, touch_after: timedelta) -> Principal | None:
    """The principal behind an access token, or None for an unknown, expired or revoked one, one whose client an
    admin blocked, or one whose person left the workspace."""
    if not token.startswith(PREFIXES[ACCESS]):
        return None
    now = utcnow()
    row = (
        await session.execute(
            _principal_query().where(
                AssistantToken.digest == digest(token),
                AssistantToken.kind == ACCESS,
                _unrevoked(),
                AssistantToken.expires_at > now,
            )
        )
    ).one_or_none()
    if row is None:
        return None
    access, grant, client, policy, email, workspace, role, integrations = row
    if grant.last_used_at is None or now - grant.last_used_at >= touch_after:
        await session.execute(update(AssistantGrant).where(AssistantGrant.id == grant.id).values(last_used_at=now))
        await session.execute(update(AssistantClient).where(AssistantClient.id == client.id).values(last_used_at=now))
        await session.commit()
    scopes = set(access.scopes)
    if policy is None or not policy.may_decide:
        scopes.discard(APPROVALS)
    person_facing_policy = policy.person_facing if policy is not None else "default"
    return Principal(
        user_id=grant.user_id,
        email=email,
        workspace_id=workspace.id,
        workspace_slug=workspace.slug,
        role=role,
        key_id=grant.id,
        key_kind=KeyKind.AGENT,
        scopes=frozenset(scopes),
        timezone=workspace.timezone,
        manages_integrations=integrations,
        plan=workspace.plan,
        rate_limit=workspace.rate_limit_per_minute,
        person_facing=grant.person_facing and may_be_person_facing(workspace, person_facing_policy),
        in_chat_max_risk=workspace.in_chat_max_risk,
        last_asked_at=grant.last_asked_at,
        assistant=client.name or client.client_id,
        client_id=client.client_id,
        audience=access.resource,
    )


def may_be_person_facing(workspace: Workspace, policy: str) -> bool:
    """Whether a client's in-chat answers may count in this workspace: an admin's word for this client, else the
    workspace's setting for person-facing keys."""
    if policy == "forbidden":
        return False
    return policy == "allowed" or workspace.person_facing_keys

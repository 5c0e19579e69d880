"""Who an external authorization server's access token speaks for, once its signature and claims are checked.

The server names a person by e-mail address (in a claim the operator chose) and, optionally, a workspace by slug.
Nothing about the token is stored: it is not Companion's to revoke, and it expires at its server's word. What an
API key's id or a grant's id does elsewhere (approvals bound to the credential that asked, rate windows, caps on
pending approvals) a stable id derived from the issuer, the client and the person does here.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import AssistantPolicy, KeyKind, Membership, User, Workspace, utcnow
from store.principal import APPROVALS, Principal

KEY_ID_PREFIX = "ext_"


def key_id_of(issuer: str, client_id: str, user_id: str) -> str:
    """The 32-character id that stands for this client acting for this person, the same on every replica."""
    material = "\n".join((issuer, client_id, user_id)).encode()
    return KEY_ID_PREFIX + hashlib.sha256(material).hexdigest()[: 32 - len(KEY_ID_PREFIX)]


async def principal(
    session: AsyncSession,
    *,
    issuer: str,
    client_id: str,
    email: str,
    workspace_slug: str | None,
    scopes: frozenset[str],
    audience: str,
) -> Principal | None:
    """The principal for a checked token, or None: no such person, not a member of the workspace named (or, with
    none named, of more than one), or a client an admin blocked in the workspace."""
    query = (
        select(User, Workspace, Membership, AssistantPolicy)
        .join(Membership, Membership.user_id == User.id)
        .join(Workspace, Workspace.id == Membership.workspace_id)
        .outerjoin(
            AssistantPolicy,
            and_(AssistantPolicy.workspace_id == Workspace.id, AssistantPolicy.client_id == client_id),
        )
        .where(User.email == email.lower())
        .limit(2)
    )
    if workspace_slug is not None:
        query = query.where(Workspace.slug == workspace_slug)
    rows = (await session.execute(query)).all()
    if len(rows) != 1:
        return None
    user, workspace, membership, policy = rows[0]
    if policy is not None and policy.blocked:
        return None
    kept = scopes if policy is not None and policy.may_decide else scopes - {APPROVALS}
    return Principal(
        user_id=user.id,
        email=user.email,
        workspace_id=workspace.id,
        workspace_slug=workspace.slug,
        role=membership.role,
        key_id=key_id_of(issuer, client_id, user.id),
        # An assistant's token is an agent's credential, whoever signed the person in (SECURITY.md).
        key_kind=KeyKind.AGENT,
        scopes=kept,
        timezone=workspace.timezone,
        manages_integrations=membership.manages_integrations,
        plan=workspace.plan,
        rate_limit=workspace.rate_limit_per_minute,
        # Never person-facing: that is the person's word, given on Companion's consent page, that the client shows
        # forms to them rather than to the model. No page of ours asked them, and the token cannot say it for them.
        person_facing=False,
        in_chat_max_risk=workspace.in_chat_max_risk,
        # No row of ours records when this token's calls last asked, so each call a rule allows is looked for
        # among its approvals: an approval asked and approved before the rule came runs once, through itself.
        last_asked_at=utcnow(),
        assistant=client_id,
        client_id=client_id,
        audience=audience,
    )

"""Connected assistants: the assistants a person signed in to Companion, and what a workspace's admins decide
about each of them.

A person sees the assistants they consented to in the workspace, and revokes one: every token issued under that
consent stops at once, and the next sign-in asks again. An admin sees every person's, and keeps one policy per
assistant (client) for the workspace: blocked for everyone, whether its in-chat answers may count as the person's
(person-facing), and whether it may decide approvals (the ``approvals`` scope).

A policy applies to tokens already issued, because ``store.assistant_tokens.authenticate`` reads it on every
authentication; every change is announced so that no replica goes on serving a principal it cached before it.
Assistants are a person's to manage, never an assistant's: an OAuth token, whatever its scopes, is refused here
as an agent key is (SECURITY.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Select, and_, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from approvals import lifecycle
from server.services.errors import Forbidden, InvalidInput, NotFound
from store import assistant_tokens
from store.db import Database
from store.invalidation import Topic, announce
from store.models import (
    Approval,
    ApprovalStatus,
    AssistantClient,
    AssistantGrant,
    AssistantPolicy,
    AssistantToken,
    KeyKind,
    User,
    Workspace,
    utcnow,
)
from store.principal import Principal

PersonFacing = Literal["default", "allowed", "forbidden"]

PERSON_FACING_WORDS = (
    "default: as the workspace's setting for person-facing keys says; allowed: a person may say at consent that "
    "this assistant shows confirmation prompts to them, and its in-chat answers then approve within the "
    "workspace's limits; forbidden: its in-chat answers never approve anything, whatever the person said."
)
MAY_DECIDE_WORDS = (
    "Whether this assistant may be given the approvals scope, to decide approvals in a person's name. People who "
    "already signed it in get the scope only when they sign it in again and consent to it; turning it off takes "
    "the scope from every token at once."
)


class ConnectedAssistant(BaseModel):
    """One person's consent to one assistant in this workspace, with what it may do."""

    id: str = Field(
        examples=["agr_4f9c2a7d1e0b3c58"],
        description="The consent's id. Approvals and audit entries of this assistant name it as their key.",
    )
    client_id: str = Field(description="The assistant's OAuth client id: its metadata document's URL, or another id")
    name: str = Field(description="The assistant's name, as it gave it")
    client_uri: str | None = Field(description="The assistant's home site, as it gave it")
    kind: Literal["registered", "document"] = Field(
        description="document: named by its Client ID Metadata Document; registered: it registered itself, so "
        "its name is its own claim"
    )
    scopes: list[str] = Field(description="What the person consented to")
    person_facing: bool = Field(description="The person said at consent that it shows confirmation prompts to them")
    person_facing_in_effect: bool = Field(
        description="Whether its in-chat answers approve now: the person said so, and the workspace allows it"
    )
    blocked: bool = Field(description="An admin blocked this assistant in the workspace: its tokens are refused")
    holds_tokens: bool = Field(description="Whether it holds an access or refresh token that has not expired")
    consented_at: datetime
    last_used_at: datetime | None


class WorkspaceConnectedAssistant(ConnectedAssistant):
    user_id: str
    person: str = Field(description="Whose consent it is: their e-mail")


class AssistantPolicyOut(BaseModel):
    """What the workspace's admins decided about one assistant, for everyone in the workspace."""

    client_id: str
    name: str = Field(description="The assistant's name, as it gave it; empty if it never came here")
    client_uri: str | None
    kind: Literal["registered", "document"] | None = Field(
        description="How it is known, as for a connected assistant; null if it never came here"
    )
    blocked: bool = Field(description="Its tokens are refused, and no one can sign it in")
    person_facing: PersonFacing = Field(description=PERSON_FACING_WORDS)
    may_decide: bool = Field(description=MAY_DECIDE_WORDS)
    people: int = Field(description="How many people in the workspace signed it in")
    updated_at: datetime | None = Field(description="When an admin last changed the policy; null if none did")


class PolicyChange(BaseModel):
    """The whole policy for one assistant in the workspace."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(
        min_length=1,
        max_length=2048,
        examples=["https://claude.ai/oauth/claude-code-client-metadata"],
        description="An assistant that came here, or the https URL of one's metadata document, to decide about "
        "it before anyone signs it in",
    )
    blocked: bool = Field(description="Refuse its tokens for everyone in the workspace, at once")
    person_facing: PersonFacing = Field(description=PERSON_FACING_WORDS)
    may_decide: bool = Field(description=MAY_DECIDE_WORDS)


class WorkspaceAssistants(BaseModel):
    grants: list[WorkspaceConnectedAssistant] = Field(description="Every person's connected assistants")
    policies: list[AssistantPolicyOut] = Field(
        description="One per assistant someone signed in, or an admin decided about"
    )


class AssistantsForbidden(Forbidden):
    """Managing assistants with an assistant's own credential, or a workspace's policy without being its admin."""


class NoSuchGrant(NotFound):
    """A connected assistant that is not the caller's own in this workspace: another's is not found either."""


class UnknownClient(InvalidInput):
    """A policy for a client id that no assistant ever used here and that names no metadata document."""


def _person(principal: Principal) -> Principal:
    """A person acting with their own credential: an assistant must never see or change its own standing."""
    if principal.is_assistant_token or principal.key_kind is not KeyKind.USER:
        raise AssistantsForbidden(
            "Connected assistants are managed by the person, with a user key or the console; an agent key or an "
            "assistant's token cannot see or change them."
        )
    return principal


def _admin(principal: Principal) -> Principal:
    _person(principal)
    if not principal.is_admin:
        raise AssistantsForbidden("Only a workspace admin sees everyone's assistants and decides about them.")
    return principal


def _grants(workspace_id: str) -> Select[AssistantGrant, AssistantClient, AssistantPolicy, str, Workspace, bool]:
    """The workspace's consents, each with its assistant, the workspace's policy on it, whose it is, and whether it
    holds a token that still works."""
    now = utcnow()
    live_token = exists().where(
        AssistantToken.grant_id == AssistantGrant.id,
        AssistantToken.kind.in_((assistant_tokens.ACCESS, assistant_tokens.REFRESH)),
        AssistantToken.revoked_at.is_(None),
        AssistantToken.spent_at.is_(None),
        AssistantToken.expires_at > now,
    )
    policy = and_(
        AssistantPolicy.workspace_id == AssistantGrant.workspace_id,
        AssistantPolicy.client_id == AssistantClient.client_id,
    )
    return (
        select(AssistantGrant, AssistantClient, AssistantPolicy, User.email, Workspace, live_token.label("live"))
        .join(AssistantClient, AssistantClient.id == AssistantGrant.client_ref)
        .join(User, User.id == AssistantGrant.user_id)
        .join(Workspace, Workspace.id == AssistantGrant.workspace_id)
        .outerjoin(AssistantPolicy, policy)
        .where(AssistantGrant.workspace_id == workspace_id)
        .order_by(AssistantGrant.consented_at.desc(), AssistantGrant.id)
    )


def _grant_fields(
    grant: AssistantGrant, client: AssistantClient, policy: AssistantPolicy | None, email: str, workspace: Workspace,
    live: bool,
) -> dict[str, object]:  # fmt: skip
    may_count = assistant_tokens.may_be_person_facing(workspace, policy.person_facing if policy else "default")
    return {
        "id": grant.id, "client_id": client.client_id, "name": client.name, "client_uri": client.client_uri,
        "kind": client.kind, "scopes": list(grant.scopes), "person_facing": grant.person_facing,
        "person_facing_in_effect": grant.person_facing and may_count, "blocked": policy is not None and policy.blocked,
        "holds_tokens": bool(live), "consented_at": grant.consented_at, "last_used_at": grant.last_used_at,
        "user_id": grant.user_id, "person": email,
    }  # fmt: skip


@dataclass(frozen=True)
class ConnectedAssistants:
    db: Database

    async def mine(self, principal: Principal) -> list[ConnectedAssistant]:
        """The assistants the person signed in to this workspace, the latest consent first."""
        person = _person(principal)
        query = _grants(person.workspace_id).where(AssistantGrant.user_id == person.user_id)
        async with self.db.session() as session:
            rows = (await session.execute(query)).all()
        return [ConnectedAssistant.model_validate(_grant_fields(*row)) for row in rows]

    async def revoke(self, principal: Principal, grant_id: str) -> None:
        """Revoke one of the person's own assistants, with every token issued to it, on every replica at once."""
        person = _person(principal)
        async with self.db.transaction() as session:
            grant = await session.get(AssistantGrant, grant_id)
            if grant is None or grant.user_id != person.user_id or grant.workspace_id != person.workspace_id:
                raise NoSuchGrant("You have no such connected assistant in this workspace.")
            # What it asked and still waits is withdrawn with it: a later sign-in of the same assistant starts
            # afresh, and nothing it asked before can be decided or run on its behalf.
            waiting = await session.scalars(
                select(Approval).where(Approval.api_key_id == grant.id, Approval.status == ApprovalStatus.PENDING)
            )
            for approval in waiting.all():
                await lifecycle.cancel(session, approval, actor_id=person.user_id)
            await assistant_tokens.revoke_grant(session, grant.id)

    async def of_workspace(self, principal: Principal) -> WorkspaceAssistants:
        """Every person's assistants in the workspace, and the policy of each assistant; admins only."""
        admin = _admin(principal)
        async with self.db.session() as session:
            rows = (await session.execute(_grants(admin.workspace_id))).all()
            grants = [WorkspaceConnectedAssistant.model_validate(_grant_fields(*row)) for row in rows]
            policies = await _policies(session, admin.workspace_id)
        return WorkspaceAssistants(grants=grants, policies=policies)

    async def set_policy(self, principal: Principal, change: PolicyChange) -> AssistantPolicyOut:
        """Decide about one assistant for everyone in the workspace; it holds from the next request of each of its
        tokens, except a new ``may_decide``, which a person grants by consenting again."""
        admin = _admin(principal)
        async with self.db.transaction() as session:
            known = await session.scalar(select(exists().where(AssistantClient.client_id == change.client_id)))
            if not known and not change.client_id.startswith("https://"):
                raise UnknownClient(
                    {
                        "client_id": "no assistant with this client id signed anyone in here; name an assistant "
                        "that did, or the https URL of an assistant's metadata document"
                    }
                )
            policy = await session.get(AssistantPolicy, (admin.workspace_id, change.client_id))
            if policy is None:
                policy = AssistantPolicy(workspace_id=admin.workspace_id, client_id=change.client_id)
                session.add(policy)
            policy.blocked = change.blocked
            policy.person_facing = change.person_facing
            policy.may_decide = change.may_decide
            policy.updated_by = admin.user_id
            policy.updated_at = utcnow()
            await session.flush()
            # Tokens already issued follow the new policy from their next request, on whichever replica.
            await announce(session, Topic.KEYS)
            (out,) = [p for p in await _policies(session, admin.workspace_id) if p.client_id == change.client_id]
        return out


async def _policies(session: AsyncSession, workspace_id: str) -> list[AssistantPolicyOut]:
    """A policy for every assistant someone in the workspace signed in, and for every one an admin decided about
    (a blocked one whose people all revoked it, or one decided about before anyone signed it in)."""
    people = (
        select(AssistantGrant.client_ref, func.count().label("people"))
        .where(AssistantGrant.workspace_id == workspace_id)
        .group_by(AssistantGrant.client_ref)
        .subquery()
    )
    used = (
        await session.execute(
            select(AssistantClient, people.c.people).join(people, people.c.client_ref == AssistantClient.id)
        )
    ).all()
    in_workspace = select(AssistantPolicy).where(AssistantPolicy.workspace_id == workspace_id)
    decided = {policy.client_id: policy for policy in await session.scalars(in_workspace)}
    clients = {client.client_id: (client, int(count)) for client, count in used}
    missing = set(decided) - set(clients)
    if missing:
        for client in await session.scalars(select(AssistantClient).where(AssistantClient.client_id.in_(missing))):
            clients[client.client_id] = (client, 0)
    out = []
    for client_id in set(clients) | set(decided):
        client, count = clients.get(client_id, (None, 0))
        policy = decided.get(client_id)
        out.append(
            AssistantPolicyOut(
                client_id=client_id, name=client.name if client else "",
                client_uri=client.client_uri if client else None, kind=_kind_of(client),
                blocked=policy is not None and policy.blocked,
                person_facing=_person_facing_of(policy),
                may_decide=policy is not None and policy.may_decide, people=count,
                updated_at=policy.updated_at if policy else None,
            )
        )  # fmt: skip
    out.sort(key=lambda p: ((p.name or p.client_id).casefold(), p.client_id))
    return out


def _kind_of(client: AssistantClient | None) -> Literal["registered", "document"] | None:
    if client is None:
        return None
    return "document" if client.kind == "document" else "registered"


def _person_facing_of(policy: AssistantPolicy | None) -> PersonFacing:
    value = policy.person_facing if policy is not None else "default"
    if value == "allowed":
        return "allowed"
    if value == "forbidden":
        return "forbidden"
    return "default"

"""Signing a person in to an assistant: the request the assistant makes, the consent the person gives, and the
codes and tokens that follow (OAuth 2.1 with PKCE, RFC 8707 audiences, RFC 9207 ``iss``).

The authorization request travels to the consent page sealed (signed, with a lifetime), so nothing the browser
sends back can widen it. A token is bound to one audience: this server's MCP endpoint, its REST API, or both
(the server's base URL), and is refused anywhere else. Consent is remembered per client, person, workspace and
scope; the ``approvals`` scope is granted only where an admin allowed it for that client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.services.assistants.clients import AssistantClients, Client
from server.services.errors import Forbidden, InvalidInput
from server.settings import Settings
from store import assistant_tokens
from store.assistant_tokens import Issued
from store.crypto import derive_key
from store.db import Database
from store.invalidation import Topic, announce
from store.models import (
    AssistantClient,
    AssistantGrant,
    AssistantPolicy,
    AssistantToken,
    Membership,
    Workspace,
    utcnow,
)
from store.principal import API_READ, API_WRITE, APPROVALS, TOOLS, Principal

#: What each scope lets an assistant do, in the words the consent page shows.
SCOPE_WORDS = {
    TOOLS: "Use your connected apps through Companion's tools. A call that changes something still waits for "
    "your approval unless one of your rules allows it.",
    API_READ: "Read your meetings, summaries, contacts and insights through Companion's REST API.",
    API_WRITE: "Upload recordings and transcripts in your name through the REST API. Uploads do not wait for "
    "approval. Rules, keys, webhooks, connected apps and decisions stay yours alone.",
    APPROVALS: "Decide approvals in your name. Only an assistant an admin allowed may have this.",
}
SCOPES = list(SCOPE_WORDS)
REQUEST_SECONDS = 600
CODE_LIFETIME = timedelta(minutes=2)


class InvalidTarget(InvalidInput):
    """A ``resource`` that is not this server (RFC 8707 ``invalid_target``)."""


class InvalidGrant(Exception):
    """A code or refresh token that cannot be exchanged (RFC 6749 ``invalid_grant``); the message says why."""


class AuthorizationRequest(BaseModel):
    """What an assistant asked at the authorization endpoint, after the endpoint checked it."""

    client_id: str
    redirect_uri: str
    redirect_uri_explicit: bool
    scopes: list[str]
    state: str | None
    code_challenge: str
    resource: str


@dataclass(frozen=True)
class Redirect:
    """Where the browser goes back to the assistant, and the parameters it carries."""

    uri: str
    params: dict[str, str]


@dataclass(frozen=True)
class ConsentScreen:
    client: Client
    redirect_uri: str
    #: The redirect goes to another host than the client's home site: the page warns.
    redirect_elsewhere: bool
    workspace_name: str
    scopes: list[tuple[str, str]]
    #: Asked for ``approvals`` where no admin allowed it: the page says it will not be granted.
    approvals_withheld: bool
    blocked: bool
    person_facing_allowed: bool
    already_granted: bool


@dataclass(frozen=True)
class CodeGrant:
    """An unspent code as the token endpoint checks it."""

    id: str
    family_id: str
    grant_id: str
    scopes: list[str]
    resource: str
    code_challenge: str
    redirect_uri: str | None
    expires_at: float
    subject: str


@dataclass(frozen=True)
class RefreshGrant:
    id: str
    family_id: str
    grant_id: str
    scopes: list[str]
    resource: str
    expires_at: int
    subject: str


@dataclass
class AuthorizationServer:
    settings: Settings
    db: Database
    clients: AssistantClients

    @property
    def enabled(self) -> bool:
        """Whether Companion signs people in itself: not when an external authorization server issues the tokens
        (``COMPANION_AUTHORIZATION_SERVERS``), whose consent is then the only one asked."""
        return self.settings.authorization_server is None

    @property
    def issuer(self) -> str:
        return self.settings.base_url

    @property
    def api_url(self) -> str:
        return f"{self.settings.base_url}/api/v1"

    @property
    def audiences(self) -> tuple[str, ...]:
        """The resources a token may be issued for: the MCP endpoint, the REST API, or the whole server."""
        return (self.settings.mcp_url, self.api_url, self.settings.base_url)

    def audience_of(self, resource: str | None) -> str:
        """The audience for a requested ``resource``: exactly one of ours (a trailing slash aside), or, when none is
        named, the whole server."""
        if resource is None or resource == "":
            return self.settings.base_url
        wanted = resource.removesuffix("/")
        if wanted not in self.audiences:
            raise InvalidTarget({"resource": f"{resource} is not this server; use {self.settings.mcp_url}"})
        return wanted

    def _serializer(self) -> URLSafeTimedSerializer:
        secret = derive_key(self.settings.encryption_keys()[0], "oauth authorization request")
        return URLSafeTimedSerializer(secret, salt="authorization-request")

    def seal(self, request: AuthorizationRequest) -> str:
        return self._serializer().dumps(request.model_dump())

    def unseal(self, sealed: str) -> AuthorizationRequest:
        try:
            return AuthorizationRequest.model_validate(self._serializer().loads(sealed, max_age=REQUEST_SECONDS))
        except (BadSignature, ValidationError):
            raise InvalidInput(
                {"request": "this sign-in request has expired or was changed; start again from your assistant"}
            ) from None

    def begin(
        self,
        client: Client,
        *,
        redirect_uri: str,
        redirect_uri_explicit: bool,
        scopes: list[str] | None,
        state: str | None,
        code_challenge: str,
        resource: str | None,
    ) -> str:
        """Check an authorization request and seal it for the consent page."""
        audience = self.audience_of(resource)
        asked = scopes or ([API_READ] if audience == self.api_url else [TOOLS])
        unknown = sorted(set(asked) - set(SCOPES))
        if unknown:
            raise InvalidInput({"scope": f"unknown scope {', '.join(unknown)} (known: {', '.join(SCOPES)})"})
        request = AuthorizationRequest(
            client_id=client.client_id, redirect_uri=redirect_uri, redirect_uri_explicit=redirect_uri_explicit,
            scopes=[scope for scope in SCOPES if scope in asked], state=state, code_challenge=code_challenge,
            resource=audience,
        )  # fmt: skip
        return self.seal(request)

    async def _client_of(self, request: AuthorizationRequest) -> Client:
        client = await self.clients.get(request.client_id)
        if client is None or request.redirect_uri not in client.redirect_uris:
            raise InvalidInput({"client_id": "this assistant is no longer registered; start again from it"})
        return client

    async def screen(self, request: AuthorizationRequest, person: Principal) -> ConsentScreen:
        """What the consent page shows the signed-in person."""
        client = await self._client_of(request)
        async with self.db.session() as session:
            workspace = await session.get(Workspace, person.workspace_id)
            policy = await session.get(AssistantPolicy, (person.workspace_id, client.client_id))
            grant = await self._grant(session, client.client_id, person)
        granted = set(grant.scopes) if grant is not None else set()
        withheld = APPROVALS in request.scopes and not (policy is not None and policy.may_decide)
        shown = [scope for scope in request.scopes if not (scope == APPROVALS and withheld)]
        return ConsentScreen(
            client=client,
            redirect_uri=request.redirect_uri,
            redirect_elsewhere=_host(request.redirect_uri) != _host(client.client_uri or client.client_id),
            workspace_name=workspace.name if workspace is not None else person.workspace_slug,
            scopes=[(scope, SCOPE_WORDS[scope]) for scope in shown],
            approvals_withheld=withheld,
            blocked=policy is not None and policy.blocked,
            person_facing_allowed=workspace is not None
            and assistant_tokens.may_be_person_facing(workspace, policy.person_facing if policy else "default"),
            already_granted=grant is not None and set(shown) <= granted,
        )

    async def decide(
        self, request: AuthorizationRequest, person: Principal, *, approve: bool, person_facing: bool | None
    ) -> Redirect:
        """The person's answer, as the redirect back to the assistant: a code, or ``access_denied``.

        ``person_facing`` None keeps what the person said before (a remembered consent)."""
        screen = await self.screen(request, person)
        back = {"iss": self.issuer} | ({"state": request.state} if request.state is not None else {})
        if not approve or screen.blocked:
            return Redirect(request.redirect_uri, {"error": "access_denied", **back})
        scopes = [scope for scope, _ in screen.scopes]
        async with self.db.transaction() as session:
            grant = await self._grant(session, request.client_id, person)
            if grant is None:
                client_ref = await session.scalar(
                    select(AssistantClient.id).where(AssistantClient.client_id == request.client_id)
                )
                if client_ref is None:
                    raise Forbidden("This assistant is no longer registered; start again from it.")
                grant = AssistantGrant(
                    client_ref=client_ref, user_id=person.user_id, workspace_id=person.workspace_id, scopes=scopes,
                    person_facing=bool(person_facing) and screen.person_facing_allowed,
                )  # fmt: skip
                session.add(grant)
            else:
                grant.scopes = [scope for scope in SCOPES if scope in set(grant.scopes) | set(scopes)]
                if person_facing is not None:
                    grant.person_facing = person_facing and screen.person_facing_allowed
                grant.consented_at = utcnow()
            await session.flush()
            code = await assistant_tokens.issue_code(
                session, grant, scopes=scopes, resource=request.resource, code_challenge=request.code_challenge,
                redirect_uri=request.redirect_uri if request.redirect_uri_explicit else None, ttl=CODE_LIFETIME,
            )  # fmt: skip
            # A changed person-facing answer changes who the grant's tokens are: every replica forgets them.
            await announce(session, Topic.KEYS)
        return Redirect(request.redirect_uri, {"code": code, **back})

    @staticmethod
    async def _grant(session: AsyncSession, client_id: str, person: Principal) -> AssistantGrant | None:
        return await session.scalar(
            select(AssistantGrant)
            .join(AssistantClient, AssistantClient.id == AssistantGrant.client_ref)
            .where(
                AssistantClient.client_id == client_id,
                AssistantGrant.user_id == person.user_id,
                AssistantGrant.workspace_id == person.workspace_id,
            )
        )

    async def _token(self, client_id: str, secret: str, kind: str) -> tuple[AssistantToken, str] | None:
        """A code or token with the person it was issued for, if it was issued to ``client_id``."""
        async with self.db.transaction() as session:
            token = await assistant_tokens.find(session, secret, kind)
            if token is None:
                return None
            row = (
                await session.execute(
                    select(AssistantClient.client_id, AssistantGrant.user_id)
                    .join(AssistantGrant, AssistantGrant.client_ref == AssistantClient.id)
                    .where(AssistantGrant.id == token.grant_id)
                )
            ).one_or_none()
            if row is None or row[0] != client_id:
                return None
            if kind == assistant_tokens.CODE and token.spent_at is not None:
                # A code presented twice was stolen on the way or replayed: what it gave is taken back (RFC 6749
                # §4.1.2), and this attempt learns nothing.
                await assistant_tokens.revoke_family(session, token.family_id)
                return None
            return token, row[1]

    async def code(self, client_id: str, secret: str) -> CodeGrant | None:
        found = await self._token(client_id, secret, assistant_tokens.CODE)
        if found is None:
            return None
        token, subject = found
        return CodeGrant(
            id=token.id, family_id=token.family_id, grant_id=token.grant_id, scopes=list(token.scopes),
            resource=token.resource, code_challenge=token.code_challenge or "", redirect_uri=token.redirect_uri,
            expires_at=token.expires_at.timestamp(), subject=subject,
        )  # fmt: skip

    async def refresh_token(self, client_id: str, secret: str) -> RefreshGrant | None:
        found = await self._token(client_id, secret, assistant_tokens.REFRESH)
        if found is None:
            return None
        token, subject = found
        return RefreshGrant(
            id=token.id, family_id=token.family_id, grant_id=token.grant_id, scopes=list(token.scopes),
            resource=token.resource, expires_at=int(token.expires_at.timestamp()), subject=subject,
        )  # fmt: skip

    async def exchange(
        self, spent_id: str, family_id: str, grant_id: str, *, scopes: list[str], resource: str, asked: str | None
    ) -> Issued:
        """Spend a code or refresh token once and issue the next access and refresh tokens of its family.

        ``asked`` is the ``resource`` of the token request: it may repeat the audience, never change it."""
        if asked and asked.removesuffix("/") != resource:
            raise InvalidTarget({"resource": f"{asked} is not the resource this grant was given for"})
        issued: Issued | None = None
        # The refusals are raised after the transaction commits: a spent token's revoked family stays revoked.
        async with self.db.transaction() as session:
            token = await session.get(AssistantToken, spent_id)
            spent = token is not None and await assistant_tokens.spend(session, token)
            refusal = await self._refusal(session, grant_id) if spent else None
            if refusal is not None:
                # The person left the workspace, or an admin blocked the assistant: nothing issued from this
                # sign-in may come back to life if that changes, so the whole family goes.
                await assistant_tokens.revoke_family(session, family_id)
            if spent and refusal is None:
                issued = await assistant_tokens.issue_tokens(
                    session, grant_id=grant_id, family_id=family_id, scopes=scopes, resource=resource,
                    access_ttl=timedelta(seconds=self.settings.oauth_access_token_seconds),
                    refresh_ttl=timedelta(days=self.settings.oauth_refresh_token_days),
                )  # fmt: skip
        if not spent:
            raise InvalidGrant("this code or refresh token was used already; everything issued from it is revoked")
        if issued is None:
            raise InvalidGrant(refusal or "this sign-in can no longer be used")
        return issued

    @staticmethod
    async def _refusal(session: AsyncSession, grant_id: str) -> str | None:
        """Why a sign-in may issue no more tokens: its person left the workspace, or an admin blocked its client."""
        grant = await session.get(AssistantGrant, grant_id)
        if grant is None:
            return "this sign-in was revoked"
        member = await session.scalar(
            select(Membership.id).where(
                Membership.user_id == grant.user_id, Membership.workspace_id == grant.workspace_id
            )
        )
        if member is None:
            return "the person is no longer a member of the workspace"
        blocked = await session.scalar(
            select(AssistantPolicy.blocked)
            .join(AssistantClient, AssistantClient.client_id == AssistantPolicy.client_id)
            .where(AssistantClient.id == grant.client_ref, AssistantPolicy.workspace_id == grant.workspace_id)
        )
        return "an admin blocked this assistant in the workspace" if blocked else None

    async def revoke(self, client_id: str, secret: str) -> None:
        """RFC 7009: revoke the token's whole family, whichever of its tokens is presented; silent otherwise."""
        for kind in (assistant_tokens.ACCESS, assistant_tokens.REFRESH):
            found = await self._token(client_id, secret, kind)
            if found is not None:
                async with self.db.transaction() as session:
                    await assistant_tokens.revoke_family(session, found[0].family_id)
                return


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()

"""Sign-in through a workspace's identity provider, and its admins' setting of it: the use case both the console
and the REST API call.

``begin`` is given a workspace's slug (typed by the person; workspaces are never listed) and returns where to
send the browser, with the ``state``, ``nonce`` and PKCE verifier the front end keeps until the browser comes
back; ``finish`` is given those and the code, and returns the member to start a session for. A workspace
without an enabled provider and one that does not exist are refused alike, so no one learns which slugs exist.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from sqlalchemy import select

from server.services.errors import Forbidden, InvalidInput, NotFound, ServiceError
from server.services.oidc.code_flow import Client, CodeFlow
from server.services.oidc.config import ConfigChange, SignInConfig, apply, client_secret, problems, view
from server.services.oidc.id_token import Expected, TokenRefused, UnknownKey, verified_identity
from server.services.oidc.people import person_for
from server.services.oidc.provider import Providers, ProviderUnavailable
from store.crypto import DecryptionError, SecretBox
from store.db import Database
from store.models import User, Workspace, WorkspaceSignIn
from store.principal import Principal

log = logging.getLogger(__name__)

CALLBACK_PATH = "/login/oidc/callback"


class NotSetUp(NotFound):
    """No enabled identity provider for that workspace, or no such workspace: the two are not told apart."""


@dataclass(frozen=True)
class Authorization:
    """Where to send the browser, and what its return must match (kept by the front end meanwhile)."""

    url: str
    workspace_id: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class SignedIn:
    user: User
    workspace_id: str


@dataclass(frozen=True)
class CompanySignIn:
    db: Database
    box: SecretBox
    providers: Providers
    flow: CodeFlow
    base_url: str

    @property
    def redirect_uri(self) -> str:
        """The redirect URI an admin registers at their provider."""
        return self.base_url + CALLBACK_PATH

    async def config(self, actor: Principal) -> SignInConfig:
        """The workspace's setting, for its admins."""
        _require_admin(actor)
        async with self.db.session() as session:
            return view(await session.get(WorkspaceSignIn, actor.workspace_id))

    async def configure(self, actor: Principal, change: ConfigChange) -> SignInConfig:
        """Save the setting; an enabled provider must answer its discovery document first. InvalidInput names the
        fields that cannot be saved."""
        _require_admin(actor)
        change = ConfigChange(
            change.issuer.strip(), change.client_id.strip(), change.client_secret, change.create_users, change.enabled
        )
        https_only = self.flow.https_only
        async with self.db.session() as session:
            found = problems(change, await session.get(WorkspaceSignIn, actor.workspace_id), https_only=https_only)
        if not found and change.enabled:
            try:
                await self.providers.discover(change.issuer)
            except ProviderUnavailable as exc:
                found["issuer"] = exc.message
        if found:
            raise InvalidInput(found)
        async with self.db.transaction() as session:
            stored = await session.get(WorkspaceSignIn, actor.workspace_id)
            # Checked again where it is written: another admin may have changed the issuer meanwhile.
            if found := problems(change, stored, https_only=https_only):
                raise InvalidInput(found)
            row = apply(session, self.box, stored, change, workspace_id=actor.workspace_id, admin_id=actor.user_id)
            await session.flush()
            saved = view(row)
        log.info(
            "workspace %s: identity provider %s %s by %s",
            actor.workspace_id,
            change.issuer,
            "enabled" if change.enabled else "saved, off",
            actor.user_id,
        )
        return saved

    async def begin(self, slug: str) -> Authorization:
        """Where to send a person who named the workspace ``slug``; NotSetUp or ProviderUnavailable otherwise."""
        async with self.db.session() as session:
            row = await session.scalar(
                select(WorkspaceSignIn)
                .join(Workspace, Workspace.id == WorkspaceSignIn.workspace_id)
                .where(Workspace.slug == slug.strip().lower(), WorkspaceSignIn.enabled.is_(True))
            )
        if row is None:
            raise NotSetUp(
                f"Sign-in with an identity provider is not set up for “{slug.strip()}”. Check the workspace's "
                "name with your admin, or sign in with your password."
            )
        provider = await self.providers.discover(row.issuer)
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        url = await self.flow.authorization_url(
            provider, Client(row.client_id, self.redirect_uri), state=state, nonce=nonce, code_verifier=verifier
        )
        return Authorization(url, row.workspace_id, state, nonce, verifier)

    async def finish(
        self, workspace_id: str, *, code: str, code_verifier: str, nonce: str, issuer: str | None
    ) -> SignedIn:
        """The member a returning browser signs in as. ``issuer`` is the response's ``iss`` (RFC 9207), if any."""
        try:
            return await self._finish(workspace_id, code=code, code_verifier=code_verifier, nonce=nonce, issuer=issuer)
        except ServiceError as exc:
            log.info("workspace %s: sign-in through its identity provider refused: %s", workspace_id, exc.message)
            raise

    async def _finish(
        self, workspace_id: str, *, code: str, code_verifier: str, nonce: str, issuer: str | None
    ) -> SignedIn:
        async with self.db.session() as session:
            row = await session.get(WorkspaceSignIn, workspace_id)
        if row is None or not row.enabled:
            raise NotSetUp("Sign-in with your identity provider was turned off for this workspace meanwhile.")
        provider = await self.providers.discover(row.issuer)
        if issuer != provider.issuer and (issuer is not None or provider.iss_parameter):
            raise TokenRefused("The answer came from another identity provider than the one this sign-in went to.")
        try:
            secret = client_secret(self.box, row)
        except DecryptionError:
            raise ProviderUnavailable(
                "The stored client secret cannot be opened with this server's keys: an admin must enter it again."
            ) from None
        client = Client(row.client_id, self.redirect_uri, secret)
        token = await self.flow.exchange(provider, client, code=code, code_verifier=code_verifier)
        access_token = token.get("access_token")
        expected = Expected(provider, row.client_id, nonce, access_token if isinstance(access_token, str) else None)
        try:
            identity = verified_identity(token["id_token"], await self.providers.keys(provider), expected)
        except UnknownKey:
            identity = verified_identity(token["id_token"], await self.providers.keys(provider, fresh=True), expected)
        async with self.db.transaction() as session:
            workspace = await session.get(Workspace, workspace_id)
            if workspace is None:
                raise NotSetUp("This workspace no longer exists.")
            user = await person_for(session, workspace, identity.email, identity.name, create=row.create_users)
        return SignedIn(user, workspace_id)


def _require_admin(actor: Principal) -> None:
    if not actor.is_admin:
        raise Forbidden("Only the workspace's admins and owners can see or change how its people sign in.")

"""Connecting an app with OAuth 2: authorization code with PKCE, through Authlib's client.

1. ``start`` records a flow: a random ``state`` (kept hashed, and sealed for the
   redirect), a PKCE verifier (sealed), and who asked. It returns a link on this
   server, so a CLI or API caller can hand it to a browser.
2. ``redirect`` runs in that browser: the signed-in person must be the one who
   asked, and the flow is bound to their session before going to the provider.
3. ``finish`` handles the callback: the state must name a live flow, unused,
   bound to this same session; it is spent before the code is exchanged, so a
   replayed callback finds nothing. The tokens are sealed onto the connection.

Re-authenticating runs the same flow for an existing connection and keeps its
settings, options and mappings.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from authlib.integrations.httpx_client import OAuthError
from sqlalchemy import select, update

from server.services.integrations.lifecycle import IntegrationError, Integrations, connection_json, invalid_setup
from server.services.integrations.setup import SetupProblems, split_setup
from store.connections import add_connection
from store.db import rows_matched
from store.events import record_event
from store.invalidation import Topic, announce
from store.models import Connection, ConnectionScope, ConnectionStatus, OAuthFlow, utcnow
from store.principal import Principal
from store.sealing import credentials_context
from store.sealing import oauth_flow_context as flow_context
from tools.errors import ToolError
from tools.tokens import credentials_from_token

CALLBACK_PATH = "/api/v1/integrations/oauth/callback"


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


@dataclass(frozen=True)
class _FlowValues:
    """What ``finish`` needs of a flow row, read inside the transaction that spends it."""

    app: str
    scope: ConnectionScope
    workspace_id: str
    user_id: str
    connection_id: str | None
    label: str
    setup: dict[str, Any]
    return_to: str | None


@dataclass
class OAuthConnect:
    integrations: Integrations
    base_url: str
    ttl: timedelta

    @property
    def redirect_uri(self) -> str:
        return self.base_url + CALLBACK_PATH

    async def start(
        self,
        actor: Principal,
        app: str,
        *,
        scope: str | None = None,
        label: str = "",
        setup: dict[str, Any] | None = None,
        connection_id: str | None = None,
        return_to: str | None = None,
    ) -> dict[str, Any]:
        """Record a flow and return the link a browser opens to authorize the app."""
        lifecycle = self.integrations
        manifest = lifecycle.manifest(app)
        if "oauth2" not in manifest.auth.methods or manifest.auth.oauth2 is None:
            raise IntegrationError("conflict", f"{manifest.name} does not connect through OAuth.")
        if connection_id is not None:
            async with lifecycle.db.session() as session:
                existing = await lifecycle.get(session, actor, connection_id, manage=True)
            if existing.app != app:
                raise IntegrationError("conflict", f"Connection {connection_id} is not a {manifest.name} connection.")
            secret_setup: dict[str, Any] = {}
            connection_scope, plain = existing.scope, dict(existing.setup or {})
        else:
            connection_scope = lifecycle.scope_of(manifest, scope)
            lifecycle.check_may_manage(actor, connection_scope)
            try:
                plain, secret_setup = split_setup(manifest, "oauth2", setup or {})
            except SetupProblems as exc:
                raise invalid_setup(exc) from None
        try:
            lifecycle.keeper.policy.client_of(app, manifest.name)
        except ToolError as exc:
            raise IntegrationError("not_configured", str(exc)) from None
        if return_to and (not return_to.startswith("/") or return_to.startswith("//")):
            raise IntegrationError(
                "invalid_request", "return_to must be a path on this server", fields={"return_to": "not a path"}
            )
        state = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        async with lifecycle.db.transaction() as session:
            flow = OAuthFlow(
                state_hash=_hash(state),
                app=app,
                scope=connection_scope,
                workspace_id=actor.workspace_id,
                user_id=actor.user_id,
                connection_id=connection_id,
                label=label or manifest.name,
                setup=plain,
                sealed_secrets="",
                return_to=return_to,
                expires_at=utcnow() + self.ttl,
            )
            session.add(flow)
            await session.flush()
            flow.sealed_secrets = lifecycle.box.seal_json(
                {"state": state, "code_verifier": verifier, "setup": secret_setup}, context=flow_context(flow.id)
            )
            return {
                "flow_id": flow.id,
                "authorize_url": f"{self.base_url}/api/v1/integrations/oauth/{flow.id}/start",
                "expires_at": flow.expires_at.isoformat().replace("+00:00", "Z"),
            }

    async def redirect(self, actor: Principal, flow_id: str) -> str:
        """Bind the flow to this browser session and return the provider's authorization URL."""
        lifecycle = self.integrations
        async with lifecycle.db.transaction() as session:
            flow = await session.get(OAuthFlow, flow_id)
            if flow is None or flow.user_id != actor.user_id or flow.workspace_id != actor.workspace_id:
                raise IntegrationError("not_found", "There is no such connect link for you.")
            if flow.used_at is not None or flow.expires_at < utcnow():
                raise IntegrationError("gone", "This connect link has expired or was used. Start connecting again.")
            if flow.session_key_id not in (None, actor.key_id):
                raise IntegrationError("forbidden", "This connect link was opened in another session.")
            flow.session_key_id = actor.key_id
            sealed = lifecycle.box.open_json(flow.sealed_secrets, context=flow_context(flow.id))
        manifest = lifecycle.registry.manifests[flow.app]
        oauth2 = manifest.auth.oauth2
        assert oauth2 is not None
        policy = lifecycle.keeper.policy
        async with policy.oauth_client(
            manifest, redirect_uri=self.redirect_uri, scope=oauth2.scope_separator.join(oauth2.scopes) or None
        ) as client:
            url, _ = client.create_authorization_url(
                policy.rewrite(flow.app, oauth2.authorize_url),
                state=sealed["state"],
                code_verifier=sealed["code_verifier"] if oauth2.pkce else None,
                **oauth2.authorize_params,
            )
        return str(url)

    async def return_to_of(self, state: str) -> str | None:
        """The console path a flow goes back to, so a refused or failed sign-in can be told on a page."""
        if not state:
            return None
        async with self.integrations.db.session() as session:
            return await session.scalar(select(OAuthFlow.return_to).where(OAuthFlow.state_hash == _hash(state)))

    async def finish(self, actor: Principal | None, state: str, code: str) -> tuple[dict[str, Any], str | None]:
        """Exchange the code for tokens and store them; returns the connection and where to send the browser."""
        lifecycle = self.integrations
        if not state or not code:
            raise IntegrationError("bad_request", "The provider's answer lacks a code or a state.")
        async with lifecycle.db.transaction() as session:
            flow_row = await session.scalar(select(OAuthFlow).where(OAuthFlow.state_hash == _hash(state)))
            if flow_row is None:
                raise IntegrationError("bad_request", "Unknown state: this answer does not belong to a connect flow.")
            if actor is None or actor.key_id != flow_row.session_key_id or actor.user_id != flow_row.user_id:
                raise IntegrationError("forbidden", "This connect flow was started in another session.")
            spent = await session.execute(
                update(OAuthFlow)
                .where(OAuthFlow.id == flow_row.id, OAuthFlow.used_at.is_(None), OAuthFlow.expires_at > utcnow())
                .values(used_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            if not rows_matched(spent):
                raise IntegrationError("bad_request", "This connect flow was already used or has expired.")
            sealed = lifecycle.box.open_json(flow_row.sealed_secrets, context=flow_context(flow_row.id))
            flow_values = _FlowValues(
                app=flow_row.app,
                scope=flow_row.scope,
                workspace_id=flow_row.workspace_id,
                user_id=flow_row.user_id,
                connection_id=flow_row.connection_id,
                label=flow_row.label,
                setup=dict(flow_row.setup or {}),
                return_to=flow_row.return_to,
            )
        manifest = lifecycle.registry.manifests[flow_values.app]
        oauth2 = manifest.auth.oauth2
        assert oauth2 is not None
        verifier = sealed.get("code_verifier")
        if oauth2.pkce and not verifier:
            raise IntegrationError("bad_request", "This connect flow has no PKCE verifier; start connecting again.")
        policy = lifecycle.keeper.policy
        try:
            async with policy.oauth_client(manifest, redirect_uri=self.redirect_uri) as client:
                token = await client.fetch_token(
                    policy.rewrite(manifest.id, oauth2.token_url),
                    code=code,
                    code_verifier=verifier if oauth2.pkce else None,
                    redirect_uri=self.redirect_uri,
                )
        except OAuthError as exc:
            raise IntegrationError("oauth_refused", f"{manifest.name} refused the connection: {exc.error}.") from None
        except Exception:
            raise IntegrationError(
                "provider_unreachable", f"{manifest.name} could not be reached to finish connecting."
            ) from None
        credentials = {**credentials_from_token(dict(token)), **sealed.get("setup", {})}
        async with lifecycle.db.transaction() as session:
            if flow_values.connection_id:
                row = await session.get(Connection, flow_values.connection_id)
                if row is None:
                    raise IntegrationError("not_found", "The connection to re-authenticate was deleted meanwhile.")
                row.credentials = lifecycle.box.seal_json(credentials, context=credentials_context(row.id))
                row.auth_method = "oauth2"
                row.status = ConnectionStatus.ACTIVE
                row.last_error = None
                event = "connection.reauthenticated"
            else:
                row = await add_connection(
                    session,
                    lifecycle.box,
                    app=manifest.id,
                    scope=ConnectionScope(flow_values.scope),
                    workspace_id=flow_values.workspace_id,
                    user_id=flow_values.user_id,
                    label=flow_values.label,
                    setup=flow_values.setup,
                    credentials=credentials,
                )
                row.auth_method = "oauth2"
                row.created_by = flow_values.user_id
                row.mappings = lifecycle.default_mappings(manifest)
                event = "connection.created"
            record_event(
                session,
                event,
                workspace_id=row.workspace_id,
                user_id=row.user_id,
                subject_id=row.id,
                data={"app": manifest.id, "by": flow_values.user_id},
            )
            await session.flush()
            await announce(session, Topic.CONNECTIONS)
            connection, connection_id = connection_json(row, manifest), row.id
        assert actor is not None  # refused above when it was not the flow's own
        # The account is not part of the connection's answer, so learning it needs no second read of the row.
        await lifecycle.learn_account(actor, connection_id)
        return connection, flow_values.return_to

"""OAuth tokens: refreshed before they expire, once at a time per connection, even across processes.

Ten calls that find one expired token must cause one refresh, not ten: a
provider that rotates refresh tokens would otherwise see nine stale ones and
may revoke the grant. Calls in this process queue on a lock; processes share a
lease on the connection row, taken with a conditional UPDATE and held without
an open transaction, so a slow token endpoint blocks no other writer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.connections import ConnectionView
from store.crypto import SecretBox
from store.events import record_event
from store.invalidation import Topic, announce
from store.models import Connection, ConnectionStatus
from store.sealing import credentials_context
from tools.errors import ToolError
from tools.manifest import Manifest

log = logging.getLogger(__name__)

EARLY_SECONDS = 60
LEASE_SECONDS = 30
# RFC 6749's codes; Slack's word for a refresh token it no longer takes; HubSpot's for a deleted account.
REVOKED_GRANTS = {"invalid_grant", "unauthorized_client", "invalid_client", "invalid_refresh_token", "access_denied"}
# Refusals some providers send without an "error" field (HubSpot's older token answers).
REVOKED_STATUSES = {"BAD_REFRESH_TOKEN", "BAD_HUB"}


class NeedsReauth(ToolError):
    """The provider no longer accepts this connection's credentials; a person must reconnect it."""

    code = "needs_reauth"


@dataclass(frozen=True)
class ProviderPolicy:
    """How this deployment talks to providers: where, how patiently, and as which OAuth client."""

    origins: dict[str, str] = field(default_factory=dict)
    oauth_clients: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    timeout: float = 20.0
    retries: int = 3
    max_wait: float = 30.0

    def rewrite(self, app: str, url: str) -> str:
        """Send an app's traffic to its configured origin (a proxy, a sandbox, a test fake), keeping the path."""
        origin = self.origins.get(app)
        if not origin or "://" not in url:
            return url
        rest = url.split("://", 1)[1]
        path = rest[rest.find("/") :] if "/" in rest else ""
        return origin + path

    def client_of(self, app: str, name: str) -> tuple[str, str]:
        if app not in self.oauth_clients:
            raise ToolError(
                f"{name} has no OAuth client configured on this server (COMPANION_OAUTH_CLIENTS).",
                code="not_configured",
            )
        return self.oauth_clients[app]

    def oauth_client(self, manifest: Manifest, **kwargs: Any) -> AsyncOAuth2Client:
        assert manifest.auth.oauth2 is not None
        client_id, client_secret = self.client_of(manifest.id, manifest.name)
        return AsyncOAuth2Client(
            client_id=client_id,
            client_secret=client_secret or None,
            token_endpoint_auth_method=manifest.auth.oauth2.token_auth,
            code_challenge_method="S256" if manifest.auth.oauth2.pkce else None,
            timeout=self.timeout,
            **kwargs,
        )


def expires_at_of(token: dict[str, Any]) -> float | None:
    if token.get("expires_at"):
        return float(token["expires_at"])
    if token.get("expires_in"):
        return time.time() + float(token["expires_in"])
    return None


def credentials_from_token(token: dict[str, Any], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """What is kept of a token response. A provider that rotates no refresh token keeps the old one."""
    previous = previous or {}
    return {
        "method": "oauth2",
        "access_token": token["access_token"],
        "refresh_token": token.get("refresh_token") or previous.get("refresh_token"),
        "token_type": token.get("token_type", "Bearer"),
        "scope": token.get("scope", previous.get("scope", "")),
        "expires_at": expires_at_of(token),
    }


def is_fresh(credentials: dict[str, Any]) -> bool:
    expires = credentials.get("expires_at")
    return expires is None or float(expires) - EARLY_SECONDS > time.time()


class TokenKeeper:
    """Refreshes OAuth tokens for every connection in this process, and marks grants a provider revoked."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        policy: ProviderPolicy,
        *,
        on_refresh_failure: Callable[[str], None] = lambda app: None,
    ) -> None:
        self.sessions = sessions
        self.box = box
        self.policy = policy
        # Told the app id of every refresh that failed (a revoked grant too); the server counts them in its metrics.
        self.on_refresh_failure = on_refresh_failure
        self.owner = f"{secrets.token_hex(6)}"
        self._locks: dict[str, asyncio.Lock] = {}
        self.refreshes = 0

    async def refreshed(
        self, manifest: Manifest, connection: ConnectionView, stale: dict[str, Any], *, force: bool = False
    ) -> dict[str, Any]:
        """Credentials newer than ``stale``: someone else's fresh refresh, or our own.

        ``force`` is for a 401: the token looked fresh but the provider refused it.
        """
        lock = self._locks.setdefault(connection.id, asyncio.Lock())
        async with lock:
            deadline = time.monotonic() + LEASE_SECONDS + 5
            while True:
                current, status = await self._load(connection.id)
                if status is ConnectionStatus.NEEDS_REAUTH:
                    raise _reconnect(manifest)
                if current.get("access_token") != stale.get("access_token") and is_fresh(current):
                    return current
                if not force and is_fresh(current):
                    return current
                if await self._take_lease(connection.id):
                    # Another process may have stored a new token between our read and our lease: read again,
                    # or we would spend a refresh token that was already rotated away.
                    current, status = await self._load(connection.id)
                    if current.get("access_token") != stale.get("access_token") and is_fresh(current):
                        await self._release(connection.id)
                        return current
                    break
                if time.monotonic() > deadline:
                    raise ToolError(f"{manifest.name} is still refreshing its token; try again.", code="busy")
                await asyncio.sleep(0.05)
            try:
                fresh = await self._exchange(manifest, current)
                await self._store(connection.id, fresh)
            except NeedsReauth:
                self.on_refresh_failure(manifest.id)
                await self.mark_needs_reauth(connection, "The provider revoked the refresh token.")
                raise
            except BaseException as exc:
                # A cancelled call is no failure of the refresh.
                if isinstance(exc, Exception):
                    self.on_refresh_failure(manifest.id)
                await self._release(connection.id)
                raise
            return fresh

    async def _exchange(self, manifest: Manifest, current: dict[str, Any]) -> dict[str, Any]:
        assert manifest.auth.oauth2 is not None
        refresh_token = current.get("refresh_token")
        if not refresh_token:
            raise _reconnect(manifest)
        self.refreshes += 1
        token_url = self.policy.rewrite(manifest.id, manifest.auth.oauth2.token_url)
        try:
            async with self.policy.oauth_client(manifest) as client:
                token = await client.refresh_token(token_url, refresh_token=refresh_token)
            if "access_token" not in token:
                if str(token.get("status", "")).upper() in REVOKED_STATUSES:
                    raise _reconnect(manifest)
                raise ToolError(f"{manifest.name} answered the token refresh without a token.", code="provider_error")
        except ToolError:
            raise
        except OAuthError as exc:
            if exc.error in REVOKED_GRANTS:
                raise _reconnect(manifest) from None
            raise ToolError(
                f"{manifest.name} refused to refresh the token: {exc.error}.", code="provider_error"
            ) from None
        except Exception as exc:
            log.warning("token refresh for %s failed: %s", manifest.id, type(exc).__name__)
            raise ToolError(
                f"{manifest.name} could not be reached to refresh the token.", code="provider_unavailable"
            ) from None
        return credentials_from_token(dict(token), current)

    async def _load(self, connection_id: str) -> tuple[dict[str, Any], ConnectionStatus]:
        async with self.sessions() as session:
            row = (
                await session.execute(
                    select(Connection.credentials, Connection.status).where(Connection.id == connection_id)
                )
            ).one_or_none()
        if row is None or row.credentials is None:
            raise ToolError("This connection was removed.", code="not_connected")
        return self.box.open_json(row.credentials, context=credentials_context(connection_id)), row.status

    async def _take_lease(self, connection_id: str) -> bool:
        now = datetime.now(UTC)
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(Connection)
                .where(
                    Connection.id == connection_id,
                    or_(Connection.refresh_lease_until.is_(None), Connection.refresh_lease_until < now),
                )
                .values(refresh_lease_until=now + timedelta(seconds=LEASE_SECONDS), refresh_lease_owner=self.owner)
                .execution_options(synchronize_session=False)
            )
        return bool(getattr(result, "rowcount", 0))

    async def _release(self, connection_id: str) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(Connection)
                .where(Connection.id == connection_id, Connection.refresh_lease_owner == self.owner)
                .values(refresh_lease_until=None, refresh_lease_owner=None)
                .execution_options(synchronize_session=False)
            )

    async def _store(self, connection_id: str, credentials: dict[str, Any]) -> None:
        sealed = self.box.seal_json(credentials, context=credentials_context(connection_id))
        async with self.sessions.begin() as session:
            stored = await session.execute(
                update(Connection)
                .where(Connection.id == connection_id, Connection.refresh_lease_owner == self.owner)
                .values(credentials=sealed, refresh_lease_until=None, refresh_lease_owner=None, last_error=None)
                .execution_options(synchronize_session=False)
            )
        if not getattr(stored, "rowcount", 0):
            # The lease ran out while the provider answered and someone else may have refreshed since.
            raise ToolError("The token refresh took too long; try again.", code="busy")

    async def mark_needs_reauth(self, connection: ConnectionView, reason: str) -> None:
        """Flag the connection, once, and record the event that tells people to reconnect it."""
        async with self.sessions.begin() as session:
            result = await session.execute(
                update(Connection)
                .where(Connection.id == connection.id, Connection.status == ConnectionStatus.ACTIVE)
                .values(
                    status=ConnectionStatus.NEEDS_REAUTH,
                    last_error=reason,
                    refresh_lease_until=None,
                    refresh_lease_owner=None,
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0):
                record_event(
                    session,
                    "connection.needs_reauth",
                    workspace_id=connection.workspace_id,
                    user_id=connection.user_id,
                    subject_id=connection.id,
                    data={"app": connection.app, "label": connection.label, "reason": reason},
                )
                await announce(session, Topic.CONNECTIONS)
        log.info("connection %s (%s) needs to be reconnected: %s", connection.id, connection.app, reason)


def _reconnect(manifest: Manifest) -> NeedsReauth:
    return NeedsReauth(
        f"The {manifest.name} connection has expired or was revoked. "
        "Reconnect it (Marketplace > Installed > Re-authenticate) and try again."
    )

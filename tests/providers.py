"""A connected app for adapter tests: the real server core, a provider fake on 127.0.0.1, one connection.

Calls go through ``ToolGateway.call``, the same path an assistant's call takes;
a workspace rule allows the app's tools so each call runs without waiting for
a person (the decision step itself is tested in ``test_approvals``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from approvals.rules import Effect, Rule
from server.app import Companion
from server.services import demo
from server.services.call_result import CallResult
from server.settings import OAuthClient, Settings
from store.connections import ConnectionView, add_connection, open_credentials
from store.directory import user_by_email, workspace_by_slug
from store.keys import create_key
from store.models import Base, Connection, ConnectionScope
from store.principal import Principal
from tests.fakes.base import CLIENT_ID, CLIENT_SECRET, ProviderFake, serve
from tools.context import ToolContext
from tools.registry import Registry
from tools.sync import SyncRecord
from tools.tokens import credentials_from_token

TEST_SECRET = "test-secret-key-not-for-production"


@dataclass
class Harness:
    companion: Companion
    fake: Any
    app: str
    principal: Principal
    connection_id: str
    agent_key: str
    keys: demo.DemoKeys

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallResult:
        return await self.companion.gateway.call(self.principal, tool, arguments)

    async def ok(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """Call a tool that must succeed; return its structured result."""
        result = await self.call(tool, arguments)
        assert result.ok, f"{tool} failed: {result.error_code}: {result.message}"
        assert result.data is not None
        return result.data

    async def row(self) -> Connection:
        async with self.companion.db.session() as session:
            row = await session.scalar(select(Connection).where(Connection.id == self.connection_id))
        assert row is not None
        return row

    async def credentials(self) -> dict[str, Any]:
        return open_credentials(self.companion.box, ConnectionView.of(await self.row()))

    async def context(self) -> ToolContext:
        """What an adapter function gets, for calling an app's test or sync hooks directly."""
        return self.companion.integrations.context(self.principal, await self.row())

    async def synced(self) -> list[SyncRecord]:
        """Every record the app's sync adapter yields, from the start."""
        hook = self.companion.registry.hooks[self.app].sync
        assert hook is not None, f"{self.app} does not sync"
        return [record async for record in hook(await self.context(), None)]

    async def test_connection(self) -> str:
        hook = self.companion.registry.hooks[self.app].test
        assert hook is not None, f"{self.app} has no connection test"
        return await hook(await self.context())


def provider_settings(settings: Settings, app: str, origin: str) -> Settings:
    """Settings that send ``app``'s traffic to a fake and register the fake's OAuth client."""
    return settings.model_copy(
        update={
            "provider_origins": {**settings.provider_origins, app: origin},
            "oauth_clients": {
                **settings.oauth_clients,
                app: OAuthClient(client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            },
            "provider_max_wait_seconds": 5,
        }
    )


@asynccontextmanager
async def connected(
    settings: Settings, registry: Registry, fake: ProviderFake, app: str, **options: Any
) -> AsyncIterator[Harness]:
    """Serve ``fake`` on 127.0.0.1, point ``app`` at it and connect it (see ``connected_to``)."""
    async with serve(fake) as origin:  # noqa: SIM117 - the connection needs the fake's origin
        async with connected_to(settings, registry, app, fake=fake, origin=origin, **options) as harness:
            yield harness


@asynccontextmanager
async def connected_to(
    settings: Settings,
    registry: Registry,
    app: str,
    *,
    fake: Any,
    origin: str | None = None,
    method: str = "oauth2",
    scope: ConnectionScope = ConnectionScope.PERSONAL,
    setup: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    credentials: dict[str, Any] | None = None,
    user: str = "alice@acme.test",
    allow: bool = True,
) -> AsyncIterator[Harness]:
    """The server core on an emptied database with the demo data, and ``app`` connected for ``user``.

    Credentials default to tokens (or a key) the fake issues. With ``allow`` (the default) a rule
    lets the app's tools run without asking: the workspace's for a workspace connection, the user's own
    for a personal one (only its owner's rules can auto-approve a personal connection's calls).
    """
    if origin is not None:
        settings = provider_settings(settings, app, origin)
    companion = Companion.build(settings, registry=registry)
    try:
        async with companion.db.transaction() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
        async with companion.db.transaction() as session:
            keys = await demo.seed(session, companion.registry, companion.box, TEST_SECRET.encode())
            workspace = await workspace_by_slug(session, "acme")
            person = await user_by_email(session, user)
            admin = await user_by_email(session, "admin@acme.test")
            if credentials is None:
                credentials = credentials_from_token(fake.issue()) if method == "oauth2" else {"method": method}
                if method == "api_key":
                    credentials["api_key"] = fake.issue_key()
            row = await add_connection(
                session,
                companion.box,
                app=app,
                scope=scope,
                workspace_id=workspace.id,
                user_id=person.id,
                label=f"{app} test",
                setup=setup or {},
                credentials=credentials,
            )
            row.auth_method = method
            row.options = options or {}
            key = await create_key(session, workspace_id=workspace.id, user_id=person.id, name="assistant")
            admin_key = await create_key(session, workspace_id=workspace.id, user_id=admin.id, name="rules")
            connection_id = row.id
        principal = await companion.principal_for(key.token)
        admin_principal = await companion.principal_for(admin_key.token)
        assert principal is not None and admin_principal is not None
        if allow:
            personal = scope is ConnectionScope.PERSONAL
            async with companion.db.transaction() as session:
                await companion.rulebook.create(
                    session,
                    principal if personal else admin_principal,
                    Rule(effect=Effect.ALLOW, scope="user" if personal else "workspace", app=app, tool="*"),
                )
        yield Harness(companion, fake, app, principal, connection_id, key.token, keys)
    finally:
        await companion.aclose()

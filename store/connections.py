"""Connections: which apps a principal may use, and their sealed credentials."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.crypto import SecretBox
from store.invalidation import Topic, announce
from store.models import Connection, ConnectionScope, ConnectionStatus
from store.principal import Principal
from store.sealing import credentials_context


@dataclass(frozen=True)
class ConnectionView:
    """A connection as the tool layer sees it: everything but the credentials."""

    id: str
    app: str
    scope: ConnectionScope
    workspace_id: str | None
    user_id: str | None
    label: str
    status: ConnectionStatus
    setup: dict[str, Any] = field(default_factory=dict)
    sealed_credentials: str | None = field(default=None, repr=False)
    auth_method: str = "none"
    options: dict[str, Any] = field(default_factory=dict)
    mappings: dict[str, Any] = field(default_factory=dict)
    account: str | None = None

    @classmethod
    def of(cls, row: Connection) -> ConnectionView:
        return cls(
            id=row.id,
            app=row.app,
            scope=row.scope,
            workspace_id=row.workspace_id,
            user_id=row.user_id,
            label=row.label,
            status=row.status,
            setup=dict(row.setup or {}),
            sealed_credentials=row.credentials,
            auth_method=row.auth_method,
            options=dict(row.options or {}),
            mappings=dict(row.mappings or {}),
            account=row.account,
        )


async def usable_connections(session: AsyncSession, principal: Principal) -> list[ConnectionView]:
    """The workspace's connections plus the caller's personal ones, oldest first.

    Personal connections follow their user into every workspace. Disconnected
    ones give no tools.
    """
    rows = await session.scalars(
        select(Connection)
        .where(
            Connection.status != ConnectionStatus.DISCONNECTED,
            or_(
                (Connection.scope == ConnectionScope.WORKSPACE) & (Connection.workspace_id == principal.workspace_id),
                (Connection.scope == ConnectionScope.PERSONAL) & (Connection.user_id == principal.user_id),
            ),
        )
        .order_by(Connection.scope.desc(), Connection.created_at, Connection.id)
    )
    return [ConnectionView.of(row) for row in rows]


async def add_connection(
    session: AsyncSession,
    box: SecretBox,
    *,
    app: str,
    scope: ConnectionScope,
    workspace_id: str | None,
    user_id: str | None,
    label: str = "",
    setup: dict[str, Any] | None = None,
    credentials: dict[str, Any] | None = None,
) -> Connection:
    if scope is ConnectionScope.PERSONAL and user_id is None:
        raise ValueError("a personal connection needs its user")
    if scope is ConnectionScope.WORKSPACE and workspace_id is None:
        raise ValueError("a workspace connection needs its workspace")
    row = Connection(
        app=app,
        scope=scope,
        workspace_id=workspace_id if scope is ConnectionScope.WORKSPACE else None,
        user_id=user_id,
        label=label,
        setup=setup or {},
    )
    session.add(row)
    await session.flush()
    if credentials is not None:
        row.credentials = box.seal_json(credentials, context=credentials_context(row.id))
        await session.flush()
    await announce(session, Topic.CONNECTIONS)
    return row


def open_credentials(box: SecretBox, connection: ConnectionView) -> dict[str, Any]:
    if connection.sealed_credentials is None:
        return {}
    value = box.open_json(connection.sealed_credentials, context=credentials_context(connection.id))
    if not isinstance(value, dict):
        raise ValueError("sealed credentials are not a mapping")
    return value

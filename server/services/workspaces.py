"""Operations that span the store and the registry, shared by the CLI, the demo and (later) the API."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store import directory
from store.connections import add_connection
from store.crypto import SecretBox
from store.models import Connection, ConnectionScope, Plan, Workspace
from tools.registry import Registry


async def create_workspace(
    session: AsyncSession, registry: Registry, box: SecretBox, *, slug: str, name: str, plan: Plan = Plan.PLUS
) -> Workspace:
    """Create a workspace with the apps every workspace has (Harmony's own data)."""
    workspace = await directory.create_workspace(session, slug=slug, name=name, plan=plan)
    await install_builtin_apps(session, registry, box, workspace)
    return workspace


async def install_builtin_apps(session: AsyncSession, registry: Registry, box: SecretBox, workspace: Workspace) -> None:
    installed = set(
        await session.scalars(
            select(Connection.app).where(
                Connection.workspace_id == workspace.id, Connection.scope == ConnectionScope.WORKSPACE
            )
        )
    )
    for manifest in registry.manifests.values():
        if manifest.auto_install and manifest.id not in installed:
            await add_connection(
                session,
                box,
                app=manifest.id,
                scope=ConnectionScope.WORKSPACE,
                workspace_id=workspace.id,
                user_id=None,
                label=manifest.name,
            )

"""Auto sync: connections whose owner switched it on are synced in the background, every so often.

A run acts as the person who connected the app, with their current rights:
someone who lost the integration permission no longer syncs a workspace's CRM.

Every replica (and every worker process) may run these passes. A pass claims
each due connection in the database before syncing it, so one sync per period
runs wherever the passes overlap.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from server.services.integrations.lifecycle import IntegrationError
from server.services.integrations.sync import SyncEngine
from store.db import rows_matched
from store.directory import first_workspace_of, member_principal
from store.models import Connection, ConnectionScope, ConnectionStatus, utcnow

log = logging.getLogger(__name__)


@dataclass
class AutoSync:
    engine: SyncEngine
    every: timedelta

    async def run_due(self, now: datetime | None = None) -> list[str]:
        """Sync every connection with auto sync on whose last sync is older than ``every``; return their ids."""
        now = now or utcnow()
        lifecycle = self.engine.integrations
        syncing = [app for app, m in lifecycle.registry.manifests.items() if m.sync is not None]
        async with lifecycle.db.session() as session:
            rows = (
                await session.scalars(
                    select(Connection).where(
                        Connection.status == ConnectionStatus.ACTIVE,
                        Connection.app.in_(syncing),
                        or_(Connection.last_sync_at.is_(None), Connection.last_sync_at < now - self.every),
                    )
                )
            ).all()
            due = [row for row in rows if (row.mappings or {}).get("auto_sync")]
            owners = []
            for row in due:
                owner = row.created_by or row.user_id
                workspace = row.workspace_id if row.scope is ConnectionScope.WORKSPACE else None
                workspace = workspace or (await first_workspace_of(session, owner) if owner else None)
                actor = (
                    await member_principal(session, workspace, owner, acting_as="auto-sync")
                    if owner and workspace
                    else None
                )
                owners.append((row.id, row.last_sync_at, actor))
        done = []
        for connection_id, last_sync_at, actor in owners:
            if actor is None:
                log.warning("auto sync of %s skipped: its owner is no longer a member", connection_id)
                continue
            if not await self._claim(connection_id, last_sync_at, now):
                continue  # another pass, here or on another replica, took it since this one looked
            try:
                run = await self.engine.run(actor, connection_id)
            except IntegrationError as exc:
                await self._give_back(connection_id, last_sync_at, now)
                log.warning("auto sync of %s skipped: %s", connection_id, exc)
                continue
            if run["status"] == "failed":
                await self._give_back(connection_id, last_sync_at, now)
            done.append(connection_id)
        return done

    async def _claim(self, connection_id: str, last_sync_at: datetime | None, now: datetime) -> bool:
        """Take this period's sync of a connection: move its last sync from what this pass read to ``now``.

        The update is conditional on the value read, so of the passes that saw the connection due, one wins;
        a pass that looks later finds it not due. A successful run then sets the time it ended.
        """
        seen = Connection.last_sync_at.is_(None) if last_sync_at is None else Connection.last_sync_at == last_sync_at
        async with self.engine.integrations.db.transaction() as session:
            claimed = await session.execute(
                update(Connection).where(Connection.id == connection_id, seen).values(last_sync_at=now)
            )
        return bool(rows_matched(claimed))

    async def _give_back(self, connection_id: str, last_sync_at: datetime | None, claimed: datetime) -> None:
        """After a run that failed or did not start, restore the last successful sync: the connection is due again
        at the next pass, and its page does not show a sync that did not happen (unless one ran meanwhile)."""
        async with self.engine.integrations.db.transaction() as session:
            await session.execute(
                update(Connection)
                .where(Connection.id == connection_id, Connection.last_sync_at == claimed)
                .values(last_sync_at=last_sync_at)
            )

    async def forever(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception:
                log.exception("auto sync pass failed")
            await asyncio.sleep(min(self.every.total_seconds(), 300))

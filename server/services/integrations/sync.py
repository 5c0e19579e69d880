"""Sync: read every record an app yields, map its fields, and write Harmony's rows; log each run.

An adapter yields provider records in the provider's field names; the
connection's mappings say which Harmony field each one fills. A link row per
record makes the next run update rather than duplicate, and survives a person
renaming a contact on either side. Each run records its start, end, counts
and the errors of the records that failed, so "Sync logs" can say what happened.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.services.integrations.lifecycle import IntegrationError, Integrations, run_json
from store.models import (
    Connection,
    ConnectionStatus,
    Contact,
    Meeting,
    MeetingStatus,
    Membership,
    SyncedRecord,
    SyncRun,
    User,
    utcnow,
)
from store.principal import Principal
from tools.errors import ToolError
from tools.manifest import Manifest
from tools.sync import SyncRecord

log = logging.getLogger(__name__)

BATCH = 100
STALE = timedelta(hours=6)
KEPT_ERRORS = 50


@dataclass
class Tally:
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("fetched", "created", "updated", "unchanged", "deleted", "skipped", "pushed", "failed"), 0
        )
    )
    errors: list[dict[str, str]] = field(default_factory=list)

    def fail(self, external_id: str, message: str) -> None:
        self.counts["failed"] += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append({"record": external_id, "error": message})


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else None


@dataclass
class SyncEngine:
    integrations: Integrations
    _running: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self, actor: Principal, connection_id: str, *, full: bool = True) -> dict[str, Any]:
        """Record a run and carry it out in the background; its log shows when it ends."""
        run_id = await self._open(actor, connection_id, full=full)
        task = asyncio.create_task(self._carry_out(actor, connection_id, run_id))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await self._run_json(run_id)

    async def run(self, actor: Principal, connection_id: str, *, full: bool = True) -> dict[str, Any]:
        """Sync now and return the finished run (the CLI waits for it)."""
        run_id = await self._open(actor, connection_id, full=full)
        await self._carry_out(actor, connection_id, run_id)
        return await self._run_json(run_id)

    async def wait(self) -> None:
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _open(self, actor: Principal, connection_id: str, *, full: bool) -> str:
        lifecycle = self.integrations
        async with lifecycle.db.transaction() as session:
            # Writing the row first takes its lock (on SQLite, the database's), so two syncs started at once, on
            # one replica or two, check for a running one in turn and only the first starts.
            await session.execute(
                update(Connection).where(Connection.id == connection_id).values(last_sync_at=Connection.last_sync_at)
            )
            row = await lifecycle.get(session, actor, connection_id, manage=True)
            manifest = lifecycle.registry.manifests[row.app]
            if manifest.sync is None:
                raise IntegrationError("conflict", f"{manifest.name} does not sync.")
            if row.status is ConnectionStatus.DISCONNECTED:
                raise IntegrationError("conflict", f"{manifest.name} is disconnected; connect it again to sync.")
            # A run a stopped process left "running" would block the connection forever: after STALE it is over.
            await session.execute(
                update(SyncRun)
                .where(
                    SyncRun.connection_id == row.id,
                    SyncRun.status == "running",
                    SyncRun.started_at < utcnow() - STALE,
                )
                .values(status="failed", finished_at=utcnow(), errors=[{"record": "", "error": "interrupted"}])
            )
            running = await self._run_under_way(session, row.id)
            if running:
                raise IntegrationError("conflict", f"A sync of this connection is already running ({running}).")
            run = SyncRun(connection_id=row.id, full=full, triggered_by=actor.user_id)
            session.add(run)
            await session.flush()
            return run.id

    @staticmethod
    async def _run_under_way(session: AsyncSession, connection_id: str) -> str | None:
        """The id of the connection's run under way, if any."""
        return await session.scalar(
            select(SyncRun.id).where(SyncRun.connection_id == connection_id, SyncRun.status == "running")
        )

    async def _run_json(self, run_id: str) -> dict[str, Any]:
        async with self.integrations.db.session() as session:
            run = await session.get(SyncRun, run_id)
            assert run is not None
            return run_json(run)

    async def _carry_out(self, actor: Principal, connection_id: str, run_id: str) -> None:
        lifecycle = self.integrations
        tally = Tally()
        status = "succeeded"
        try:
            async with lifecycle.db.session() as session:
                row = await session.get(Connection, connection_id)
                assert row is not None
            manifest = lifecycle.registry.manifests[row.app]
            await self._sync(actor, row, manifest, tally)
        except ToolError as exc:
            status = "failed"
            tally.errors.append({"record": "", "error": str(exc)})
        except Exception:
            log.exception("sync run %s failed", run_id)
            status = "failed"
            tally.errors.append({"record": "", "error": "The sync stopped on an error inside Companion."})
        except asyncio.CancelledError:
            status = "failed"
            tally.errors.append({"record": "", "error": "interrupted: the server stopped during the sync"})
            await asyncio.shield(self._close(connection_id, run_id, status, tally))
            raise
        if status == "succeeded" and tally.counts["failed"]:
            status = "partial"
        await self._close(connection_id, run_id, status, tally)

    async def _close(self, connection_id: str, run_id: str, status: str, tally: Tally) -> None:
        """Write the run's end, counts and errors (and the connection's last sync, unless it failed)."""
        lifecycle = self.integrations
        async with lifecycle.db.transaction() as session:
            run = await session.get(SyncRun, run_id)
            assert run is not None
            run.status, run.finished_at, run.counts, run.errors = status, utcnow(), tally.counts, tally.errors
            connection = await session.get(Connection, connection_id)
            if connection is not None and status != "failed":
                connection.last_sync_at = run.finished_at

    async def _sync(self, actor: Principal, row: Connection, manifest: Manifest, tally: Tally) -> None:
        lifecycle = self.integrations
        hooks = lifecycle.registry.hooks[row.app]
        assert manifest.sync is not None and hooks.sync is not None
        mappings = {**lifecycle.default_mappings(manifest), **(row.mappings or {})}
        fields: dict[str, str] = mappings.get("fields", {})
        direction = mappings.get("direction", "to_harmony")
        context = lifecycle.context(actor, row)
        matched_users: dict[str, str] = {}
        if direction != "to_provider":
            batch: list[SyncRecord] = []
            async for record in hooks.sync(context, None):
                tally.counts["fetched"] += 1
                batch.append(record)
                if len(batch) >= BATCH:
                    await self._write(actor, row, manifest.sync.object, fields, batch, tally, matched_users)
                    batch = []
            await self._write(actor, row, manifest.sync.object, fields, batch, tally, matched_users)
        if manifest.sync.object == "users":
            async with lifecycle.db.transaction() as session:
                connection = await session.get(Connection, row.id)
                assert connection is not None
                connection.options = {**(connection.options or {}), "synced_users": matched_users}
        if (
            direction in ("bidirectional", "to_provider")
            and hooks.push is not None
            and manifest.sync.object == "contacts"
        ):
            await self._push(actor, row, fields, tally, context)

    async def _write(
        self,
        actor: Principal,
        row: Connection,
        kind: str,
        fields: dict[str, str],
        batch: list[SyncRecord],
        tally: Tally,
        matched_users: dict[str, str],
    ) -> None:
        if not batch:
            return
        async with self.integrations.db.transaction() as session:
            for record in batch:
                try:
                    async with session.begin_nested():
                        if kind == "users":
                            await self._user(session, actor, record, tally, matched_users)
                        else:
                            await self._record(session, actor, row, kind, fields, record, tally)
                except Exception as exc:
                    tally.fail(record.external_id, str(exc) if isinstance(exc, ValueError) else type(exc).__name__)

    async def _record(
        self,
        session: AsyncSession,
        actor: Principal,
        row: Connection,
        kind: str,
        fields: dict[str, str],
        record: SyncRecord,
        tally: Tally,
    ) -> None:
        values = {h: record.fields.get(p) for h, p in fields.items() if record.fields.get(p) not in (None, "", [])}
        link = await session.get(SyncedRecord, (row.id, kind, record.external_id))
        if link is not None and not await self._in_workspace(session, kind, link.local_id, actor.workspace_id):
            # A personal connection follows its user into every workspace, but a record it already brought
            # into one workspace is not written into another from there.
            tally.counts["skipped"] += 1
            return
        if record.deleted:
            if link is not None:
                await session.delete(link)
                tally.counts["deleted"] += 1
            return
        if kind == "contacts":
            local_id = await self._contact(session, actor, link, values, tally)
        else:
            local_id = await self._meeting(session, actor, row, link, values, tally)
        if local_id is None:
            return
        if link is None:
            session.add(
                SyncedRecord(connection_id=row.id, object=kind, external_id=record.external_id, local_id=local_id)
            )
        else:
            link.local_id, link.synced_at = local_id, utcnow()

    @staticmethod
    async def _in_workspace(session: AsyncSession, kind: str, local_id: str, workspace_id: str) -> bool:
        model = Contact if kind == "contacts" else Meeting
        return await session.scalar(select(model.workspace_id).where(model.id == local_id)) in (workspace_id, None)

    async def _contact(
        self, session: AsyncSession, actor: Principal, link: SyncedRecord | None, values: dict[str, Any], tally: Tally
    ) -> str | None:
        email = str(values.get("email") or "").strip().lower()
        contact = await session.get(Contact, link.local_id) if link else None
        if contact is None and email:
            contact = await session.scalar(
                select(Contact).where(Contact.workspace_id == actor.workspace_id, Contact.email == email)
            )
        if contact is None:
            if not email:
                tally.counts["skipped"] += 1
                return None
            contact = Contact(workspace_id=actor.workspace_id, name=str(values.get("name") or email), email=email)
            for name in ("company", "title", "phone"):
                setattr(contact, name, str(values.get(name) or ""))
            session.add(contact)
            await session.flush()
            tally.counts["created"] += 1
            return contact.id
        changed = False
        for name in ("name", "email", "company", "title", "phone"):
            value = values.get(name)
            value = value.strip().lower() if name == "email" and isinstance(value, str) else value
            if value not in (None, "") and getattr(contact, name) != str(value):
                setattr(contact, name, str(value))
                changed = True
        tally.counts["updated" if changed else "unchanged"] += 1
        return contact.id

    async def _meeting(
        self,
        session: AsyncSession,
        actor: Principal,
        row: Connection,
        link: SyncedRecord | None,
        values: dict[str, Any],
        tally: Tally,
    ) -> str | None:
        start = _parse_time(values.get("date"))
        if start is None:
            tally.counts["skipped"] += 1
            return None
        end = _parse_time(values.get("end"))
        seconds = int((end - start).total_seconds()) if end and end > start else 0
        meeting = await session.get(Meeting, link.local_id) if link else None
        title = str(values.get("title") or "Untitled event")[:500]
        if meeting is None:
            meeting = Meeting(
                workspace_id=actor.workspace_id,
                owner_id=row.user_id or actor.user_id,
                title=title,
                date=start,
                duration=seconds,
                status=MeetingStatus.SCHEDULED,
            )
            session.add(meeting)
            await session.flush()
            tally.counts["created"] += 1
        elif (meeting.title, meeting.date, meeting.duration) != (title, start, seconds):
            meeting.title, meeting.date, meeting.duration = title, start, seconds
            tally.counts["updated"] += 1
        else:
            tally.counts["unchanged"] += 1
        attendees = [str(a).lower() for a in values.get("attendees") or [] if isinstance(a, str)]
        if attendees:
            contacts = await session.scalars(
                select(Contact).where(Contact.workspace_id == actor.workspace_id, Contact.email.in_(attendees))
            )
            await session.refresh(meeting, ["contacts"])
            known = {c.id for c in meeting.contacts}
            meeting.contacts.extend(c for c in contacts if c.id not in known)
        return meeting.id

    async def _user(
        self, session: AsyncSession, actor: Principal, record: SyncRecord, tally: Tally, matched: dict[str, str]
    ) -> None:
        email = str(record.fields.get("email") or "").lower()
        if record.deleted or not email:
            tally.counts["skipped"] += 1
            return
        member = await session.scalar(
            select(User.id)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.workspace_id == actor.workspace_id, User.email == email)
        )
        if member is None:
            tally.counts["skipped"] += 1
            return
        matched[email] = record.external_id
        tally.counts["updated"] += 1

    async def _push(
        self, actor: Principal, row: Connection, fields: dict[str, str], tally: Tally, context: Any
    ) -> None:
        """Send Harmony contacts this connection has never seen to the provider, and link them."""
        push = self.integrations.registry.hooks[row.app].push
        assert push is not None
        async with self.integrations.db.session() as session:
            linked = select(SyncedRecord.local_id).where(
                SyncedRecord.connection_id == row.id, SyncedRecord.object == "contacts"
            )
            contacts = list(
                await session.scalars(
                    select(Contact).where(Contact.workspace_id == actor.workspace_id, Contact.id.not_in(linked))
                )
            )
        for contact in contacts:
            provider_values = {p: getattr(contact, h) for h, p in fields.items() if getattr(contact, h, "")}
            try:
                external_id = await push(context, None, provider_values)
            except ToolError as exc:
                tally.fail(contact.id, str(exc))
                continue
            async with self.integrations.db.transaction() as session:
                session.add(
                    SyncedRecord(connection_id=row.id, object="contacts", external_id=external_id, local_id=contact.id)
                )
            tally.counts["pushed"] += 1

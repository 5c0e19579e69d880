"""The audit trail: append-only, hash-chained per workspace.

Every tool call appends a ``call`` row with its decision and outcome; every
step of an approval (requested, approved, denied, expired, cancelled,
executed) appends a row of its own. Only digests of arguments are hashed and
shown; the arguments themselves are kept sealed for replay, outside the hash.

Each row carries the hash of the workspace's previous row, so changing,
removing or reordering rows breaks the chain, and ``verify`` finds where.

Rows go through one writer task per process. It appends in order and commits
whatever has queued up while the previous commit ran (group commit). A caller
that must not return before its row is durable (anything that changed
something, or was refused) waits for that commit; a successful read only
queues its row, which the writer commits moments later, and every queued row
is flushed on shutdown.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from store.db import Database
from store.models import AuditEntry, AuditHead, utcnow

log = logging.getLogger(__name__)

HASHED_FIELDS = (
    "at",
    "event",
    "workspace_id",
    "user_id",
    "actor_id",
    "api_key_id",
    "connection_id",
    "approval_id",
    "app",
    "tool",
    "risk",
    "role",
    "connection_scope",
    "args_digest",
    "decision",
    "reasons",
    "rule_ids",
    "outcome",
    "error",
    "duration_ms",
)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    INVALID = "invalid"
    PENDING = "pending"


class Event(StrEnum):
    CALL = "call"
    REQUESTED = "approval.requested"
    APPROVED = "approval.approved"
    DENIED = "approval.denied"
    EXPIRED = "approval.expired"
    CANCELLED = "approval.cancelled"
    EXECUTED = "approval.executed"
    RULE_CREATED = "rule.created"
    RULE_CHANGED = "rule.changed"
    RULE_DELETED = "rule.deleted"


@dataclass(frozen=True, kw_only=True)
class AuditRecord:
    workspace_id: str
    user_id: str
    app: str
    tool: str
    args_digest: str
    decision: str
    outcome: str
    event: str = Event.CALL
    actor_id: str | None = None
    api_key_id: str | None = None
    connection_id: str | None = None
    approval_id: str | None = None
    risk: str | None = None
    role: str | None = None
    connection_scope: str | None = None
    reasons: tuple[str, ...] = ()
    rule_ids: tuple[str, ...] = ()
    error: str | None = None
    duration_ms: float = 0.0
    sealed_arguments: str | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        values = asdict(self)
        values.update(
            event=str(self.event), outcome=str(self.outcome), reasons=list(self.reasons), rule_ids=list(self.rule_ids)
        )
        values["at"] = utcnow()
        return values


def entry_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the row's canonical JSON (row id excluded: it is assigned later)."""
    fields = {name: row[name] for name in HASHED_FIELDS}
    at: datetime = fields["at"]
    fields["at"] = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


async def _lock_head(connection: AsyncConnection, workspace_id: str) -> str:
    """Lock the workspace's chain head (creating it on first use) and return its hash."""
    dialect = connection.dialect.name
    create = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(AuditHead).values(
        workspace_id=workspace_id, last_hash=""
    )
    await connection.execute(create.on_conflict_do_nothing(index_elements=["workspace_id"]))
    # A write to the head row takes its lock on every backend, so two writers
    # (replicas, or the CLI beside the server) append one after the other.
    await connection.execute(
        update(AuditHead).where(AuditHead.workspace_id == workspace_id).values(last_hash=AuditHead.last_hash)
    )
    return (
        await connection.execute(select(AuditHead.last_hash).where(AuditHead.workspace_id == workspace_id))
    ).scalar_one()


async def append_rows(connection: AsyncConnection, records: list[AuditRecord]) -> None:
    """Chain and insert ``records`` inside the caller's transaction."""
    rows = [record.row() for record in records]
    heads: dict[str, str] = {}
    for workspace_id in sorted({row["workspace_id"] for row in rows}):
        heads[workspace_id] = await _lock_head(connection, workspace_id)
    for row in rows:
        row["prev_hash"] = heads[row["workspace_id"]]
        row["hash"] = heads[row["workspace_id"]] = entry_hash(row["prev_hash"], row)
    await connection.execute(insert(AuditEntry), rows)
    for workspace_id, last_hash in heads.items():
        await connection.execute(
            update(AuditHead).where(AuditHead.workspace_id == workspace_id).values(last_hash=last_hash)
        )


async def append_in(session: AsyncSession, *records: AuditRecord) -> None:
    """Append inside a session's own transaction, so the rows commit with the change they record."""
    await append_rows(await session.connection(), list(records))


class AuditLog:
    """Appends audit rows through a single writer task, batching commits."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: list[tuple[AuditRecord, asyncio.Future[None] | None]] = []
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._connection: AsyncConnection | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def append(self, record: AuditRecord, *, durable: bool = True) -> None:
        """Queue ``record``; with ``durable``, return only once it is committed."""
        done: asyncio.Future[None] | None = asyncio.get_running_loop().create_future() if durable else None
        self._queue.append((record, done))
        self._idle.clear()
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever(), name="audit-writer")
        if done is not None:
            await done

    async def flush(self) -> None:
        """Wait until every queued row is committed."""
        while self._queue or not self._idle.is_set():
            await self._idle.wait()

    async def aclose(self) -> None:
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                await self._commit(batch)
            if not self._queue:
                self._idle.set()

    async def _commit(self, batch: list[tuple[AuditRecord, asyncio.Future[None] | None]]) -> None:
        try:
            if self._connection is None or self._connection.closed:
                # The writer keeps one connection, so a commit costs no pool checkout.
                self._connection = await self.db.engine.connect()
            try:
                await append_rows(self._connection, [record for record, _ in batch])
                await self._connection.commit()
            except Exception:
                await self._connection.rollback()
                await self._connection.close()
                raise
        except Exception as exc:
            log.exception("could not write %d audit rows", len(batch))
            for _, done in batch:
                if done is not None and not done.done():
                    done.set_exception(exc)
            return
        for _, done in batch:
            if done is not None and not done.done():
                done.set_result(None)


@dataclass(frozen=True)
class ChainReport:
    workspace_id: str
    entries: int
    broken_at: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.broken_at is None and not self.problem


async def verify(session: AsyncSession, workspace_id: str | None = None) -> list[ChainReport]:
    """Recompute every workspace's chain (or one) and report the first broken link of each."""
    heads = {
        head.workspace_id: head.last_hash
        for head in await session.scalars(
            select(AuditHead).where(AuditHead.workspace_id == workspace_id) if workspace_id else select(AuditHead)
        )
    }
    query = select(AuditEntry).order_by(AuditEntry.workspace_id, AuditEntry.id)
    if workspace_id:
        query = query.where(AuditEntry.workspace_id == workspace_id)
    reports: list[ChainReport] = []
    current: str | None = None
    previous, count, broken, problem = "", 0, None, ""

    def close() -> None:
        if current is None:
            return
        tail_problem = problem
        if broken is None and heads.get(current, "") != previous:
            tail_problem = "the newest entries are missing: the chain head does not match the last entry"
        reports.append(ChainReport(current, count, broken, tail_problem))

    for entry in await session.scalars(query):
        if entry.workspace_id != current:
            close()
            current, previous, count, broken, problem = entry.workspace_id, "", 0, None, ""
        count += 1
        if broken is not None:
            continue
        row = {name: getattr(entry, name) for name in HASHED_FIELDS}
        if entry.prev_hash != previous:
            broken, problem = entry.id, f"entry {entry.id} does not follow the entry before it"
        elif entry_hash(previous, row) != entry.hash:
            broken, problem = entry.id, f"entry {entry.id} was changed after it was written"
        previous = entry.hash
    close()
    seen = {report.workspace_id for report in reports}
    for missing in sorted(set(heads) - seen):
        if heads[missing]:
            reports.append(ChainReport(missing, 0, None, "every entry is missing"))
    return reports

"""The audit trail: append-only, hash-chained per workspace.

Every tool call appends a ``call`` row with its decision and outcome; every
step of an approval (requested, voted, edited, escalated, approved, denied,
expired, cancelled, executed) appends a row of its own. Only digests of arguments are hashed and
shown; the arguments themselves are kept sealed for replay, outside the hash.

Each row carries the hash of the workspace's previous row, so changing,
removing or reordering rows breaks the chain, and ``verify`` finds where.

Only one writer task per process extends the chains. It appends whatever
arrived while its previous commit ran, lingering 20 ms so that calls made one
after another share a commit too, and it takes each workspace's chain head
lock once per batch. Rows reach it two ways:

- a call's row is queued in memory, not awaited: waiting would not narrow the
  one gap that matters (a crash after the provider acted but before the row
  is written);
- on PostgreSQL, the rows of a change (an approval's step, a rule's edit)
  are written to the outbox in the change's own transaction, so they commit
  with it or not at all, and the writer moves them onto the chain after the
  commit. A change takes no lock for its audit: when it chained its rows
  itself, it held the head from its append to its commit, and under load
  every change in the workspace, on every replica, queued behind it. Rows a
  process left in the outbox when it died are chained by the next writer
  that runs. On SQLite, which runs one writing transaction at a time anyway,
  a change chains its rows itself as it commits.

The writer retries while the database is away, and every queued row is
flushed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import weakref
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, delete, event, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from store.correlation import current_request_id
from store.db import Database
from store.models import AuditEntry, AuditHead, AuditOutbox, utcnow

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
    OUTCOME_UNKNOWN = "approval.outcome_unknown"
    # A person changed the arguments before approving: both digests, and both versions sealed.
    EDITED = "approval.edited"
    # One approver's word on an approval that needs several.
    VOTED = "approval.voted"
    # No one decided in time, so the workspace's admins were added to the approvers.
    ESCALATED = "approval.escalated"
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
    # The assistant in words (a key's name, an OAuth client's), outside the hash: people read it, and the hashed
    # api_key_id already binds the entry to the key or grant the call came through.
    assistant: str | None = None
    # Taken when the record is made, in the request's context: rows are written later, by the writer task.
    request_id: str | None = field(default_factory=current_request_id)

    def row(self) -> dict[str, Any]:
        # Field by field rather than dataclasses.asdict, which deep-copies: this runs for every call.
        values = {name: getattr(self, name) for name in _RECORD_FIELDS}
        values.update(
            event=str(self.event), outcome=str(self.outcome), reasons=list(self.reasons), rule_ids=list(self.rule_ids)
        )
        values["at"] = utcnow()
        return values


_RECORD_FIELDS = tuple(f.name for f in fields(AuditRecord))


def entry_hash(prev_hash: str, row: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the row's canonical JSON (row id excluded: it is assigned later)."""
    fields = {name: row[name] for name in HASHED_FIELDS}
    at: datetime = fields["at"]
    fields["at"] = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    body = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _lock_head(connection: Connection, workspace_id: str) -> str:
    """Lock the workspace's chain head (creating it on first use) and return its hash."""
    # A write to the head row takes its lock on every backend, so two writers
    # (replicas, or the CLI beside the server) append one after the other.
    touch = (
        update(AuditHead)
        .where(AuditHead.workspace_id == workspace_id)
        .values(last_hash=AuditHead.last_hash)
        .returning(AuditHead.last_hash)
    )
    current = connection.execute(touch).scalar_one_or_none()
    if current is not None:
        return str(current)
    create = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(AuditHead).values(
        workspace_id=workspace_id, last_hash=""
    )
    connection.execute(create.on_conflict_do_nothing(index_elements=["workspace_id"]))
    return str(connection.execute(touch).scalar_one())


def _chain(rows: list[dict[str, Any]], heads: dict[str, str]) -> dict[str, str]:
    """Link ``rows`` onto ``heads``; return the new heads."""
    heads = dict(heads)
    for row in rows:
        row["prev_hash"] = heads[row["workspace_id"]]
        row["hash"] = heads[row["workspace_id"]] = entry_hash(row["prev_hash"], row)
    return heads


def append_rows(connection: Connection, records: list[AuditRecord]) -> None:
    """Chain and insert ``records`` inside the caller's transaction, holding each chain's head lock."""
    rows = [record.row() for record in records]
    heads = {ws: _lock_head(connection, ws) for ws in sorted({row["workspace_id"] for row in rows})}
    for workspace_id, last_hash in _chain(rows, heads).items():
        connection.execute(update(AuditHead).where(AuditHead.workspace_id == workspace_id).values(last_hash=last_hash))
    connection.execute(insert(AuditEntry), rows)


class _StaleHead(Exception):
    """Another writer extended the chain since this process last saw its head."""


def _append_optimistic(connection: Connection, rows: list[dict[str, Any]], heads: dict[str, str]) -> dict[str, str]:
    """Append assuming ``heads`` are current; each head moves only if it still holds the hash we chained onto."""
    new_heads = _chain(rows, heads)
    for workspace_id, last_hash in new_heads.items():
        moved = connection.execute(
            update(AuditHead)
            .where(AuditHead.workspace_id == workspace_id, AuditHead.last_hash == heads[workspace_id])
            .values(last_hash=last_hash)
        )
        if not moved.rowcount:
            raise _StaleHead
    connection.execute(insert(AuditEntry), rows)
    return new_heads


def _take_outbox(connection: Connection, limit: int) -> list[dict[str, Any]]:
    """Remove up to ``limit`` of the oldest outbox rows and return them; a rollback puts them back."""
    oldest = connection.scalars(select(AuditOutbox.id).order_by(AuditOutbox.id).limit(limit)).all()
    if not oldest:
        return []  # a read, not a write: on SQLite a write would end other connections' read-then-write turns
    # Another writer taking the same rows makes this wait for its commit, then skip them: whoever returns from a
    # round has seen every row that was in the outbox when the round began chained.
    moved = delete(AuditOutbox).where(AuditOutbox.id.in_(oldest))
    taken = connection.execute(moved.returning(AuditOutbox.id, AuditOutbox.row)).all()
    return [_restored(row) for _, row in sorted(taken)]


def _portable(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "at": row["at"].isoformat()}


def _restored(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "at": datetime.fromisoformat(row["at"])}


OUTBOX = "companion.audit.outbox"
AT_COMMIT = "companion.audit.at_commit"
_writers: weakref.WeakValueDictionary[int, AuditLog] = weakref.WeakValueDictionary()


def append_in(session: AsyncSession, *records: AuditRecord) -> None:
    """Append with the session's transaction: the rows commit with the change they record, or not at all.

    On PostgreSQL they wait in the outbox until this process's writer chains them, just after the commit (see
    the module docstring for why the change does not chain them itself). SQLite lets one transaction write at a
    time whatever it does, so there they are chained as the transaction commits, after everything else; a
    writer committing beside the change could end the change's next write with "database is locked".
    """
    if session.get_bind().dialect.name == "sqlite":
        session.sync_session.info.setdefault(AT_COMMIT, []).extend(records)
        return
    session.add_all(AuditOutbox(row=_portable(record.row())) for record in records)
    session.sync_session.info[OUTBOX] = True


@event.listens_for(Session, "before_commit")
def _append_last(session: Session) -> None:
    records = session.info.pop(AT_COMMIT, None)
    if records:
        session.flush()  # the change first, so only the append and the commit happen under the lock
        append_rows(session.connection(), records)


@event.listens_for(Session, "after_commit")
def _chain_soon(session: Session) -> None:
    if session.info.pop(OUTBOX, False):
        bind = session.get_bind()
        writer = _writers.get(id(getattr(bind, "engine", bind)))
        if writer is not None:
            writer.chain_outbox()


@event.listens_for(Session, "after_rollback")
def _nothing_to_chain(session: Session) -> None:
    session.info.pop(OUTBOX, None)
    session.info.pop(AT_COMMIT, None)


TRANSIENT = (OperationalError, InterfaceError, OSError)
MAX_BATCH = 500


class _DatabaseAway(Exception):
    def __init__(self, rows: list[AuditRecord]) -> None:
        self.rows = rows


class AuditLog:
    """Extends this process's chains through a single writer task, batching commits."""

    def __init__(self, db: Database, *, linger_seconds: float = 0.02) -> None:
        self.db = db
        self.linger_seconds = linger_seconds
        self._queue: list[AuditRecord] = []
        self._outbox_waiting = False  # a change committed rows to the outbox that may not be chained yet
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._connection: AsyncConnection | None = None
        self._heads: dict[str, str] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        # The first log of a database is the one its changes call on (the app's; tests make more).
        _writers.setdefault(id(db.engine.sync_engine), self)

    def append(self, record: AuditRecord) -> None:
        """Queue ``record`` for the writer."""
        self._queue.append(record)
        if len(self._queue) >= MAX_BATCH:
            self._hurry.set()
        self._start()

    def chain_outbox(self) -> None:
        """A change just committed rows to the outbox: have the writer chain them."""
        self._outbox_waiting = True
        self._start()

    def _start(self) -> None:
        self._idle.clear()
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_forever(), name="audit-writer")

    async def flush(self) -> None:
        """Wait until every queued row and every row in the outbox now is chained (without waiting out the
        linger)."""
        self.chain_outbox()
        self._hurry.set()
        while self._queue or self._outbox_waiting or not self._idle.is_set():
            await self._idle.wait()

    async def aclose(self) -> None:
        if _writers.get(id(self.db.engine.sync_engine)) is self:
            del _writers[id(self.db.engine.sync_engine)]
        if self._writer is not None:  # appending starts it: without it, nothing of this log's is waiting
            await self.flush()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()

    async def _write_forever(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            if len(self._queue) < MAX_BATCH and not self._hurry.is_set():
                # Linger a moment so rows from calls made one after another share a commit.
                # asyncio.timeout, not wait_for, which before Python 3.12 can swallow the cancellation of
                # aclose when it meets a hurry.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.linger_seconds):
                        await self._hurry.wait()
            self._wake.clear()
            self._hurry.clear()
            self._outbox_waiting = False
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                # Every round looks in the outbox, so rows a stopped process left there are chained too.
                if await self._append_batch(batch) == MAX_BATCH:
                    self._outbox_waiting = True
                backoff = 0.1
            except _DatabaseAway as away:
                # Keep the rows, in order, and try again once the database answers.
                log.warning("audit rows not written yet; retrying in %.1f s", backoff, exc_info=True)
                self._queue[:0] = away.rows
                self._outbox_waiting = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            if self._queue or self._outbox_waiting:
                self._wake.set()
            else:
                self._idle.set()

    async def _append_batch(self, batch: list[AuditRecord]) -> int:
        """Chain ``batch`` and the outbox's oldest rows; return how many came from the outbox."""
        try:
            return await self._write(batch, MAX_BATCH)
        except TRANSIENT as exc:
            raise _DatabaseAway(batch) from exc
        except Exception:
            log.warning("an audit batch failed; writing its rows one by one", exc_info=True)
        # One row is refused: it is a bug to fix, and must not hold back the others.
        for index, record in enumerate(batch):
            try:
                await self._write([record], 0)
            except TRANSIENT as exc:
                raise _DatabaseAway(batch[index:]) from exc
            except Exception:
                log.error("dropped an audit row the database refuses: %r", record, exc_info=True)
        moved = 0
        while True:
            try:
                taken = await self._write([], 1)
            except TRANSIENT as exc:
                raise _DatabaseAway([]) from exc
            except Exception:
                if await self._drop_oldest_in_outbox():
                    continue
                return moved
            if not taken:
                return moved
            moved += 1

    async def _write(self, records: list[AuditRecord], take: int) -> int:
        """Chain ``records`` and up to ``take`` outbox rows on the writer's own connection; return the outbox count.

        While this process is the only writer of a chain, that is the outbox's delete, the head's update, the
        insert and a commit; when another writer got there first, the head update matches nothing, and the
        rows are chained again under the head's lock.
        """
        if self._connection is None or self._connection.closed:
            # The writer keeps one connection, so a commit costs no pool checkout.
            self._connection = await self.db.engine.connect()
        connection = self._connection
        queued = [record.row() for record in records]

        async def gather() -> tuple[int, list[dict[str, Any]]]:
            taken = await connection.run_sync(_take_outbox, take) if take else []
            # The outbox's rows were committed before this round began; the queue's are stamped now.
            return len(taken), sorted([*taken, *queued], key=lambda row: row["at"])

        try:
            taken, rows = await gather()
            workspaces = sorted({row["workspace_id"] for row in rows})
            if rows and all(ws in self._heads for ws in workspaces):
                try:
                    heads = {ws: self._heads[ws] for ws in workspaces}
                    self._heads.update(await connection.run_sync(_append_optimistic, rows, heads))
                    await connection.commit()
                    return taken
                except _StaleHead:
                    await connection.rollback()  # which puts the taken rows back in the outbox
                    taken, rows = await gather()
                    workspaces = sorted({row["workspace_id"] for row in rows})
            if rows:
                heads = {ws: await connection.run_sync(_lock_head, ws) for ws in workspaces}
                self._heads.update(await connection.run_sync(_append_optimistic, rows, heads))
            await connection.commit()
            return taken
        except Exception:
            self._heads.clear()
            await connection.rollback()
            await connection.close()
            raise

    async def _drop_oldest_in_outbox(self) -> bool:
        """Drop the outbox row that fails to chain (the oldest); False if the outbox is empty."""
        async with self.db.transaction() as session:
            row = await session.scalar(select(AuditOutbox).order_by(AuditOutbox.id).limit(1))
            if row is None:
                return False
            log.error("dropped an audit row the database refuses: %r", row.row)
            await session.delete(row)
            return True


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

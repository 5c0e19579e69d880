"""The audit trail: one appended row per tool call, whatever its outcome.

Only digests of arguments are kept, never the arguments themselves, so no
secret a caller passes can land here.

Rows go through one writer task per process. It appends in order and commits
whatever has queued up while the previous commit ran (group commit), so busy
servers pay for one commit per batch rather than one per call. A caller that
must not return before its row is durable (anything that changed something,
or was refused) waits for that commit; a successful read only queues its row,
which the writer commits moments later, and every queued row is flushed on
shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass
from enum import StrEnum

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from store.db import Database
from store.models import AuditEntry, utcnow

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    INVALID = "invalid"


@dataclass(frozen=True)
class AuditRecord:
    workspace_id: str
    user_id: str
    api_key_id: str | None
    connection_id: str | None
    app: str
    tool: str
    args_digest: str
    decision: str
    reasons: tuple[str, ...]
    outcome: Outcome
    error: str | None
    duration_ms: float

    def row(self) -> dict[str, object]:
        return {**asdict(self), "reasons": list(self.reasons), "outcome": self.outcome.value, "at": utcnow()}


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
                await self._connection.execute(insert(AuditEntry), [record.row() for record, _ in batch])
                await self._connection.commit()
            except Exception:
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

"""The audit writer: rows land in order, in batches, hash-chained, and nothing queued is lost."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy import func, select, text

from approvals.audit import AuditLog, AuditRecord, Outcome, _portable, append_in, verify
from store.models import AuditEntry, AuditOutbox

pytestmark = pytest.mark.anyio


def record(tool: str, outcome: Outcome = Outcome.SUCCEEDED, workspace_id: str = "ws") -> AuditRecord:
    return AuditRecord(
        workspace_id=workspace_id,
        user_id="usr",
        api_key_id="key",
        connection_id="conn",
        app="memo",
        tool=tool,
        args_digest="0" * 64,
        decision="allow",
        reasons=("default",),
        outcome=outcome,
        duration_ms=1.5,
    )


async def outbox(companion) -> list[str]:
    async with companion.db.session() as session:
        return [row["tool"] for row in await session.scalars(select(AuditOutbox.row).order_by(AuditOutbox.id))]


async def count(companion) -> int:
    async with companion.db.session() as session:
        return await session.scalar(select(func.count()).select_from(AuditEntry))


async def test_an_appended_row_is_committed_by_the_time_flush_returns(companion):
    log = AuditLog(companion.db)
    log.append(record("memo_add_note"))
    await log.flush()
    assert await count(companion) == 1
    await log.aclose()


async def test_rows_appended_in_a_transaction_commit_with_it_and_are_chained_after_or_not_at_all(companion):
    async def entries() -> list[str]:
        async with companion.db.session() as session:
            return list((await session.scalars(select(AuditEntry.tool).order_by(AuditEntry.id))).all())

    async with companion.db.transaction() as session:
        append_in(session, record("memo_add_note"), record("memo_share_note"))
        assert await outbox(companion) == [] and await entries() == []  # nothing shows before the commit
    with pytest.raises(RuntimeError):
        async with companion.db.transaction() as session:
            append_in(session, record("memo_delete_note"))
            raise RuntimeError("the change failed")
    # Each committed row is in one place: the outbox (PostgreSQL, until the writer's round) or the chain.
    assert sorted(await outbox(companion) + await entries()) == ["memo_add_note", "memo_share_note"]
    await companion.audit.flush()
    assert await outbox(companion) == []
    assert await entries() == ["memo_add_note", "memo_share_note"]
    async with companion.db.session() as session:
        rows = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
        assert rows[0].prev_hash == "" and rows[1].prev_hash == rows[0].hash
        assert all(report.intact for report in await verify(session))


async def test_rows_left_in_the_outbox_by_a_process_that_stopped_are_chained_by_the_next_writer(companion):
    async with companion.db.transaction() as session:
        # As a process that died between its commit and its writer's round leaves them.
        session.add_all(AuditOutbox(row=_portable(record(f"memo_{index}").row())) for index in range(3))
    log = AuditLog(companion.db)
    log.append(record("memo_later"))
    await log.flush()
    async with companion.db.session() as session:
        tools = (await session.scalars(select(AuditEntry.tool).order_by(AuditEntry.id))).all()
        assert all(report.intact for report in await verify(session))
    assert tools == ["memo_0", "memo_1", "memo_2", "memo_later"]
    assert await outbox(companion) == []
    await log.aclose()


async def test_queued_rows_are_flushed_and_kept_in_order(companion):
    log = AuditLog(companion.db)
    for index in range(50):
        log.append(record(f"memo_{index}"))
    await log.flush()
    async with companion.db.session() as session:
        tools = (await session.scalars(select(AuditEntry.tool).order_by(AuditEntry.id))).all()
    assert tools == [f"memo_{index}" for index in range(50)]
    await log.aclose()


async def test_rows_queued_from_many_tasks_all_land(companion):
    log = AuditLog(companion.db)

    async def caller(index: int) -> None:
        await asyncio.sleep(0)
        log.append(record(f"memo_{index}"))

    await asyncio.gather(*(caller(i) for i in range(40)))
    await log.flush()
    assert await count(companion) == 40
    await log.aclose()


async def test_closing_the_log_flushes_what_is_queued(companion):
    log = AuditLog(companion.db)
    log.append(record("memo_late"))
    await log.aclose()
    assert await count(companion) == 1


async def test_a_row_the_database_refuses_does_not_hold_back_the_others(companion, caplog):
    log = AuditLog(companion.db)
    log.append(record("memo_before"))
    log.append(replace(record("memo_broken"), workspace_id=None))  # violates NOT NULL on every backend
    log.append(record("memo_after"))
    await log.flush()
    async with companion.db.session() as session:
        tools = (await session.scalars(select(AuditEntry.tool).order_by(AuditEntry.id))).all()
    assert tools == ["memo_before", "memo_after"]
    assert "dropped an audit row the database refuses" in caplog.text
    await log.aclose()


async def chained(companion, count: int = 6) -> AuditLog:
    log = AuditLog(companion.db)
    for index in range(count):
        log.append(record(f"memo_{index}", workspace_id="ws" if index % 2 else "other"))
    await log.flush()
    return log


async def test_an_untouched_chain_verifies(companion):
    log = await chained(companion)
    async with companion.db.session() as session:
        reports = await verify(session)
    assert [(r.workspace_id, r.entries, r.intact) for r in reports] == [("other", 3, True), ("ws", 3, True)]
    await log.aclose()


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        ("UPDATE audit_entries SET decision = 'deny' WHERE id = :middle", "was changed after it was written"),
        ("UPDATE audit_entries SET duration_ms = 0.5 WHERE id = :middle", "was changed after it was written"),
        ("DELETE FROM audit_entries WHERE id = :middle", "does not follow the entry before it"),
        ("DELETE FROM audit_entries WHERE id = :last", "the newest entries are missing"),
    ],
)
async def test_a_changed_or_missing_row_breaks_the_chain_where_it_happened(companion, tamper, problem):
    log = await chained(companion)
    async with companion.db.session() as session:
        ids = (
            await session.scalars(select(AuditEntry.id).where(AuditEntry.workspace_id == "ws").order_by(AuditEntry.id))
        ).all()
    async with companion.db.transaction() as session:
        await session.execute(text(tamper), {"middle": ids[1], "last": ids[-1]})
    async with companion.db.session() as session:
        reports = {r.workspace_id: r for r in await verify(session)}
    assert reports["other"].intact
    assert not reports["ws"].intact and problem in reports["ws"].problem
    await log.aclose()


async def test_rows_wait_while_the_database_is_away_and_land_in_order_when_it_is_back(companion, monkeypatch):
    from sqlalchemy.exc import OperationalError

    log = AuditLog(companion.db)
    real_write = log._write
    failures = iter([True, True, False, False])

    async def flaky(records, take):
        if next(failures, False):
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return await real_write(records, take)

    monkeypatch.setattr(log, "_write", flaky)
    for index in range(3):
        log.append(record(f"memo_{index}"))
    await asyncio.wait_for(log.flush(), timeout=10)
    async with companion.db.session() as session:
        tools = (await session.scalars(select(AuditEntry.tool).order_by(AuditEntry.id))).all()
    assert tools == ["memo_0", "memo_1", "memo_2"]
    await log.aclose()


async def test_the_writer_stops_when_cancelled_even_as_it_is_hurried(companion):
    """Stopping the writer while it lingers, in the same moment as a hurry, stops it. (``asyncio.wait_for`` before
    Python 3.12 swallows such a cancellation, and the writer would then wait forever.)"""
    log = AuditLog(companion.db, linger_seconds=3600)
    log.append(record("memo_lingering"))
    for _ in range(3):
        await asyncio.sleep(0)  # the writer starts and lingers for more rows
    writer = log._writer
    assert writer is not None and not writer.done()
    log._hurry.set()
    writer.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(writer, return_exceptions=True)
    assert writer.cancelled()
    log._writer = None
    log._queue.clear()
    await log.aclose()

"""The audit writer: rows land in order, durable appends wait for their commit, and nothing queued is lost."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from approvals.audit import AuditLog, AuditRecord, Outcome, verify
from store.models import AuditEntry

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


async def count(companion) -> int:
    async with companion.db.session() as session:
        return await session.scalar(select(func.count()).select_from(AuditEntry))


async def test_a_durable_append_is_committed_when_it_returns(companion):
    log = AuditLog(companion.db)
    await log.append(record("memo_add_note"), durable=True)
    assert await count(companion) == 1
    await log.aclose()


async def test_queued_rows_are_flushed_and_kept_in_order(companion):
    log = AuditLog(companion.db)
    for index in range(50):
        await log.append(record(f"memo_{index}"), durable=False)
    await log.flush()
    async with companion.db.session() as session:
        tools = (await session.scalars(select(AuditEntry.tool).order_by(AuditEntry.id))).all()
    assert tools == [f"memo_{index}" for index in range(50)]
    await log.aclose()


async def test_concurrent_durable_appends_share_commits_and_all_land(companion):
    log = AuditLog(companion.db)
    await asyncio.gather(*(log.append(record(f"memo_{i}"), durable=True) for i in range(40)))
    assert await count(companion) == 40
    await log.aclose()


async def test_closing_the_log_flushes_what_is_queued(companion):
    log = AuditLog(companion.db)
    await log.append(record("memo_late"), durable=False)
    await log.aclose()
    assert await count(companion) == 1


async def test_a_failed_commit_reaches_the_durable_caller(companion):
    log = AuditLog(companion.db)
    broken = replace(record("memo_broken"), workspace_id=None)  # violates NOT NULL on every backend
    with pytest.raises(IntegrityError):
        await log.append(broken, durable=True)
    await log.append(record("memo_after"), durable=True)
    assert await count(companion) == 1
    await log.aclose()


async def chained(companion, count: int = 6) -> AuditLog:
    log = AuditLog(companion.db)
    for index in range(count):
        await log.append(record(f"memo_{index}", workspace_id="ws" if index % 2 else "other"), durable=False)
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

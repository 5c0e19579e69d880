"""The audit writer: rows land in order, durable appends wait for their commit, and nothing queued is lost."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from approvals.audit import AuditLog, AuditRecord, Outcome
from store.models import AuditEntry

pytestmark = pytest.mark.anyio


def record(tool: str, outcome: Outcome = Outcome.SUCCEEDED) -> AuditRecord:
    return AuditRecord("ws", "usr", "key", "conn", "memo", tool, "0" * 64, "allow", ("default",), outcome, None, 1.5)


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

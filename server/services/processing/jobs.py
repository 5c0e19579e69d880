"""A job queue on the ``jobs`` table, so background work survives a restart and runs once across processes.

- A job is enqueued in the caller's transaction: it exists exactly when the change that asked for it committed.
- A worker claims a due job with one conditional UPDATE (``WHERE id = … AND <still due>``): of several
  processes racing for a job, one changes the row and the others change nothing, on SQLite and PostgreSQL alike.
- A claim is a lease: the row says who holds it and until when. The holder renews it while it works
  (``run_leased``). A process that dies stops renewing, and once the lease runs out the job is due again, so a
  restarted (or any other) worker picks it up; jobs still ``queued`` are simply due.
- Every write a holder makes is conditional on still holding the lease, so a worker that lost it (it stalled
  past the lease and another took over) cannot overwrite the new holder's work: ``LeaseLost`` rolls it back.
- A failed attempt is retried with exponential backoff; the caller decides when to give up (``MAX_ATTEMPTS``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import Database, rows_matched
from store.models import Job, JobStatus, utcnow

log = logging.getLogger(__name__)

#: How long a claim holds a job without renewal; a job whose worker died is due again after this.
LEASE = timedelta(seconds=60)
#: Attempts before a job is given up; an attempt is counted when the job is claimed.
MAX_ATTEMPTS = 5
#: The wait before the first retry; it doubles with each attempt, up to ``BACKOFF_MAX``.
BACKOFF_BASE = timedelta(seconds=10)
BACKOFF_MAX = timedelta(hours=1)

T = TypeVar("T")


class LeaseLost(Exception):
    """This worker no longer holds the job: another one claimed it after the lease ran out."""


@dataclass(frozen=True)
class Claim:
    """A job this worker holds, and the attempt it is on (1 for the first run)."""

    job_id: str
    kind: str
    subject_id: str
    attempts: int
    worker: str


def enqueue(session: AsyncSession, kind: str, subject_id: str, *, run_after: datetime | None = None) -> Job:
    """Add a queued job to the caller's transaction; it commits, or not, with the change that asked for it."""
    now = utcnow()
    job = Job(kind=kind, subject_id=subject_id, status=JobStatus.QUEUED, run_after=run_after or now, created_at=now)
    session.add(job)
    return job


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 10 s, 20 s, 40 s … at most an hour."""
    return min(BACKOFF_BASE * (1 << max(attempts - 1, 0)), BACKOFF_MAX)


def _due(now: datetime) -> ColumnElement[bool]:
    queued = and_(Job.status == JobStatus.QUEUED, Job.run_after <= now)
    abandoned = and_(Job.status == JobStatus.RUNNING, Job.locked_until < now)
    return or_(queued, abandoned)


def _held(claim: Claim) -> ColumnElement[bool]:
    return and_(Job.id == claim.job_id, Job.status == JobStatus.RUNNING, Job.locked_by == claim.worker)


async def claim(
    db: Database, worker: str, kinds: Iterable[str], *, limit: int = 1, lease: timedelta = LEASE
) -> list[Claim]:
    """Claim up to ``limit`` due jobs of ``kinds``, oldest due first; each is won by exactly one worker."""
    kinds = list(kinds)
    now = utcnow()
    async with db.session() as session:
        candidates = list(
            await session.scalars(
                select(Job.id).where(Job.kind.in_(kinds), _due(now)).order_by(Job.run_after, Job.id).limit(limit * 4)
            )
        )
    claims: list[Claim] = []
    for job_id in candidates:
        if len(claims) == limit:
            break
        async with db.transaction() as session:
            won = await session.execute(
                update(Job)
                .where(Job.id == job_id, _due(now))
                .values(status=JobStatus.RUNNING, locked_by=worker, locked_until=now + lease, attempts=Job.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            if rows_matched(won) != 1:
                continue  # another worker was first
            row = (await session.execute(select(Job.kind, Job.subject_id, Job.attempts).where(Job.id == job_id))).one()
        claims.append(Claim(job_id, row.kind, row.subject_id, row.attempts, worker))
    return claims


async def _conditional(session: AsyncSession, claim: Claim, **values: object) -> None:
    result = await session.execute(
        update(Job).where(_held(claim)).values(**values).execution_options(synchronize_session=False)
    )
    if rows_matched(result) != 1:
        raise LeaseLost(f"job {claim.job_id} is no longer held by {claim.worker}")


async def hold(session: AsyncSession, claim: Claim, *, lease: timedelta = LEASE) -> None:
    """Renew the lease inside the caller's transaction, or raise ``LeaseLost`` so that it rolls back.

    Starting a transaction with this write also takes SQLite's write lock first,
    so the reads that follow cannot be invalidated by another writer.
    """
    await _conditional(session, claim, locked_until=utcnow() + lease)


async def succeed(session: AsyncSession, claim: Claim) -> None:
    """Mark the job done in the caller's transaction (with the work it did), or raise ``LeaseLost``."""
    await _conditional(session, claim, status=JobStatus.SUCCEEDED, finished_at=utcnow(), locked_until=None)


async def fail(session: AsyncSession, claim: Claim, error: str) -> None:
    """Give the job up for good in the caller's transaction, or raise ``LeaseLost``."""
    await _conditional(
        session, claim, status=JobStatus.FAILED, last_error=error, finished_at=utcnow(), locked_until=None
    )


async def retry(db: Database, claim: Claim, error: str) -> datetime:
    """Put the job back in the queue, due after the backoff for this attempt; returns when it is due."""
    due = utcnow() + backoff(claim.attempts)
    async with db.transaction() as session:
        await _conditional(
            session, claim, status=JobStatus.QUEUED, run_after=due, last_error=error, locked_by=None, locked_until=None
        )
    return due


async def run_leased(db: Database, claim: Claim, work: Awaitable[T], *, lease: timedelta = LEASE) -> T:
    """Await ``work`` while renewing the lease every third of it; cancel the work if the lease is lost.

    A renewal that fails for another reason (the database briefly unreachable)
    is retried at the next tick: the work goes on, and the lease only runs out
    if the database stays away for the rest of it.
    """
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=lease.total_seconds() / 3)
            if done:
                return task.result()
            try:
                async with db.transaction() as session:
                    await hold(session, claim, lease=lease)
            except LeaseLost:
                raise
            except Exception:
                log.warning("could not renew the lease of job %s; trying again", claim.job_id, exc_info=True)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

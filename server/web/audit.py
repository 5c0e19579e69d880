"""The audit log: every call, approval step and rule change, newest first, with the chain's verdict on top.

The hash chain is verified on every admin's view (``approvals.audit.verify``), so
a row changed or removed behind the server's back shows at once, and where. The CSV
export streams the same filtered view in batches; it lists the recorded
fields one by one, so nothing (the sealed arguments, say) can slip into it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from approvals.audit import verify
from server.browser_session import Viewer
from server.services.asked_by import on_behalf_of
from server.web.audit_filters import DECISIONS, KINDS, AuditFilters
from server.web.pages import SECURITY_HEADERS, page, render, services_of
from server.web.people_lookup import Person, members_of, people_by_id
from store.db import Database
from store.models import AuditEntry, utcnow

PAGE_SIZE = 50
EXPORT_BATCH = 500
MAX_ENTRY_ID = 2**31 - 1
EVENTS = {
    "call": "Tool call",
    "approval.requested": "Approval requested",
    "approval.approved": "Approved",
    "approval.denied": "Denied",
    "approval.expired": "Approval expired",
    "approval.cancelled": "Approval cancelled",
    "approval.executed": "Ran after approval",
    "approval.edited": "Changed, then approved",
    "approval.voted": "An approver decided",
    "approval.escalated": "Admins added as approvers",
    "rule.created": "Rule created",
    "rule.changed": "Rule changed",
    "rule.deleted": "Rule deleted",
}
TONES = {
    "allow": "ok",
    "ask": "warn",
    "deny": "bad",
    "succeeded": "ok",
    "approved": "ok",
    "failed": "bad",
    "refused": "bad",
    "denied": "bad",
    "invalid": "warn",
    "pending": "info",
    "shadow": "info",
}
# Rule changes record the rule's mode as their outcome.
OUTCOMES = {"enforce": "Enforced", "shadow": "Shadow"}
CSV_COLUMNS = (
    "id",
    "at",
    "event",
    "user",
    "assistant",
    "acted_by",
    "app",
    "tool",
    "risk",
    "decision",
    "outcome",
    "reasons",
    "rule_ids",
    "duration_ms",
    "approval_id",
    "request_id",
    "api_key_id",
    "connection_id",
    "connection_scope",
    "role",
    "args_digest",
    "error",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True)
class ChainStatus:
    intact: bool
    entries: int
    broken_at: int | None
    problem: str


@dataclass(frozen=True)
class EntryView:
    entry: AuditEntry
    event: str
    person: Person | None
    acted_by: Person | None
    tool_title: str

    @property
    def asked_by(self) -> str:
        """The assistant that acted for the person, as every channel names it ("Claude on behalf of Alice")."""
        return on_behalf_of(self.entry.assistant or "", self.person.label if self.person else self.entry.user_id)


async def _chain(db: Database, workspace_id: str) -> ChainStatus:
    async with db.session() as session:
        reports = await verify(session, workspace_id)
    if not reports:
        return ChainStatus(True, 0, None, "")
    report = reports[0]
    return ChainStatus(report.intact, report.entries, report.broken_at, report.problem)


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditEntry]
    newer: bool
    older: bool
    total: int
    people: dict[str, Person]


async def _page_of(db: Database, where: list[ColumnElement[bool]], before: int | None, after: int | None) -> AuditPage:
    """One page of entries by id, newest first, with whether newer and older ones exist and how many match."""
    query = select(AuditEntry).where(*where)
    async with db.session() as session:
        if after is not None:
            rows = list(
                await session.scalars(query.where(AuditEntry.id > after).order_by(AuditEntry.id).limit(PAGE_SIZE))
            )
            rows.reverse()
        else:
            if before is not None:
                query = query.where(AuditEntry.id < before)
            rows = list(await session.scalars(query.order_by(AuditEntry.id.desc()).limit(PAGE_SIZE)))
        newer = older = False
        if rows:
            newer = bool(await session.scalar(select(exists().where(*where, AuditEntry.id > rows[0].id))))
            older = bool(await session.scalar(select(exists().where(*where, AuditEntry.id < rows[-1].id))))
        total = int(await session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0)
        people = await people_by_id(session, [id_ for row in rows for id_ in (row.user_id, row.actor_id)])
    return AuditPage(rows, newer, older, total, people)


def _entry_id(text: str | None) -> int | None:
    """An entry id from the query string, held within the database's 32-bit ids."""
    return min(int(text), MAX_ENTRY_ID) if text and text.isdigit() else None


@page
async def audit_log(request: Request, viewer: Viewer) -> Response:
    services = services_of(request)
    actor = viewer.principal
    filters = AuditFilters.from_query(request.query_params, actor)
    before = _entry_id(request.query_params.get("before"))
    after = _entry_id(request.query_params.get("after"))
    found = await _page_of(services.db, filters.conditions(actor), before, after)
    people = found.people
    titles = {name: tool.spec.title for name, tool in services.registry.tools.items()}
    entries = [
        EntryView(
            entry=row,
            event=EVENTS.get(row.event, row.event),
            person=people.get(row.user_id),
            acted_by=people.get(row.actor_id or "") if row.actor_id not in (None, row.user_id) else None,
            tool_title=titles.get(row.tool, ""),
        )
        for row in found.rows
    ]
    async with services.db.session() as session:
        members = await members_of(session, actor.workspace_id) if viewer.is_admin else []
    return render(
        request,
        "audit.html",
        viewer,
        status=422 if filters.problems else 200,
        # Verifying reads the whole workspace's chain: it is the admins' check, not every member's page view.
        chain=await _chain(services.db, actor.workspace_id) if viewer.is_admin else None,
        entries=entries,
        filters=filters,
        errors=filters.problems,
        newer=found.newer,
        older=found.older,
        total=found.total,
        members=members,
        apps=sorted((m.name, app) for app, m in services.registry.manifests.items()),
        tools=sorted(services.registry.tools.values(), key=lambda tool: (tool.manifest.name, tool.spec.title)),
        decisions=DECISIONS,
        outcomes=OUTCOMES,
        kinds=KINDS,
        tones=TONES,
    )


def _cell(value: Any) -> Any:
    """A value a spreadsheet shows as text: one starting like a formula gets a leading apostrophe."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return f"'{value}"
    return value


def _csv_row(row: AuditEntry, people: dict[str, Person]) -> list[Any]:
    def email(user_id: str | None) -> str:
        return people[user_id].email if user_id in people else user_id or ""

    values: dict[str, Any] = {
        "id": row.id,
        "at": row.at.isoformat(),
        "event": row.event,
        "user": email(row.user_id),
        "assistant": row.assistant or "",
        "acted_by": email(row.actor_id),
        "app": row.app,
        "tool": row.tool,
        "risk": row.risk or "",
        "decision": row.decision,
        "outcome": row.outcome,
        "reasons": "; ".join(map(str, row.reasons or [])),
        "rule_ids": " ".join(map(str, row.rule_ids or [])),
        "duration_ms": round(row.duration_ms, 3),
        "approval_id": row.approval_id or "",
        "request_id": row.request_id or "",
        "api_key_id": row.api_key_id or "",
        "connection_id": row.connection_id or "",
        "connection_scope": row.connection_scope or "",
        "role": row.role or "",
        "args_digest": row.args_digest,
        "error": row.error or "",
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }
    return [_cell(values[column]) for column in CSV_COLUMNS]


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


@page
async def audit_csv(request: Request, viewer: Viewer) -> Response:
    """The filtered entries as CSV, newest first, streamed a batch at a time with a short session for each."""
    services = services_of(request)
    actor = viewer.principal
    where = AuditFilters.from_query(request.query_params, actor).conditions(actor)

    async def lines() -> AsyncIterator[str]:
        yield _csv_text([CSV_COLUMNS])
        last: int | None = None
        while True:
            query = select(AuditEntry).where(*where)
            if last is not None:
                query = query.where(AuditEntry.id < last)
            async with services.db.session() as session:
                batch = list(await session.scalars(query.order_by(AuditEntry.id.desc()).limit(EXPORT_BATCH)))
                people = await people_by_id(session, [i for row in batch for i in (row.user_id, row.actor_id)])
            if not batch:
                return
            yield _csv_text([_csv_row(row, people) for row in batch])
            last = batch[-1].id

    filename = f"audit-{actor.workspace_slug}-{utcnow():%Y%m%d-%H%M}.csv"
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"'}
    return StreamingResponse(lines(), media_type="text/csv; charset=utf-8", headers=headers)


routes = [
    Route("/audit", audit_log, methods=["GET"]),
    Route("/audit.csv", audit_csv, methods=["GET"]),
]

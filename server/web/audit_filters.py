"""Which audit entries a person asked for, and may see: the filters of the audit page and its CSV export.

Admins see the whole workspace's entries; members only the entries about
their own calls and rules. The filters come from the query string, so a
filtered view is a link, and the CSV export takes the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import urlencode

from sqlalchemy import ColumnElement
from starlette.datastructures import QueryParams

from store.models import AuditEntry
from store.principal import Principal

DECISIONS = {"allow": "Allow", "ask": "Ask", "deny": "Deny", "none": "Not decided"}
KINDS = {"call": "Tool calls", "approval": "Approvals", "rule": "Rule changes"}


def _day(text: str) -> date | None:
    """A day the log could hold; the last day of year 9999 has no next day to end a range with."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if day < date.max else None


@dataclass(frozen=True)
class AuditFilters:
    user: str = ""
    app: str = ""
    tool: str = ""
    decision: str = ""
    kind: str = ""
    since: str = ""
    until: str = ""
    problems: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_query(cls, query: QueryParams, actor: Principal) -> AuditFilters:
        def text(name: str) -> str:
            return query.get(name, "").strip()

        problems: dict[str, str] = {}
        since, until = text("from"), text("to")
        for name, value in (("from", since), ("to", until)):
            if value and _day(value) is None:
                problems[name] = "enter a date such as 2026-03-14"
        first, last = _day(since), _day(until)
        if first and last and first > last:
            problems["to"] = "must be on or after the first day"
        return cls(
            # Members see only their own entries, so a user filter means nothing to them.
            user=text("user") if actor.is_admin else "",
            app=text("app"),
            tool=text("tool"),
            decision=text("decision") if text("decision") in DECISIONS else "",
            kind=text("kind") if text("kind") in KINDS else "",
            since=since,
            until=until,
            problems=problems,
        )

    def conditions(self, actor: Principal) -> list[ColumnElement[bool]]:
        """The SQL conditions: the viewer's own reach first, then each filter that could be read."""
        where = [AuditEntry.workspace_id == actor.workspace_id]
        if not actor.is_admin:
            where.append(AuditEntry.user_id == actor.user_id)
        elif self.user:
            where.append(AuditEntry.user_id == self.user)
        if self.app:
            where.append(AuditEntry.app == self.app)
        if self.tool:
            where.append(AuditEntry.tool == self.tool)
        if self.decision:
            where.append(AuditEntry.decision == self.decision)
        if self.kind == "call":
            where.append(AuditEntry.event == "call")
        elif self.kind:
            where.append(AuditEntry.event.startswith(f"{self.kind}."))
        first, last = _day(self.since), _day(self.until)
        if first and "from" not in self.problems:
            where.append(AuditEntry.at >= datetime.combine(first, time(), UTC))
        if last and "to" not in self.problems:
            where.append(AuditEntry.at < datetime.combine(last + timedelta(days=1), time(), UTC))
        return where

    @property
    def values(self) -> dict[str, str]:
        return {
            "user": self.user,
            "app": self.app,
            "tool": self.tool,
            "decision": self.decision,
            "kind": self.kind,
            "from": self.since,
            "to": self.until,
        }

    @property
    def active(self) -> bool:
        return any(self.values.values())

    def query(self, **extra: int | str) -> str:
        """This view's query string (with ``extra``, such as a page), leaving out what is empty."""
        chosen = {name: value for name, value in {**self.values, **extra}.items() if value != ""}
        return urlencode(chosen)

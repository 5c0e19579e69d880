"""What the rules would decide: for one call now (explain), and for recorded calls under other rules (replay).

Both decide with the same compiled index the gateway uses, so an answer here
is the answer a real call gets. The REST API, the CLI and the web console
shape these answers for their own readers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from approvals.rulebook import RuleBook
from approvals.rules import CallFacts, Decision, Effect, Rule, RuleIndex
from store.crypto import SecretBox
from store.db import Database
from store.models import AuditEntry, Membership, Role, User, utcnow
from store.principal import Principal


class InvalidQuestion(ValueError):
    """A question naming something that does not exist; ``fields`` maps each bad field to its problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in fields.items()))


class AskingForOthers(Exception):
    """A member asked about someone else's calls; only admins may."""


@dataclass(frozen=True)
class Explanation:
    tool: str
    user_id: str
    decision: Decision


async def _subject(db: Database, actor: Principal, who: str | None) -> tuple[str, str]:
    """The user whose decision is explained, and their role; members may only ask about themselves."""
    if who is None or who in (actor.user_id, actor.email):
        return actor.user_id, actor.role.value
    if not actor.is_admin:
        raise AskingForOthers("Only an admin can explain decisions for another user")
    async with db.session() as session:
        row = (
            await session.execute(
                select(User.id, Membership.role)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.workspace_id == actor.workspace_id, (User.email == who.lower()) | (User.id == who))
            )
        ).one_or_none()
    if row is None:
        raise InvalidQuestion({"user": f"no member {who!r} in this workspace"})
    return row[0], Role(row[1]).value


async def explain(
    rulebook: RuleBook,
    actor: Principal,
    *,
    tool: str,
    arguments: dict[str, Any],
    who: str | None = None,
    connection_scope: str = "workspace",
    at: datetime | None = None,
) -> Explanation:
    """The decision a call would get (now, unless ``at``), with every rule that matched it."""
    info = rulebook.catalog.get(tool)
    if info is None:
        raise InvalidQuestion({"tool": f"unknown tool {tool!r}"})
    user_id, role = await _subject(rulebook.db, actor, who)
    index = await rulebook.index_for(actor.workspace_id)
    facts = CallFacts(
        workspace_id=actor.workspace_id,
        user_id=user_id,
        role=role,
        app=info.app,
        tool=tool,
        risk=info.risk,
        connection_scope=connection_scope,
        arguments=arguments,
        now=at or utcnow(),
        timezone=actor.timezone,
    )
    return Explanation(tool, user_id, index.explain(facts))


@dataclass(frozen=True)
class ChangedCall:
    """A recorded call whose decision differs under the proposed rules."""

    audit_id: int
    at: datetime
    user_id: str
    tool: str
    recorded: str
    before: Effect
    after: Effect
    after_rules: tuple[str, ...]


@dataclass(frozen=True)
class Replay:
    since: datetime
    until: datetime
    replayed: int
    counts: dict[tuple[Effect, Effect], int]
    calls: list[ChangedCall]

    @property
    def changed(self) -> int:
        return sum(self.counts.values())


async def replay(
    rulebook: RuleBook,
    box: SecretBox,
    actor: Principal,
    *,
    current: list[Rule],
    proposed: list[Rule],
    since: datetime,
    until: datetime,
    limit: int,
) -> Replay:
    """Decide the recorded calls of [since, until) under ``current`` and ``proposed``; list those that differ.

    Members replay only their own calls; admins the whole workspace's. At most
    ``limit`` changed calls are listed, but all of them are counted.
    """
    query = select(AuditEntry).where(
        AuditEntry.workspace_id == actor.workspace_id,
        AuditEntry.event == "call",
        AuditEntry.at >= since,
        AuditEntry.at < until,
        AuditEntry.sealed_arguments.is_not(None),
    )
    if not actor.is_admin:
        query = query.where(AuditEntry.user_id == actor.user_id)
    async with rulebook.db.session() as session:
        calls = list(await session.scalars(query.order_by(AuditEntry.at)))
    catalog = rulebook.catalog
    before_index = RuleIndex.build(current, catalog)
    after_index = RuleIndex.build(proposed, catalog)
    counts: Counter[tuple[Effect, Effect]] = Counter()
    changed: list[ChangedCall] = []
    replayed = 0
    for entry in calls:
        if entry.tool not in catalog:
            continue
        arguments = box.open_json(entry.sealed_arguments, context=f"audit-args:{entry.args_digest}")
        facts = CallFacts(
            workspace_id=entry.workspace_id,
            user_id=entry.user_id,
            role=entry.role or "member",
            app=entry.app,
            tool=entry.tool,
            risk=entry.risk or catalog[entry.tool].risk,
            connection_scope=entry.connection_scope or "workspace",
            arguments=arguments,
            now=entry.at,
            timezone=actor.timezone,
        )
        replayed += 1
        before, after = before_index.decide(facts), after_index.decide(facts)
        if before.effect is after.effect:
            continue
        counts[(before.effect, after.effect)] += 1
        if len(changed) < limit:
            changed.append(
                ChangedCall(
                    audit_id=entry.id,
                    at=entry.at,
                    user_id=entry.user_id,
                    tool=entry.tool,
                    recorded=entry.decision,
                    before=before.effect,
                    after=after.effect,
                    after_rules=after.rule_ids,
                )
            )
    return Replay(since, until, replayed, dict(counts), changed)

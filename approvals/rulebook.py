"""Stored rules: saving them (validated, audited) and serving each workspace's compiled index."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from approvals.audit import AuditRecord, Event, append_in
from approvals.rules import Catalog, Rule, RuleError, RuleIndex, in_canonical_form, validate
from store.cache import SharedCache
from store.db import Database
from store.errors import CompanionError
from store.invalidation import Topic, announce, subscribe
from store.models import Membership, RuleRow, User, utcnow
from store.principal import Principal

log = logging.getLogger(__name__)


class RulePermissionError(CompanionError):
    """The actor may not create, change or see this rule."""

    code = "forbidden"


def _to_rule(row: RuleRow) -> Rule:
    """A stored rule, failing safe where its conditions no longer pass today's checks.

    A pattern RE2 refuses or a domain the stricter check refuses must not stop a whole workspace's rules from
    loading, nor silently widen anything: an ask or deny rule then applies without its conditions (stricter),
    and an allow rule only in shadow mode, until someone edits it.
    """
    stored = {**row.definition, "id": row.id, "scope": row.scope, "user_id": row.user_id}
    try:
        return Rule.model_validate(stored)
    except ValidationError as exc:
        log.warning("rule %s no longer validates and is applied without its conditions: %s", row.id, exc)
        safe = {
            **stored,
            "conditions": [],
            "description": f"{stored.get('description', '')} (stored conditions "
            "no longer valid; applied without them until edited)"[:500].lstrip(),
        }
        if stored.get("effect") == "allow":
            safe["mode"] = "shadow"
        return Rule.model_validate(safe)


def _definition(rule: Rule) -> dict[str, Any]:
    return rule.model_dump(mode="json", by_alias=True, exclude={"id", "scope", "user_id"}, exclude_none=True)


def may_manage(actor: Principal, rule: Rule) -> bool:
    """Admins manage workspace rules; everyone manages their own user rules, and only those."""
    if rule.scope == "workspace":
        return actor.is_admin
    return rule.user_id == actor.user_id


def may_see(actor: Principal, rule: Rule) -> bool:
    return actor.is_admin if rule.scope == "workspace" else rule.user_id == actor.user_id


class RuleBook:
    def __init__(self, db: Database, catalog: Catalog, *, cache_seconds: float = 0) -> None:
        self.db = db
        self.catalog = catalog
        self._indexes: SharedCache[str, RuleIndex] = SharedCache(cache_seconds)
        subscribe(self)

    def forget(self, topic: Topic) -> None:
        if topic is Topic.RULES:
            self._indexes.clear()

    async def index_for(self, workspace_id: str) -> RuleIndex:
        """The workspace's compiled rules, reused for ``cache_seconds`` and dropped when any replica changes one."""

        async def lookup() -> RuleIndex:
            async with self.db.session() as session:
                return RuleIndex.build(await self.rules_of(session, workspace_id), self.catalog)

        return await self._indexes.get(workspace_id, lookup)

    async def rules_of(self, session: AsyncSession, workspace_id: str) -> list[Rule]:
        rows = await session.scalars(
            select(RuleRow).where(RuleRow.workspace_id == workspace_id).order_by(RuleRow.created_at, RuleRow.id)
        )
        return [_to_rule(row) for row in rows]

    async def visible_to(self, session: AsyncSession, actor: Principal) -> list[Rule]:
        return [rule for rule in await self.rules_of(session, actor.workspace_id) if may_see(actor, rule)]

    async def get(self, session: AsyncSession, actor: Principal, rule_id: str) -> Rule:
        row = await session.scalar(
            select(RuleRow).where(RuleRow.id == rule_id, RuleRow.workspace_id == actor.workspace_id)
        )
        rule = _to_rule(row) if row is not None else None
        if rule is None or not may_see(actor, rule):
            raise LookupError(f"No rule {rule_id} that you can see")
        return rule

    def check(self, rule: Rule, *, now: datetime | None = None) -> list[str]:
        return validate(rule, self.catalog, now=now or utcnow())

    def prepared(self, rule: Rule, *, now: datetime | None = None) -> Rule:
        """The rule as it will be kept: checked, with its values in the form calls are decided on."""
        self.check(rule, now=now)
        return in_canonical_form(rule, self.catalog)

    async def create(self, session: AsyncSession, actor: Principal, rule: Rule) -> Rule:
        rule = rule.model_copy(update={"user_id": actor.user_id if rule.scope == "user" else None})
        if not may_manage(actor, rule):
            raise RulePermissionError("Only a workspace admin can create workspace rules")
        rule = self.prepared(rule)
        await _check_approvers(session, actor.workspace_id, rule)
        row = RuleRow(
            workspace_id=actor.workspace_id,
            scope=rule.scope,
            user_id=rule.user_id,
            definition=_definition(rule),
            created_by=actor.user_id,
        )
        session.add(row)
        await session.flush()
        saved = _to_rule(row)
        append_in(session, _rule_event(actor, Event.RULE_CREATED, saved))
        await announce(session, Topic.RULES)
        return saved

    async def replace(self, session: AsyncSession, actor: Principal, rule_id: str, changes: dict[str, Any]) -> Rule:
        current = await self.get(session, actor, rule_id)
        if not may_manage(actor, current):
            raise RulePermissionError("Only a workspace admin can change workspace rules")
        if "scope" in changes and changes["scope"] != current.scope:
            raise RuleError({"scope": "cannot be changed; create a new rule instead"})
        merged = Rule.model_validate(
            {**current.model_dump(mode="json", by_alias=True, exclude_none=True), **changes, "id": rule_id}
        )
        merged = self.prepared(merged)
        await _check_approvers(session, actor.workspace_id, merged)
        row = await session.get(RuleRow, rule_id)
        assert row is not None
        row.definition = _definition(merged)
        await session.flush()
        append_in(session, _rule_event(actor, Event.RULE_CHANGED, merged))
        await announce(session, Topic.RULES)
        return merged

    async def delete(self, session: AsyncSession, actor: Principal, rule_id: str) -> None:
        current = await self.get(session, actor, rule_id)
        if not may_manage(actor, current):
            raise RulePermissionError("Only a workspace admin can delete workspace rules")
        await session.execute(delete(RuleRow).where(RuleRow.id == rule_id))
        append_in(session, _rule_event(actor, Event.RULE_DELETED, current))
        await announce(session, Topic.RULES)


async def _check_approvers(session: AsyncSession, workspace_id: str, rule: Rule) -> None:
    """Refuse a rule naming an approver who is not a member of the workspace: that approval could never come."""
    if rule.approvers is None or not rule.approvers.people:
        return
    members = set(
        await session.scalars(
            select(User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.workspace_id == workspace_id, User.email.in_(rule.approvers.people))
        )
    )
    strangers = [email for email in rule.approvers.people if email not in members]
    if strangers:
        raise RuleError({"approvers.people": f"not members of this workspace: {', '.join(strangers)}"})


def _rule_event(actor: Principal, event: Event, rule: Rule) -> AuditRecord:
    return AuditRecord(
        event=event,
        workspace_id=actor.workspace_id,
        user_id=rule.user_id or actor.user_id,
        actor_id=actor.user_id,
        api_key_id=actor.key_id,
        app=rule.app or "*",
        tool=rule.tool,
        args_digest="",
        decision=rule.effect.value,
        outcome=rule.mode,
        rule_ids=(rule.id,),
        reasons=(rule.description,) if rule.description else (),
    )

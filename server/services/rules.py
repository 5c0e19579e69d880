"""Auto-approval rules as a person manages them: list, add, read, change and delete.

The rule book (``approvals.rulebook``) checks and stores; this is the one
place its refusals become the use-case errors every front end maps, so REST
and the CLI refuse the same rule with the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.json_schema import SkipJsonSchema

from approvals.rulebook import RuleBook, RulePermissionError
from approvals.rules import (
    NOTICE_CHANNELS,
    Approvers,
    Cap,
    Condition,
    Effect,
    NoticeChannel,
    Rule,
    RuleContext,
    RuleError,
)
from server.services.errors import Forbidden, InvalidInput, NotFound, ServiceError
from store.principal import Principal

#: Fields of a rule that are the server's to set: a body may carry them (a rule read back does); they are ignored.
SERVER_SET = ("id", "user_id")


class RuleIn(Rule):
    """A new rule. ``id`` and ``user_id`` may be sent (a rule read back has an id) and are ignored."""

    id: SkipJsonSchema[str] = ""
    user_id: SkipJsonSchema[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _server_set(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if k not in SERVER_SET} if isinstance(data, dict) else data


class RuleOut(Rule):
    """A rule as it is stored and decided on. Whose personal rule it is stays unsaid, as in the console's list."""

    user_id: SkipJsonSchema[str | None] = Field(default=None, exclude=True)


class RulePatch(BaseModel):
    """The fields to change; the others stay as they are, and the whole rule is checked again.

    A field left out is unchanged. The defaults only mark "left out": a null sent explicitly clears a field
    that may be empty (``app``, ``risk``, ``cap``, ``expires_at``, ``approvers``, ``escalate_after_minutes``,
    ``escalate_to``) and is refused for the others. A rule
    keeps its scope: another scope is another rule.
    """

    model_config = ConfigDict(extra="forbid")

    effect: Effect = None  # type: ignore[assignment]
    scope: Literal["workspace", "user"] = None  # type: ignore[assignment]
    app: str | None = Field(default=None, max_length=64)
    tool: str = Field(default=None, min_length=1, max_length=128, pattern=r"^[a-z0-9_*?\[\]!-]+$")  # type: ignore[assignment]
    risk: Literal["read", "write", "send", "delete"] | None = None
    conditions: list[Condition] = Field(default=None, max_length=20)  # type: ignore[arg-type]
    context: RuleContext = None  # type: ignore[assignment]
    cap: Cap | None = None
    expires_at: datetime | None = None
    mode: Literal["enforce", "shadow"] = None  # type: ignore[assignment]
    locked: bool = None  # type: ignore[assignment]
    require_out_of_band: bool = None  # type: ignore[assignment]
    admin_may_approve: bool = None  # type: ignore[assignment]
    approvers: Approvers | None = None
    no_self_approval: bool = None  # type: ignore[assignment]
    escalate_after_minutes: int | None = Field(default=None, ge=1, le=30 * 24 * 60)
    escalate_to: Literal["admins"] | None = None
    escalate_by: list[NoticeChannel] = Field(default=None, max_length=len(NOTICE_CHANNELS))  # type: ignore[arg-type]
    description: str = Field(default=None, max_length=500)  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _server_set(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if k not in SERVER_SET} if isinstance(data, dict) else data

    def changes(self) -> dict[str, Any]:
        """The fields sent, in the form the rule book merges into the stored rule."""
        return self.model_dump(mode="json", by_alias=True, include=self.model_fields_set)


def rule_out(rule: Rule) -> RuleOut:
    return RuleOut.model_validate(rule.model_dump(by_alias=True))


def refusal(exc: RuleError | RulePermissionError | LookupError | ValidationError, *, prefix: str = "") -> ServiceError:
    """The rule book's refusal as a use-case error; fields are named under ``prefix`` (``changes.add[0].``)."""
    if isinstance(exc, RuleError):
        return InvalidInput({f"{prefix}{name}": problem for name, problem in exc.fields.items()})
    if isinstance(exc, ValidationError):
        return InvalidInput.of(exc, prefix=prefix)
    if isinstance(exc, RulePermissionError):
        return Forbidden(str(exc))
    return NotFound(str(exc))


@dataclass(frozen=True)
class Rules:
    """Managing rules through the rule book, which checks each against the tools there are."""

    rulebook: RuleBook

    async def visible(self, actor: Principal) -> list[RuleOut]:
        """The workspace's rules for an admin; a member's own personal rules otherwise."""
        async with self.rulebook.db.session() as session:
            return [rule_out(r) for r in await self.rulebook.visible_to(session, actor)]

    async def add(self, actor: Principal, rule: Rule) -> RuleOut:
        try:
            async with self.rulebook.db.transaction() as session:
                return rule_out(await self.rulebook.create(session, actor, rule))
        except (RulePermissionError, RuleError) as exc:
            raise refusal(exc) from None

    async def get(self, actor: Principal, rule_id: str) -> RuleOut:
        try:
            async with self.rulebook.db.session() as session:
                return rule_out(await self.rulebook.get(session, actor, rule_id))
        except LookupError as exc:
            raise refusal(exc) from None

    async def change(self, actor: Principal, rule_id: str, changes: dict[str, Any]) -> RuleOut:
        try:
            async with self.rulebook.db.transaction() as session:
                return rule_out(await self.rulebook.replace(session, actor, rule_id, changes))
        except (LookupError, RulePermissionError, RuleError, ValidationError) as exc:
            raise refusal(exc) from None

    async def remove(self, actor: Principal, rule_id: str) -> None:
        try:
            async with self.rulebook.db.transaction() as session:
                await self.rulebook.delete(session, actor, rule_id)
        except (LookupError, RulePermissionError) as exc:
            raise refusal(exc) from None

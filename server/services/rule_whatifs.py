"""What the rules would decide: explain one call now, or replay recorded calls under proposed changes.

``approvals.whatif`` decides; this is the use case every front end asks: the
REST API and the CLI answer with ``Explanation`` and ``Simulation``, the
console words the same ``whatif`` results for its pages. Nothing is saved and
nothing is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from approvals import whatif
from approvals.rulebook import RuleBook, may_manage
from approvals.rules import Decision, Effect, Rule, RuleError, RuleRef
from server.services.errors import Forbidden, InvalidArguments, InvalidInput
from server.services.rules import refusal
from store.crypto import SecretBox
from store.models import utcnow
from store.principal import Principal
from tools.registry import Registry

#: The window a simulation replays when it names none: the week before ``to``.
DEFAULT_WINDOW = timedelta(days=7)


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, description="E-mail or id; admins may explain for anyone")
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    connection_scope: str = "workspace"
    at: AwareDatetime | None = Field(default=None, description="When the call would be made; default: now")


class RuleMatch(BaseModel):
    id: str
    effect: Effect
    scope: str
    description: str


class ShadowDecision(BaseModel):
    effect: Effect = Field(description="What rules in shadow mode would have decided")
    rules: list[str] = Field(description="Their ids")


class CapApplied(BaseModel):
    rule_id: str
    max: int
    per_seconds: int


class Explanation(BaseModel):
    """The decision a call would get, the rules that decided it, and every rule that matched it."""

    tool: str
    user_id: str = Field(description="Whose call was asked about")
    effect: Effect
    reasons: list[str]
    rules: list[RuleMatch] = Field(description="The rules that decided")
    matched: list[RuleMatch] = Field(description="Every rule that matched, the deciding ones included")
    shadow: ShadowDecision | None
    caps: list[CapApplied]
    require_out_of_band: bool


def _match(ref: RuleRef) -> RuleMatch:
    return RuleMatch(id=ref.id, effect=ref.effect, scope=ref.scope, description=ref.description)


def explanation_of(explained: whatif.Explanation) -> Explanation:
    decision: Decision = explained.decision
    shadow = None
    if decision.shadow_effect is not None:
        shadow = ShadowDecision(effect=decision.shadow_effect, rules=[r.id for r in decision.shadow_rules])
    return Explanation(
        tool=explained.tool,
        user_id=explained.user_id,
        effect=decision.effect,
        reasons=list(decision.reasons),
        rules=[_match(r) for r in decision.rules],
        matched=[_match(r) for r in decision.matched],
        shadow=shadow,
        caps=[CapApplied(rule_id=c.rule_id, max=c.max, per_seconds=c.per_seconds) for c in decision.caps],
        require_out_of_band=decision.require_out_of_band,
    )


class RuleChanges(BaseModel):
    """Rules to add, change and remove, as if saved; each is checked as saving would check it."""

    model_config = ConfigDict(extra="forbid")

    add: list[dict[str, Any]] = Field(
        default_factory=list, max_length=100, description="New rules, as POST /rules takes them"
    )
    update: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="By rule id: the fields to change, as PATCH /rules/{id} takes them"
    )
    remove: list[str] = Field(default_factory=list, description="Ids of rules to leave out")


class SimulateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    changes: RuleChanges
    since: AwareDatetime | None = Field(default=None, alias="from", description="Default: a week before to")
    until: AwareDatetime | None = Field(default=None, alias="to", description="Default: now")
    limit: int = Field(default=200, ge=1, le=1000, description="How many changed calls to list; all are counted")


class SimulatedCall(BaseModel):
    audit_id: int
    at: datetime
    user_id: str
    tool: str
    recorded: str = Field(description="The decision the call got when it was made")
    before: Effect = Field(description="What the current rules decide")
    after: Effect = Field(description="What the proposed rules decide")
    after_rules: list[str] = Field(description="The proposed rules that decided it")


class Simulation(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    since: datetime = Field(alias="from")
    until: datetime = Field(alias="to")
    replayed: int
    changed: int
    withheld: int = Field(
        description="Other people's calls not replayed: a rule would decide them on arguments only their owner "
        "may read, so the outcome would reveal them"
    )
    counts: dict[str, int] = Field(description='Changed calls by move, e.g. {"ask->allow": 2}')
    calls: list[SimulatedCall] = Field(description="The changed calls, up to limit")


def proposed(current: list[Rule], changes: RuleChanges, actor: Principal, rulebook: RuleBook) -> list[Rule]:
    """The workspace's rules with ``changes`` made, each changed or new rule checked as saving would check it."""
    by_id = {rule.id: rule for rule in current}
    for index, rule_id in enumerate(changes.remove):
        if rule_id not in by_id:
            raise InvalidInput({f"changes.remove[{index}]": f"no rule {rule_id!r}"})
        if not may_manage(actor, by_id[rule_id]):
            raise Forbidden(f"You may not change rule {rule_id}")
        del by_id[rule_id]
    for rule_id, patch in changes.update.items():
        if rule_id not in by_id:
            raise InvalidInput({f"changes.update.{rule_id}": f"no rule {rule_id!r}"})
        if not may_manage(actor, by_id[rule_id]):
            raise Forbidden(f"You may not change rule {rule_id}")
        try:
            merged = Rule.model_validate(
                {**by_id[rule_id].model_dump(mode="json", by_alias=True, exclude_none=True), **patch}
            )
            rulebook.check(merged)
        except (ValidationError, RuleError) as exc:
            raise refusal(exc, prefix=f"changes.update.{rule_id}.") from None
        by_id[rule_id] = merged
    for index, data in enumerate(changes.add):
        try:
            rule = Rule.model_validate({**data, "id": data.get("id") or f"proposed-{index + 1}"})
        except ValidationError as exc:
            raise refusal(exc, prefix=f"changes.add[{index}].") from None
        rule = rule.model_copy(update={"user_id": actor.user_id if rule.scope == "user" else None})
        if not may_manage(actor, rule):
            raise Forbidden("Only a workspace admin can propose workspace rules")
        try:
            rulebook.check(rule)
        except RuleError as exc:
            raise refusal(exc, prefix=f"changes.add[{index}].") from None
        by_id[rule.id] = rule
    return list(by_id.values())


def _moves(replay: whatif.Replay) -> dict[str, int]:
    return {f"{before.value}->{after.value}": n for (before, after), n in replay.counts.items()}


@dataclass(frozen=True)
class RuleWhatIfs:
    """Explain and simulate, over the rule book, the sealed audit arguments (``box``) and the tools (``registry``)."""

    rulebook: RuleBook
    box: SecretBox
    registry: Registry

    async def explain(self, actor: Principal, question: ExplainRequest) -> whatif.Explanation:
        """The decision a call would get (now, unless ``at``), with every rule that matched it.

        Refused: arguments the tool would not take (``InvalidArguments``), an unknown tool or member
        (``InvalidInput``), and a member asking about someone else's calls (``Forbidden``).
        """
        try:
            return await whatif.explain(
                self.rulebook,
                actor,
                tool=question.tool,
                arguments=question.arguments,
                who=question.user,
                connection_scope=question.connection_scope,
                at=question.at,
                canonicalize=whatif.canonical_form(self.registry, question.tool),
            )
        except whatif.InvalidArguments as exc:
            # The call described could not be made: the gateway would refuse it before any rule, and so does this.
            raise InvalidArguments(exc.fields) from None
        except whatif.InvalidQuestion as exc:
            raise InvalidInput(exc.fields) from None
        except whatif.AskingForOthers as exc:
            raise Forbidden(str(exc)) from None

    async def explain_call(self, actor: Principal, question: ExplainRequest) -> Explanation:
        return explanation_of(await self.explain(actor, question))

    async def replay(
        self, actor: Principal, changes: RuleChanges, *, since: datetime, until: datetime, limit: int
    ) -> whatif.Replay:
        """Recorded calls of [since, until) decided under the current rules and under ``changes``."""
        if since >= until:
            raise InvalidInput({"from": "must be before to"})
        return await whatif.simulate(
            self.rulebook,
            self.box,
            actor,
            propose=lambda current: proposed(current, changes, actor, self.rulebook),
            since=since,
            until=until,
            limit=limit,
        )

    async def simulate(self, actor: Principal, request: SimulateRequest) -> Simulation:
        """Replay recorded calls under the current rules and under the proposed ones; list what would change."""
        until = request.until or utcnow()
        since = request.since or until - DEFAULT_WINDOW
        result = await self.replay(actor, request.changes, since=since, until=until, limit=request.limit)
        return Simulation(
            since=since,
            until=until,
            replayed=result.replayed,
            changed=result.changed,
            withheld=result.withheld,
            counts=_moves(result),
            calls=[
                SimulatedCall(
                    audit_id=call.audit_id,
                    at=call.at,
                    user_id=call.user_id,
                    tool=call.tool,
                    recorded=call.recorded,
                    before=call.before,
                    after=call.after,
                    after_rules=list(call.after_rules),
                )
                for call in result.calls
            ],
        )

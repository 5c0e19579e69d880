"""Auto-approval rules: their shape, their validation against the tool catalog, and decisions.

Pure: no I/O. The server hands in the tool catalog and the rules; this module
returns decisions that can be explained, replayed and benchmarked.

Semantics (DESIGN.md, Rules):

- Within a layer, severity decides regardless of order: deny > ask > allow.
- Workspace (admin) rules bound user rules. When an admin rule matches, a
  user rule can only make the decision stricter. When none does, a user rule
  decides alone (it may widen the default) unless an admin rule has locked
  the tool, in which case it can still only narrow.
- With no rule, the tool's risk decides: read → allow; write, send, delete → ask.
- Shadow rules never change a decision; the decision reports what it would
  have been had they been enforced.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from email.utils import getaddresses
from enum import IntEnum, StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_PATTERN_LENGTH = 200
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Effect(StrEnum):
    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"


class Severity(IntEnum):
    ALLOW = 0
    ASK = 1
    DENY = 2


SEVERITY = {Effect.ALLOW: Severity.ALLOW, Effect.ASK: Severity.ASK, Effect.DENY: Severity.DENY}
DEFAULT_BY_RISK = {"read": Effect.ALLOW, "write": Effect.ASK, "send": Effect.ASK, "delete": Effect.ASK}

Op = Literal[
    "eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "matches", "contains", "domain_in", "max_length", "exists"
]
NUMERIC_OPS = {"lt", "lte", "gt", "gte"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Condition(Strict):
    """A test on one argument, addressed by a dotted path (``to``, ``deal.amount``)."""

    arg: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
    op: Op
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Condition:
        op, value = self.op, self.value
        if op in ("in", "not_in") and (not isinstance(value, list) or not value):
            raise ValueError(f"value: {op} needs a non-empty list")
        if op in NUMERIC_OPS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"value: {op} needs a number")
        if op == "matches":
            if not isinstance(value, str):
                raise ValueError("value: matches needs a regular expression")
            if len(value) > MAX_PATTERN_LENGTH:
                raise ValueError(f"value: patterns are limited to {MAX_PATTERN_LENGTH} characters")
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"value: invalid regular expression: {exc}") from None
        if op == "domain_in":
            if not isinstance(value, list) or not value:
                raise ValueError("value: domain_in needs a non-empty list of domains")
            for domain in value:
                if not isinstance(domain, str) or not re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}", domain):
                    raise ValueError(f"value: {domain!r} is not a domain")
        if op == "max_length" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError("value: max_length needs a whole number of 0 or more")
        if op == "exists" and not isinstance(value, bool):
            raise ValueError("value: exists needs true or false")
        if op == "contains" and value is None:
            raise ValueError("value: contains needs a value")
        return self


class HourWindow(Strict):
    start: time = Field(alias="from")
    end: time = Field(alias="to")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _not_empty(self) -> HourWindow:
        if self.start == self.end:
            raise ValueError("from and to must differ")
        return self


class RuleContext(Strict):
    """Conditions on the call's circumstances rather than its arguments."""

    roles: list[Literal["owner", "admin", "member"]] | None = Field(default=None, min_length=1)
    connection_scope: Literal["workspace", "personal"] | None = None
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = Field(default=None, min_length=1)
    hours: HourWindow | None = None


class Cap(Strict):
    max: int = Field(ge=1, le=1_000_000)
    per_seconds: int = Field(ge=1, le=366 * 86400)


class Rule(Strict):
    """A rule as stored and as shown over the API."""

    id: str = ""
    effect: Effect
    scope: Literal["workspace", "user"]
    app: str | None = Field(default=None, max_length=64)
    tool: str = Field(default="*", min_length=1, max_length=128, pattern=r"^[a-z0-9_*?\[\]!-]+$")
    risk: Literal["read", "write", "send", "delete"] | None = None
    conditions: list[Condition] = Field(default_factory=list, max_length=20)
    context: RuleContext = Field(default_factory=RuleContext)
    cap: Cap | None = None
    expires_at: datetime | None = None
    mode: Literal["enforce", "shadow"] = "enforce"
    locked: bool = False
    require_out_of_band: bool = False
    admin_may_approve: bool = False
    description: str = Field(default="", max_length=500)
    user_id: str | None = None

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("give a time zone, e.g. 2026-12-01T00:00:00Z")
        return value

    @model_validator(mode="after")
    def _scope_rules(self) -> Rule:
        if self.cap is not None and self.effect is not Effect.ALLOW:
            raise ValueError("cap: only an allow rule can carry a cap")
        if self.scope == "user":
            for flag in ("locked", "require_out_of_band", "admin_may_approve"):
                if getattr(self, flag):
                    raise ValueError(f"{flag}: only a workspace rule can set it")
        for flag in ("require_out_of_band", "admin_may_approve"):
            if getattr(self, flag) and self.effect is not Effect.ASK:
                raise ValueError(f"{flag}: only an ask rule can set it, since only asking involves an approver")
        return self


@dataclass(frozen=True)
class ToolInfo:
    """What the rules need to know about a tool, from its manifest."""

    app: str
    risk: str
    input_schema: Mapping[str, Any]


Catalog = Mapping[str, ToolInfo]


class RuleError(ValueError):
    """A rule that cannot be saved; ``fields`` maps each bad field to its problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in fields.items()))


def _schema_at(schema: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The JSON Schema of the argument at ``path``, looking through arrays; None if there is none."""
    node: Mapping[str, Any] | None = schema
    for part in path.split("."):
        while node is not None and node.get("type") == "array":
            node = node.get("items")
        if node is None:
            return None
        node = node.get("properties", {}).get(part)
    return node


def _types_of(schema: Mapping[str, Any]) -> set[str]:
    declared = schema.get("type")
    if isinstance(declared, list):
        return set(declared)
    if isinstance(declared, str):
        return {declared}
    if "enum" in schema:
        return {type(v).__name__.replace("str", "string").replace("int", "integer") for v in schema["enum"]}
    return set()


_OP_TYPES: dict[str, set[str]] = {
    "lt": {"integer", "number"},
    "lte": {"integer", "number"},
    "gt": {"integer", "number"},
    "gte": {"integer", "number"},
    "matches": {"string", "array"},
    "domain_in": {"string", "array"},
    "max_length": {"string", "array"},
    "contains": {"string", "array"},
}


def matched_tools(rule: Rule, catalog: Catalog) -> list[str]:
    """The catalog's tools that the rule's app, tool glob and risk select."""
    return sorted(
        name
        for name, info in catalog.items()
        if (rule.app is None or info.app == rule.app)
        and fnmatch.fnmatchcase(name, rule.tool)
        and (rule.risk is None or info.risk == rule.risk)
    )


def validate(rule: Rule, catalog: Catalog, *, now: datetime | None = None) -> list[str]:
    """Check a rule against the tools it names; raise RuleError naming each bad field.

    Returns the tools the rule applies to. A rule is never accepted if any
    part of it could silently never apply.
    """
    problems: dict[str, str] = {}
    apps = {info.app for info in catalog.values()}
    if rule.app is not None and rule.app not in apps:
        problems["app"] = f"unknown app {rule.app!r}"
        raise RuleError(problems)
    in_app = [n for n, info in catalog.items() if rule.app is None or info.app == rule.app]
    by_glob = [n for n in in_app if fnmatch.fnmatchcase(n, rule.tool)]
    if not by_glob:
        where = f"of app {rule.app!r}" if rule.app else "of any app"
        problems["tool"] = f"{rule.tool!r} matches no tool {where}"
        raise RuleError(problems)
    tools = matched_tools(rule, catalog)
    if not tools:
        problems["risk"] = f"none of the tools {rule.tool!r} matches has risk {rule.risk!r}"
        raise RuleError(problems)
    for index, condition in enumerate(rule.conditions):
        for name in tools:
            schema = _schema_at(catalog[name].input_schema, condition.arg)
            if schema is None:
                problems[f"conditions[{index}].arg"] = f"{condition.arg!r} is not an argument of {name}"
                break
            wanted = _OP_TYPES.get(condition.op)
            types = _types_of(schema)
            if wanted and types and not (types & wanted):
                problems[f"conditions[{index}].op"] = (
                    f"{condition.op} does not apply to {condition.arg!r}, which is {' or '.join(sorted(types))}"
                    f" in {name}"
                )
                break
    if rule.expires_at is not None and now is not None and rule.expires_at <= now:
        problems["expires_at"] = "already past"
    if problems:
        raise RuleError(problems)
    return tools


# Evaluation. Everything below runs on the decision path, so rules are
# compiled once into closures and indexes, and a decision touches only the
# rules filed under its tool.

_MISSING = object()


def _getter(path: str) -> Callable[[Any], Any]:
    parts = tuple(path.split("."))

    def get(arguments: Any) -> Any:
        node = arguments
        for part in parts:
            if isinstance(node, dict):
                node = node.get(part, _MISSING)
            elif isinstance(node, list):
                node = [item.get(part, _MISSING) if isinstance(item, dict) else _MISSING for item in node]
                node = [item for item in node if item is not _MISSING] or _MISSING
            else:
                return _MISSING
            if node is _MISSING:
                return _MISSING
        return node

    return get


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    # JSON true is not 1: compare booleans by identity, everything else by value.
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _every(value: Any, test: Callable[[Any], bool]) -> bool:
    if isinstance(value, list):
        return bool(value) and all(test(item) for item in value)
    return test(value)


def _addresses(value: Any) -> list[str] | None:
    texts = value if isinstance(value, list) else [value]
    if not all(isinstance(text, str) for text in texts):
        return None
    found = [address for _, address in getaddresses(texts) if address]
    return found or None


def _test(condition: Condition) -> Callable[[Any], bool]:
    op, expected = condition.op, condition.value
    if op == "eq":
        return lambda v: _same(v, expected)
    if op == "ne":
        return lambda v: not _same(v, expected)
    if op == "in":
        return lambda v: _every(v, lambda x: any(_same(x, e) for e in expected))
    if op == "not_in":
        members = expected

        def not_in(v: Any) -> bool:
            values = v if isinstance(v, list) else [v]
            return not any(_same(x, e) for x in values for e in members)

        return not_in
    if op in NUMERIC_OPS:
        compare = {
            "lt": lambda a: a < expected,
            "lte": lambda a: a <= expected,
            "gt": lambda a: a > expected,
            "gte": lambda a: a >= expected,
        }[op]
        return lambda v: _is_number(v) and compare(v)
    if op == "matches":
        pattern = re.compile(expected)
        return lambda v: _every(v, lambda x: isinstance(x, str) and pattern.fullmatch(x) is not None)
    if op == "contains":
        return lambda v: (
            (isinstance(v, str) and isinstance(expected, str) and expected in v)
            or (isinstance(v, list) and any(_same(x, expected) for x in v))
        )
    if op == "domain_in":
        domains = {d.lower() for d in expected}

        def domain_in(v: Any) -> bool:
            addresses = _addresses(v)
            return addresses is not None and all("@" in a and a.rsplit("@", 1)[1].lower() in domains for a in addresses)

        return domain_in
    if op == "max_length":
        return lambda v: isinstance(v, str | list) and len(v) <= expected
    raise AssertionError(op)


def _compile_condition(condition: Condition) -> Callable[[dict[str, Any]], bool]:
    if "." in condition.arg:
        get = _getter(condition.arg)
    else:
        # Most conditions name a top-level argument: one dict lookup, no path walk.
        name = condition.arg

        def get(arguments: Any) -> Any:
            return arguments.get(name, _MISSING)

    if condition.op == "exists":
        wanted = condition.value
        return lambda arguments: (get(arguments) is not _MISSING) is wanted
    test = _test(condition)

    def check(arguments: dict[str, Any]) -> bool:
        value = get(arguments)
        return value is not _MISSING and test(value)

    return check


@dataclass(frozen=True)
class CallFacts:
    """Everything a decision may depend on, as plain data."""

    workspace_id: str
    user_id: str
    role: str
    app: str
    tool: str
    risk: str
    connection_scope: str
    arguments: dict[str, Any]
    now: datetime
    timezone: str = "UTC"


def _context_check(context: RuleContext) -> Callable[[CallFacts], bool] | None:
    checks: list[Callable[[CallFacts], bool]] = []
    if context.roles is not None:
        roles = frozenset(context.roles)
        checks.append(lambda call: call.role in roles)
    if context.connection_scope is not None:
        scope = context.connection_scope
        checks.append(lambda call: call.connection_scope == scope)
    if context.weekdays is not None:
        days = frozenset(WEEKDAYS.index(day) for day in context.weekdays)
        checks.append(lambda call: call.now.astimezone(ZoneInfo(call.timezone)).weekday() in days)
    if context.hours is not None:
        start, end = context.hours.start, context.hours.end

        def within(call: CallFacts) -> bool:
            local = call.now.astimezone(ZoneInfo(call.timezone)).time()
            return start <= local < end if start < end else (local >= start or local < end)

        checks.append(within)
    if not checks:
        return None
    return lambda call: all(check(call) for check in checks)


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A rule as a decision reports it."""

    id: str
    effect: Effect
    scope: str
    description: str


@dataclass(slots=True)
class CompiledRule:
    """A rule ready for the decision path: plain ints and closures, nothing to look up."""

    rule: Rule
    ref: RuleRef
    severity: int
    admin: bool
    shadow: bool
    locks: bool
    risk: str | None
    expires: float | None
    conditions: tuple[Callable[[dict[str, Any]], bool], ...]
    context: Callable[[CallFacts], bool] | None
    reason: str
    cap: CapCharge | None


def compile_rule(rule: Rule) -> CompiledRule:
    ref = RuleRef(rule.id, rule.effect, rule.scope, rule.description)
    return CompiledRule(
        rule=rule,
        ref=ref,
        severity=int(SEVERITY[rule.effect]),
        admin=rule.scope == "workspace",
        shadow=rule.mode == "shadow",
        locks=rule.scope == "workspace" and rule.locked,
        risk=rule.risk,
        expires=rule.expires_at.timestamp() if rule.expires_at else None,
        conditions=tuple(_compile_condition(c) for c in rule.conditions),
        context=_context_check(rule.context),
        reason=_reason(ref),
        cap=CapCharge(rule.id, rule.cap.max, rule.cap.per_seconds) if rule.cap else None,
    )


@dataclass(frozen=True)
class CapCharge:
    """An auto-approval that counts against a rule's cap."""

    rule_id: str
    max: int
    per_seconds: int


@dataclass(frozen=True, slots=True)
class Decision:
    effect: Effect
    reasons: tuple[str, ...]
    rules: tuple[RuleRef, ...] = ()
    matched: tuple[RuleRef, ...] = ()
    shadow_effect: Effect | None = None
    shadow_rules: tuple[RuleRef, ...] = ()
    caps: tuple[CapCharge, ...] = ()
    require_out_of_band: bool = False
    admin_may_approve: bool = False

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(ref.id for ref in self.rules)


NONE = -1
EFFECTS = (Effect.ALLOW, Effect.ASK, Effect.DENY)
DEFAULT_SEVERITY = {risk: int(SEVERITY[effect]) for risk, effect in DEFAULT_BY_RISK.items()}
NO_MATCH_REASON = {
    risk: f"no rule matched; default for {risk} tools: {effect.value}" for risk, effect in DEFAULT_BY_RISK.items()
}
DEFAULT_REASON = {risk: f"default for {risk} tools: {effect.value}" for risk, effect in DEFAULT_BY_RISK.items()}


def _combine(admin: int, user: int, locked: bool, default: int) -> int:
    if admin != NONE:
        return admin if admin > user else user
    if user == NONE:
        return default
    if locked:
        return default if default > user else user
    return user


def _reason(ref: RuleRef) -> str:
    label = ref.description or f"{ref.scope} rule {ref.id}"
    return f"{label} ({ref.effect.value})"


def _applies(rule: CompiledRule, call: CallFacts, arguments: dict[str, Any]) -> bool:
    if rule.risk is not None and rule.risk != call.risk:
        return False
    if rule.context is not None and not rule.context(call):
        return False
    return all(check(arguments) for check in rule.conditions)


def decide_among(candidates: Iterable[CompiledRule], call: CallFacts) -> Decision:
    """Decide a call from the rules filed under its tool (for this workspace and this user).

    This is the hot path: it keeps its state in local ints and builds the
    decision once at the end.
    """
    at = call.now.timestamp()
    risk = call.risk
    arguments = call.arguments
    default = DEFAULT_SEVERITY.get(risk, 1)
    admin = user = shadow_admin = shadow_user = NONE
    locked = shadow_locked = False
    matched: list[CompiledRule] = []
    for rule in candidates:
        expires = rule.expires
        if expires is not None and at >= expires:
            continue
        if rule.locks and (rule.risk is None or rule.risk == risk):
            # A lock covers the tool whatever the rule's conditions say.
            shadow_locked = True
            if not rule.shadow:
                locked = True
        if not _applies(rule, call, arguments):
            continue
        matched.append(rule)
        severity = rule.severity
        if rule.admin:
            if severity > shadow_admin:
                shadow_admin = severity
            if not rule.shadow and severity > admin:
                admin = severity
        else:
            if severity > shadow_user:
                shadow_user = severity
            if not rule.shadow and severity > user:
                user = severity
    final = _combine(admin, user, locked, default)
    if not matched:
        return Decision(EFFECTS[final], (NO_MATCH_REASON.get(risk, "no rule matched"),))
    if admin == final:
        deciding = [r for r in matched if r.admin and not r.shadow and r.severity == final]
    elif user == final:
        deciding = [r for r in matched if not r.admin and not r.shadow and r.severity == final]
    else:
        deciding = []
    shadow_final = _combine(shadow_admin, shadow_user, shadow_locked, default)
    enforced_admin = [r for r in matched if r.admin and not r.shadow]
    return _decision(final, risk, deciding, matched, shadow_final, enforced_admin)


def _decision(
    final: int,
    risk: str,
    deciding: list[CompiledRule],
    matched: list[CompiledRule],
    shadow_final: int,
    enforced_admin: list[CompiledRule],
) -> Decision:
    """The decision once its severity and rules are known (``matched`` is non-empty)."""
    shadow_effect = None
    shadow_rules: tuple[RuleRef, ...] = ()
    if shadow_final != final:
        shadow_effect = EFFECTS[shadow_final]
        shadow_rules = tuple(r.ref for r in matched if r.shadow and r.severity == shadow_final)
    asks = final == 1
    return Decision(
        effect=EFFECTS[final],
        reasons=tuple(r.reason for r in deciding) if deciding else (DEFAULT_REASON.get(risk, "default"),),
        rules=tuple(r.ref for r in deciding),
        matched=tuple(r.ref for r in matched),
        shadow_effect=shadow_effect,
        shadow_rules=shadow_rules,
        caps=tuple(r.cap for r in deciding if r.cap is not None) if final == 0 else (),
        # Only ask rules carry these flags (validation refuses them elsewhere).
        require_out_of_band=asks and any(r.rule.require_out_of_band for r in enforced_admin),
        admin_may_approve=asks and any(r.rule.admin_may_approve for r in enforced_admin),
    )


@dataclass(slots=True)
class _Filed:
    """The rules filed under one tool (admin) or one user's tool (user), grouped for the fast path."""

    every: list[CompiledRule] = field(default_factory=list)
    by_severity: tuple[list[CompiledRule], list[CompiledRule], list[CompiledRule]] = field(
        default_factory=lambda: ([], [], [])
    )
    shadow: list[CompiledRule] = field(default_factory=list)
    locks: list[CompiledRule] = field(default_factory=list)

    def add(self, rule: CompiledRule) -> None:
        self.every.append(rule)
        (self.shadow if rule.shadow else self.by_severity[rule.severity]).append(rule)
        if rule.locks:
            self.locks.append(rule)


_EMPTY = _Filed()
FEW = 6


def _hits(rules: list[CompiledRule], call: CallFacts, at: float) -> list[CompiledRule]:
    arguments = call.arguments
    return [r for r in rules if (r.expires is None or at < r.expires) and _applies(r, call, arguments)]


def _strongest(filed: _Filed, call: CallFacts, at: float, above: int) -> tuple[int, list[CompiledRule]]:
    """The highest severity above ``above`` at which an enforced rule applies, with the rules applying there."""
    for severity in (2, 1, 0):
        if severity <= above:
            break
        group = filed.by_severity[severity]
        if group:
            hits = _hits(group, call, at)
            if hits:
                return severity, hits
    return NONE, []


def _locked(filed: _Filed, call: CallFacts, at: float, *, shadow: bool) -> bool:
    return any(
        (r.expires is None or at < r.expires) and (r.risk is None or r.risk == call.risk) and (shadow or not r.shadow)
        for r in filed.locks
    )


@dataclass
class RuleIndex:
    """One workspace's rules, filed by the tools they apply to.

    Globs are expanded against the catalog when the index is built, so a
    decision looks up its tool and evaluates only the rules filed there.
    Within that, enforced rules are grouped by severity and tried strongest
    first: once an admin rule denies, nothing below it can change the answer.
    """

    admin: dict[str, _Filed] = field(default_factory=dict)
    user: dict[tuple[str, str], _Filed] = field(default_factory=dict)
    size: int = 0

    @classmethod
    def build(cls, rules: Iterable[Rule], catalog: Catalog) -> RuleIndex:
        index = cls()
        for rule in rules:
            compiled = compile_rule(rule)
            index.size += 1
            for tool in matched_tools(rule, catalog):
                if compiled.admin:
                    index.admin.setdefault(tool, _Filed()).add(compiled)
                elif rule.user_id is not None:
                    index.user.setdefault((rule.user_id, tool), _Filed()).add(compiled)
        return index

    def candidates(self, call: CallFacts) -> list[CompiledRule]:
        return self.admin.get(call.tool, _EMPTY).every + self.user.get((call.user_id, call.tool), _EMPTY).every

    def explain(self, call: CallFacts) -> Decision:
        """The decision with every rule that matched, for people asking why."""
        return decide_among(self.candidates(call), call)

    def decide(self, call: CallFacts) -> Decision:
        """The decision, evaluating only the rules that can still change it (``matched`` may hold only those)."""
        at = call.now.timestamp()
        risk = call.risk
        admin_rules = self.admin.get(call.tool, _EMPTY)
        user_rules = self.user.get((call.user_id, call.tool), _EMPTY)
        if len(admin_rules.every) + len(user_rules.every) <= FEW:
            # A handful of rules is quicker to scan in one pass than to visit group by group.
            return decide_among(admin_rules.every + user_rules.every, call)
        default = DEFAULT_SEVERITY.get(risk, 1)
        admin, admin_hits = _strongest(admin_rules, call, at, NONE)
        # A user rule matters only where it is stricter than the admin layer (or, with no admin rule, at all).
        user, user_hits = _strongest(user_rules, call, at, admin)
        locked = admin == NONE and user != NONE and _locked(admin_rules, call, at, shadow=False)
        final = _combine(admin, user, locked, default)
        deciding = admin_hits if admin == final else user_hits if user == final else []
        shadow_final = final
        shadow_hits: list[CompiledRule] = []
        if final != 2 and (admin_rules.shadow or user_rules.shadow):
            shadow_hits = _hits(admin_rules.shadow, call, at) + _hits(user_rules.shadow, call, at)
            # Even with no shadow rule applying, a shadow lock still sets user rules aside in the shadow result.
            shadow_admin = max([admin, *(r.severity for r in shadow_hits if r.admin)])
            shadow_user = max([user, *(r.severity for r in shadow_hits if not r.admin)])
            shadow_locked = shadow_admin == NONE and shadow_user != NONE and _locked(admin_rules, call, at, shadow=True)
            shadow_final = _combine(shadow_admin, shadow_user, shadow_locked, default)
        matched = admin_hits + user_hits + shadow_hits
        if not matched:
            return Decision(EFFECTS[final], (NO_MATCH_REASON.get(risk, "no rule matched"),))
        # When the admin layer asks, its ask rules (the only ones with approver flags) are admin_hits.
        return _decision(final, risk, deciding, matched, shadow_final, admin_hits if admin == 1 else [])


class LinearRules:
    """The same decisions from a plain scan of every rule: the reference the index must agree with."""

    def __init__(self, rules: Iterable[Rule], catalog: Catalog) -> None:
        self.catalog = catalog
        self.rules = [compile_rule(rule) for rule in rules]

    def decide(self, call: CallFacts) -> Decision:
        app = self.catalog[call.tool].app
        candidates = [
            compiled
            for compiled in self.rules
            if (compiled.admin or compiled.rule.user_id == call.user_id)
            and (compiled.rule.app is None or compiled.rule.app == app)
            and fnmatch.fnmatchcase(call.tool, compiled.rule.tool)
        ]
        return decide_among(candidates, call)

"""Auto-approval rules: their shape, their validation against the tool catalog, and decisions.

Pure: no I/O. The server hands in the tool catalog and the rules; this module
returns decisions that can be explained, replayed and benchmarked.

Semantics (the README's Rules section):

- Within a layer, severity decides regardless of order: deny > ask > allow.
- Workspace (admin) rules bound user rules. When an admin rule matches, a
  user rule can only make the decision stricter. When none does, a user rule
  decides alone (it may widen the default) unless an admin rule has locked
  the tool, in which case it can still only narrow.
- With no rule, the tool's risk decides: read → allow; write, send, delete → ask.
- Shadow rules never change a decision; the decision reports what it would
  have been had they been enforced.
- Personal connections answer to their owner: on a personal connection's call
  a workspace allow rule is set aside (as if absent), while workspace ask,
  deny and locks still bound the user layer.
- A condition that cannot be decided safely (a string too long to test or
  no string at all where matches needs one, a value that is not strictly
  one mailbox where domain_in needs one) is
  *undecidable*. It never lets an allow rule apply and always lets an ask or
  deny rule apply, so whatever the assistant sends fails safe.

The assistant is the adversary (SECURITY.md): every argument may be crafted,
so no test here recurses or takes more than linear time in its input, and
regular expressions run on RE2.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo

import idna
import re2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from store.errors import CompanionError

MAX_PATTERN_LENGTH = 200
# A string longer than this is not matched against a pattern: the condition is undecidable.
MAX_TESTED_LENGTH = 10_000
# RFC 5321's limits: a longer address or part cannot be delivered, so it is not one valid mailbox.
MAX_ADDRESS_LENGTH = 254
MAX_LOCAL_LENGTH = 64
MAX_DOMAIN_LENGTH = 253
RECIPIENTS = "@recipients"
RECIPIENT_OPS = ("domain_in", "in", "not_in", "matches", "max_length", "exists")
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
    "eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "matches", "contains", "domain_in", "max_length", "exists",
    "keys_in",
]  # fmt: skip
NUMERIC_OPS = {"lt", "lte", "gt", "gte"}


# Patterns and addresses. Both are checked at save and tested on the decision
# path against the assistant's input, so both are linear and bounded.

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.never_capture = True  # only "does it match" matters: no groups to track
_RE2_OPTIONS.log_errors = False  # a bad pattern is the saver's error, reported to them, not to stderr


class _Pattern(Protocol):
    """What is used of a pattern RE2 compiled (the re2 module has no type hints)."""

    def fullmatch(self, text: str) -> object | None: ...


def _regex(pattern: str) -> _Pattern:
    """The pattern compiled by RE2, which matches in linear time (re2 caches compilations); raise ValueError."""
    try:
        compiled: _Pattern = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"value: invalid regular expression: {detail}"
            " (patterns run in linear time, so backreferences and lookaround are not available)"
        ) from None
    return compiled


# Python's re is fine here: fixed patterns with no ambiguity, on input already cut to RFC lengths.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _host_name(ascii_domain: str) -> bool:
    """Whether a lowercase ASCII domain is LDH labels with a non-numeric top level (so no IP address)."""
    labels = ascii_domain.split(".")
    return (
        len(labels) >= 2
        and len(ascii_domain) <= MAX_DOMAIN_LENGTH
        and not labels[-1].isdigit()
        and all(_LDH_LABEL.fullmatch(label) for label in labels)
    )


def ascii_domain(domain: str) -> str | None:
    """The domain's lowercase ASCII form (IDN labels as punycode), or None if it is not strictly a host name.

    Rule values and recipients go through this same function, so the two are
    compared in one form. IDNA 2008 refuses invisible and look-alike-prone
    code points, and no Unicode case mapping is applied: a domain that needs
    one is not accepted.
    """
    # Checked before the cache, so no long string is ever kept as a key.
    return _ascii_domain(domain) if 0 < len(domain) <= MAX_DOMAIN_LENGTH else None


@functools.lru_cache(maxsize=4096)
def _ascii_domain(domain: str) -> str | None:
    """``ascii_domain`` for a domain of a possible length; cached because a workspace mails few domains."""
    lowered = domain.translate(_ASCII_LOWER)
    if lowered.isascii() and "xn--" not in lowered:
        return lowered if _host_name(lowered) else None
    # Named rather than left to IDNA: control, format (zero-width), private and separator characters.
    if any(unicodedata.category(char)[0] in "CZ" for char in lowered):
        return None
    try:
        encoded = idna.encode(lowered).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None
    return encoded if _host_name(encoded) else None


def mailbox_domain(address: Any) -> str | None:
    """The ASCII domain of exactly one strictly valid mailbox ``local@domain``; None for anything else.

    No display names, comments, quotes, angle brackets or whitespace: what is
    tested must be exactly what the mail goes to, and parsing those forms is
    where recursive parsers and ambiguity live.
    """
    if not isinstance(address, str) or len(address) > MAX_ADDRESS_LENGTH or address.count("@") != 1:
        return None
    local, domain = address.split("@")
    if len(local) > MAX_LOCAL_LENGTH or not _DOT_ATOM.fullmatch(local):
        return None
    return ascii_domain(domain)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Condition(Strict):
    """A test on one argument, addressed by a dotted path (``to``, ``deal.amount``), or on all of a call's
    recipients at once (``@recipients``: every egress argument the tool's manifest declares)."""

    arg: str = Field(
        min_length=1,
        max_length=200,
        pattern=r"^(@recipients|[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)$",
    )
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
            _regex(value)
        if op == "domain_in":
            if not isinstance(value, list) or not value:
                raise ValueError("value: domain_in needs a non-empty list of domains")
            for domain in value:
                if not isinstance(domain, str) or ascii_domain(domain) is None:
                    raise ValueError(f"value: {domain!r} is not a domain")
        if op == "keys_in" and (
            not isinstance(value, list) or not value or not all(isinstance(key, str) for key in value)
        ):
            raise ValueError("value: keys_in needs a non-empty list of field names")
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
    # "Remember this" binds a rule to the connection it was approved on, so it opens no other mailbox.
    connection_ids: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None, min_length=1, max_length=20
    )
    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = Field(default=None, min_length=1)
    hours: HourWindow | None = None


class Cap(Strict):
    max: int = Field(ge=1, le=1_000_000)
    per_seconds: int = Field(ge=1, le=366 * 86400)


#: The channels an escalation can tell approvers by, as ``server.services.notices`` names its channels.
NOTICE_CHANNELS = ("email", "slack", "push")
NoticeChannel = Literal["email", "slack", "push"]

# A person named as an approver, by the e-mail address they sign in with (resolved to a member when a call asks).
_APPROVER_EMAIL = r"^[^@\s]{1,64}@[^@\s]{1,253}$"


class Approvers(Strict):
    """Who must approve a call an admin ask rule covers: named people, the workspace's admins, or both; any one of
    them (``count`` 1), or ``count`` different ones."""

    people: list[Annotated[str, Field(min_length=3, max_length=254, pattern=_APPROVER_EMAIL)]] = Field(
        default_factory=list, max_length=50
    )
    admins: bool = False
    count: int = Field(default=1, ge=1, le=50)

    @field_validator("people")
    @classmethod
    def _one_form(cls, people: list[str]) -> list[str]:
        return list(dict.fromkeys(person.strip().lower() for person in people))

    @model_validator(mode="after")
    def _someone(self) -> Approvers:
        if not self.people and not self.admins:
            raise ValueError("people: name at least one approver, or set admins")
        if not self.admins and self.count > len(self.people):
            raise ValueError(f"count: {self.count} approvals cannot come from {len(self.people)} people")
        return self


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
    # Many approvers (admin ask rules only): who decides, whether the person who asked may approve their own call,
    # and what happens if no one has decided after a while: the workspace's admins are added, or the approvers
    # are told again by other channels than the ones they chose, or both.
    approvers: Approvers | None = None
    no_self_approval: bool = False
    escalate_after_minutes: int | None = Field(default=None, ge=1, le=30 * 24 * 60)
    escalate_to: Literal["admins"] | None = None
    escalate_by: list[NoticeChannel] = Field(default_factory=list, max_length=len(NOTICE_CHANNELS))
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
            for flag in ("locked", *APPROVER_FIELDS):
                if getattr(self, flag):
                    raise ValueError(f"{flag}: only a workspace rule can set it")
        for flag in APPROVER_FIELDS:
            if getattr(self, flag) and self.effect is not Effect.ASK:
                raise ValueError(f"{flag}: only an ask rule can set it, since only asking involves an approver")
        if len(set(self.escalate_by)) != len(self.escalate_by):
            raise ValueError("escalate_by: name each channel once")
        escalating = self.escalate_to is not None or bool(self.escalate_by)
        if self.escalate_after_minutes is None and escalating:
            raise ValueError("escalate_after_minutes: escalating needs a time to escalate after")
        if self.escalate_after_minutes is not None and not escalating:
            raise ValueError("escalate_to: escalating needs escalate_to (admins), escalate_by (channels), or both")
        if self.no_self_approval and self.approvers is None and not self.admin_may_approve:
            raise ValueError("no_self_approval: name approvers (or let admins approve), or no one else could approve")
        return self


#: The fields of a rule that say who approves; only a workspace ask rule sets them.
APPROVER_FIELDS = (
    "require_out_of_band", "admin_may_approve", "approvers", "no_self_approval", "escalate_after_minutes",
    "escalate_to", "escalate_by",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ApproverDemand:
    """Who must approve a call, as the admin ask rules that decided it say: e-mail addresses (resolved to members
    when the call asks), whether the workspace's admins may approve, how many approvals it takes, whether the
    person who asked may approve it, and after how long it escalates: the admins added (``escalate_to_admins``),
    the approvers told by these channels too (``escalate_by``)."""

    people: tuple[str, ...] = ()
    admins: bool = False
    count: int = 1
    no_self_approval: bool = False
    escalate_after_minutes: int | None = None
    escalate_to_admins: bool = False
    escalate_by: tuple[str, ...] = ()
    # Set on a personal connection's call: its owner must approve it too, whoever else a rule names.
    owner: bool = False

    @property
    def names_approvers(self) -> bool:
        return bool(self.people) or self.admins


def demand_of(rules: Iterable[Rule]) -> ApproverDemand | None:
    """What several admin ask rules demand together: each one's people and admins may approve, it takes the
    largest count any of them asks for, self-approval is refused if any refuses it, and the approval escalates at
    the earliest time any asks, doing all that any of them asks then. None when no rule says anything about
    approvers."""
    people: list[str] = []
    admins = no_self = to_admins = False
    count = 1
    escalate: int | None = None
    by: list[str] = []
    said = False
    for rule in rules:
        if rule.approvers is not None:
            said = True
            people.extend(rule.approvers.people)
            admins = admins or rule.approvers.admins
            count = max(count, rule.approvers.count)
        if rule.no_self_approval:
            said = no_self = True
        if rule.escalate_after_minutes is not None:
            said = True
            escalate = min(escalate or rule.escalate_after_minutes, rule.escalate_after_minutes)
            to_admins = to_admins or rule.escalate_to == "admins"
            by.extend(rule.escalate_by)
    if not said:
        return None
    return ApproverDemand(
        tuple(dict.fromkeys(people)), admins, count, no_self, escalate, to_admins, tuple(dict.fromkeys(by))
    )


@dataclass(frozen=True)
class ToolInfo:
    """What the rules need to know about a tool, from its manifest."""

    app: str
    risk: str
    input_schema: Mapping[str, Any]
    # Names of the arguments saying who or where a call sends to; the gateway gathers their values as recipients.
    egress: tuple[str, ...] = ()
    # The tool's canonical form of one value of an argument (ValueError if it has none): rule values are kept in
    # it, so a rule on "#Exec" decides on the "exec" that calls are decided on.
    canonical: Callable[[str, Any], Any] | None = field(default=None, compare=False)


Catalog = Mapping[str, ToolInfo]

# The ops whose values name what an argument holds, and so must be in its canonical form.
_VALUE_OPS = frozenset({"eq", "ne", "in", "not_in", "contains"})


def in_canonical_form(rule: Rule, catalog: Catalog) -> Rule:
    """The rule with its values in the form calls are decided on, for every tool it applies to.

    RuleError names a value a tool cannot take at all, or one that two of its tools would read differently.
    """
    tools = matched_tools(rule, catalog)
    problems: dict[str, str] = {}
    conditions = []
    for index, condition in enumerate(rule.conditions):
        value = condition.value
        if condition.op in _VALUE_OPS:
            try:
                value = _canonical_condition_value(condition, tools, catalog)
            except ValueError as exc:
                problems[f"conditions[{index}].value"] = str(exc)
        conditions.append(condition.model_copy(update={"value": value}))
    if problems:
        raise RuleError(problems)
    return rule.model_copy(update={"conditions": conditions})


def _canonical_condition_value(condition: Condition, tools: list[str], catalog: Catalog) -> Any:
    forms: dict[str, Any] = {}
    for name in tools:
        canonical = catalog[name].canonical
        if canonical is None:
            continue
        try:
            forms[name] = (
                [_one(canonical, condition.arg, item) for item in condition.value]
                if isinstance(condition.value, list)
                else _one(canonical, condition.arg, condition.value)
            )
        except ValueError as exc:
            raise ValueError(f"{name} cannot take {condition.value!r} as {condition.arg}: {exc}") from None
    distinct = {repr(form) for form in forms.values()}
    if len(distinct) > 1:
        raise ValueError(f"{condition.value!r} means different things to {', '.join(sorted(forms))}; split the rule")
    return next(iter(forms.values()), condition.value)


def _one(canonical: Callable[[str, Any], Any], arg: str, value: Any) -> Any:
    return canonical(arg, value) if isinstance(value, str) else value


class RuleError(CompanionError, ValueError):
    """A rule that cannot be saved; ``fields`` maps each bad field to its problem."""

    code = "invalid_request"

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__(
            "; ".join(f"{name}: {problem}" for name, problem in fields.items()), details={"fields": fields}
        )


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
    "keys_in": {"object"},
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
        if condition.arg == RECIPIENTS:
            problems.update(_recipients_problems(index, condition, tools, catalog))
            continue
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


def _recipients_problems(index: int, condition: Condition, tools: list[str], catalog: Catalog) -> dict[str, str]:
    """Why an ``@recipients`` condition could not apply: a tool that sends nowhere, or an op with no meaning on it."""
    for name in tools:
        if not catalog[name].egress:
            return {f"conditions[{index}].arg": f"{name} declares no recipients, so {RECIPIENTS} cannot apply to it"}
    if condition.op not in RECIPIENT_OPS:
        return {
            f"conditions[{index}].op": f"{condition.op} does not apply to {RECIPIENTS}; use one of "
            + ", ".join(RECIPIENT_OPS)
        }
    return {}


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


def recipients_of(egress: tuple[str, ...], arguments: dict[str, Any]) -> tuple[str, ...]:
    """The string values at a tool's egress paths, in order, each once: what ``@recipients`` tests.

    The gateway gathers them from the registered tool (``tools.canonical.recipients``) the same way; this
    copy serves the what-ifs, which see only the catalog.
    """
    found: list[str] = []
    for path in egress:
        value = _getter(path)(arguments)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                found.append(item)
    return tuple(dict.fromkeys(found))


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


def _some(value: Any, test: Callable[[Any], bool]) -> bool:
    if isinstance(value, list):
        return any(test(item) for item in value)
    return test(value)


def _tri_every(value: Any, test: Callable[[Any], bool | None]) -> bool | None:
    """Whether every item passes a test that may be undecidable (None); one undecidable item makes all of it so.

    An empty list passes nothing, as in ``_every``: no recipients is not "only our domain".
    """
    items = value if isinstance(value, list) else (value,)
    if not items:
        return False
    verdict = True
    for item in items:
        passed = test(item)
        if passed is None:
            return None
        verdict = verdict and passed
    return verdict


def _tri_some(value: Any, test: Callable[[Any], bool | None]) -> bool | None:
    """Whether some item passes a test that may be undecidable: one that passes settles it, else one undecidable
    item makes all of it so."""
    items = value if isinstance(value, list) else (value,)
    verdict: bool | None = False
    for item in items:
        passed = test(item)
        if passed:
            return True
        if passed is None:
            verdict = None
    return verdict


# How a condition reads a list (every recipient, every label): an allow rule must hold for every item, and an
# ask or deny rule holds as soon as one item fits, so adding a harmless item never escapes a deny.
_QUANTIFIED_OPS = frozenset({"in", "not_in", "matches", "domain_in", "keys_in"})


def _matches(pattern: str, quantify: Callable[..., bool | None]) -> Callable[[Any], bool | None]:
    regex = _regex(pattern)

    def matches(text: Any) -> bool | None:
        # Not text (an object where a string belongs) or too long to test: a deny on it must still hold.
        if not isinstance(text, str) or len(text) > MAX_TESTED_LENGTH:
            return None
        try:
            return regex.fullmatch(text) is not None
        except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form for RE2 to read
            return None

    return lambda v: quantify(v, matches)


def _domain_in(domains: Iterable[str], quantify: Callable[..., bool | None]) -> Callable[[Any], bool | None]:
    allowed = frozenset(ascii_domain(domain) for domain in domains)

    def in_domains(address: Any) -> bool | None:
        domain = mailbox_domain(address)
        return None if domain is None else domain in allowed

    return lambda v: quantify(v, in_domains)


def _undecidable_test(condition: Condition, effect: Effect) -> Callable[[Any], bool | None] | None:
    """The test for an op whose answer may be undecidable (None), or None for an op that always decides."""
    quantify = _tri_every if effect is Effect.ALLOW else _tri_some
    if condition.op == "matches":
        return _matches(condition.value, quantify)
    if condition.op == "domain_in":
        return _domain_in(condition.value, quantify)
    return None


def _test(condition: Condition, effect: Effect = Effect.ALLOW) -> Callable[[Any], bool]:
    op, expected = condition.op, condition.value
    each = _every if effect is Effect.ALLOW or op not in _QUANTIFIED_OPS else _some
    if op == "eq":
        return lambda v: _same(v, expected)
    if op == "ne":
        return lambda v: not _same(v, expected)
    if op == "in":
        return lambda v: each(v, lambda x: any(_same(x, e) for e in expected))
    if op == "not_in":
        members = expected
        if effect is not Effect.ALLOW:
            # Some item outside the list: "deny anything not to these channels" holds once one is elsewhere.
            return lambda v: _some(v, lambda x: not any(_same(x, e) for e in members))

        def not_in(v: Any) -> bool:
            values = v if isinstance(v, list) else [v]
            return not any(_same(x, e) for x in values for e in members)

        return not_in
    if op in NUMERIC_OPS:
        compare: Callable[[Any], bool] = {
            "lt": lambda a: a < expected,
            "lte": lambda a: a <= expected,
            "gt": lambda a: a > expected,
            "gte": lambda a: a >= expected,
        }[op]
        return lambda v: _is_number(v) and compare(v)
    if op == "contains":
        return lambda v: (
            (isinstance(v, str) and isinstance(expected, str) and expected in v)
            or (isinstance(v, list) and any(_same(x, expected) for x in v))
        )
    if op == "max_length":
        return lambda v: isinstance(v, str | list) and len(v) <= expected
    if op == "keys_in":
        keys = frozenset(expected)
        return lambda v: each(v, lambda x: isinstance(x, dict) and keys.issuperset(x))
    raise AssertionError(op)


def _value_getter(arg: str) -> Callable[[CallFacts], Any]:
    if arg == RECIPIENTS:
        return lambda call: list(call.recipients)
    if "." in arg:
        get = _getter(arg)
        return lambda call: get(call.arguments)
    # Most conditions name a top-level argument: one dict lookup, no path walk.
    return lambda call: call.arguments.get(arg, _MISSING)


def _compile_condition(condition: Condition, effect: Effect) -> Callable[[CallFacts], bool]:
    """The condition as a test of a call. Knowing the rule's effect, an undecidable answer is settled here
    once: it fails an allow rule and holds for an ask or deny rule."""
    if condition.op == "exists":
        wanted = condition.value
        if condition.arg == RECIPIENTS:
            # Recipients are always "there"; existing means there is at least one.
            return lambda call: bool(call.recipients) is wanted
        get_argument = _value_getter(condition.arg)
        return lambda call: (get_argument(call) is not _MISSING) is wanted
    get = _value_getter(condition.arg)
    undecidable = _undecidable_test(condition, effect)
    if undecidable is not None:
        fail_safe = effect is not Effect.ALLOW

        def check_or_fail_safe(call: CallFacts) -> bool:
            value = get(call)
            if value is _MISSING:
                return False
            verdict = undecidable(value)
            return fail_safe if verdict is None else verdict

        return check_or_fail_safe
    test = _test(condition, effect)

    def check(call: CallFacts) -> bool:
        value = get(call)
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
    # The canonical values of the tool's egress arguments (every to, cc, bcc, attendee, channel, URL), in one list.
    recipients: tuple[str, ...] = ()
    connection_id: str | None = None


def _context_check(context: RuleContext) -> Callable[[CallFacts], bool] | None:
    checks: list[Callable[[CallFacts], bool]] = []
    if context.roles is not None:
        roles = frozenset(context.roles)
        checks.append(lambda call: call.role in roles)
    if context.connection_scope is not None:
        scope = context.connection_scope
        checks.append(lambda call: call.connection_scope == scope)
    if context.connection_ids is not None:
        connections = frozenset(context.connection_ids)
        checks.append(lambda call: call.connection_id in connections)
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
    conditions: tuple[Callable[[CallFacts], bool], ...]
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
        conditions=tuple(_compile_condition(c, rule.effect) for c in rule.conditions),
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
    approvers: ApproverDemand | None = None

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


def _set_aside_reasons(rules: list[CompiledRule]) -> tuple[str, ...]:
    return tuple(
        f"{rule.reason} set aside: only the owner's own rules auto-approve calls on a personal connection"
        for rule in rules
    )


def _sets_aside(admin: int, user: int, final: int) -> bool:
    """Whether a workspace allow rule, had it applied, would have changed the decision.

    Only then is it worth finding and naming the allow rules a personal
    connection set aside: an admin allow changes nothing once an admin ask or
    deny applies, and can only lower the result to the user layer's (or allow).
    """
    return admin == NONE and final > max(user, 0)


def _applies(rule: CompiledRule, call: CallFacts) -> bool:
    if rule.risk is not None and rule.risk != call.risk:
        return False
    if rule.context is not None and not rule.context(call):
        return False
    return all(check(call) for check in rule.conditions)


def decide_among(candidates: Iterable[CompiledRule], call: CallFacts) -> Decision:
    """Decide a call from the rules filed under its tool (for this workspace and this user).

    This is the hot path: it keeps its state in local ints and builds the
    decision once at the end.
    """
    at = call.now.timestamp()
    risk = call.risk
    personal = call.connection_scope == "personal"
    default = DEFAULT_SEVERITY.get(risk, 1)
    admin = user = shadow_admin = shadow_user = NONE
    locked = shadow_locked = False
    matched: list[CompiledRule] = []
    passed_over: list[CompiledRule] = []
    for rule in candidates:
        expires = rule.expires
        if expires is not None and at >= expires:
            continue
        if rule.locks and (rule.risk is None or rule.risk == risk):
            # A lock covers the tool whatever the rule's conditions say.
            shadow_locked = True
            if not rule.shadow:
                locked = True
        if personal and rule.admin and rule.severity == 0:
            # Personal connections answer to their owner: a workspace allow is as if absent (its lock stays).
            if not rule.shadow:
                passed_over.append(rule)
            continue
        if not _applies(rule, call):
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
    set_aside = [r for r in passed_over if _applies(r, call)] if passed_over and _sets_aside(admin, user, final) else []
    if not matched:
        return _no_match(final, risk, set_aside)
    if admin == final:
        deciding = [r for r in matched if r.admin and not r.shadow and r.severity == final]
    elif user == final:
        deciding = [r for r in matched if not r.admin and not r.shadow and r.severity == final]
    else:
        deciding = []
    shadow_final = _combine(shadow_admin, shadow_user, shadow_locked, default)
    enforced_admin = [r for r in matched if r.admin and not r.shadow]
    return _decision(final, risk, deciding, matched, shadow_final, enforced_admin, set_aside)


def _no_match(final: int, risk: str, set_aside: list[CompiledRule]) -> Decision:
    reasons = (NO_MATCH_REASON.get(risk, "no rule matched"),)
    return Decision(EFFECTS[final], reasons + _set_aside_reasons(set_aside) if set_aside else reasons)


def _decision(
    final: int,
    risk: str,
    deciding: list[CompiledRule],
    matched: list[CompiledRule],
    shadow_final: int,
    enforced_admin: list[CompiledRule],
    set_aside: list[CompiledRule],
) -> Decision:
    """The decision once its severity and rules are known (``matched`` is non-empty)."""
    shadow_effect = None
    shadow_rules: tuple[RuleRef, ...] = ()
    if shadow_final != final:
        shadow_effect = EFFECTS[shadow_final]
        shadow_rules = tuple(r.ref for r in matched if r.shadow and r.severity == shadow_final)
    asks = final == 1
    reasons = tuple(r.reason for r in deciding) if deciding else (DEFAULT_REASON.get(risk, "default"),)
    return Decision(
        effect=EFFECTS[final],
        reasons=reasons + _set_aside_reasons(set_aside) if set_aside else reasons,
        rules=tuple(r.ref for r in deciding),
        matched=tuple(r.ref for r in matched),
        shadow_effect=shadow_effect,
        shadow_rules=shadow_rules,
        caps=tuple(r.cap for r in deciding if r.cap is not None) if final == 0 else (),
        # Only ask rules carry these flags (validation refuses them elsewhere).
        require_out_of_band=asks and any(r.rule.require_out_of_band for r in enforced_admin),
        admin_may_approve=asks and any(r.rule.admin_may_approve for r in enforced_admin),
        approvers=demand_of(r.rule for r in enforced_admin) if asks else None,
    )


@dataclass(slots=True)
class _Filed:
    """The rules filed under one tool (admin) or one user's tool (user), grouped for the fast path."""

    every: list[CompiledRule] = field(default_factory=list)
    by_severity: tuple[list[CompiledRule], list[CompiledRule], list[CompiledRule]] = field(
        default_factory=lambda: ([], [], [])
    )
    shadow: list[CompiledRule] = field(default_factory=list)
    # The shadow rules a personal connection's call still heeds (an admin shadow allow is set aside there).
    shadow_strict: list[CompiledRule] = field(default_factory=list)
    locks: list[CompiledRule] = field(default_factory=list)

    def add(self, rule: CompiledRule) -> None:
        self.every.append(rule)
        (self.shadow if rule.shadow else self.by_severity[rule.severity]).append(rule)
        if rule.shadow and rule.severity > 0:
            self.shadow_strict.append(rule)
        if rule.locks:
            self.locks.append(rule)


_EMPTY = _Filed()
FEW = 6


def _hits(rules: list[CompiledRule], call: CallFacts, at: float) -> list[CompiledRule]:
    return [r for r in rules if (r.expires is None or at < r.expires) and _applies(r, call)]


def _strongest(
    filed: _Filed, call: CallFacts, at: float, above: int, lowest: int = 0
) -> tuple[int, list[CompiledRule]]:
    """The highest severity above ``above`` (and at least ``lowest``) at which an enforced rule applies,
    with the rules applying there."""
    for severity in (2, 1, 0):
        if severity <= above or severity < lowest:
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
        personal = call.connection_scope == "personal"
        # On a personal connection the admin layer can only ask or deny (see decide_among).
        admin, admin_hits = _strongest(admin_rules, call, at, NONE, 1 if personal else 0)
        # A user rule matters only where it is stricter than the admin layer (or, with no admin rule, at all).
        user, user_hits = _strongest(user_rules, call, at, admin)
        locked = admin == NONE and user != NONE and _locked(admin_rules, call, at, shadow=False)
        final = _combine(admin, user, locked, default)
        deciding = admin_hits if admin == final else user_hits if user == final else []
        set_aside: list[CompiledRule] = []
        if personal and admin_rules.by_severity[0] and _sets_aside(admin, user, final):
            set_aside = _hits(admin_rules.by_severity[0], call, at)
        admin_shadow = admin_rules.shadow_strict if personal else admin_rules.shadow
        shadow_final = final
        shadow_hits: list[CompiledRule] = []
        # Any shadow rule, even one set aside, may be a lock that bears on the shadow result.
        if final != 2 and (admin_rules.shadow or user_rules.shadow):
            shadow_hits = _hits(admin_shadow, call, at) + _hits(user_rules.shadow, call, at)
            # Even with no shadow rule applying, a shadow lock still sets user rules aside in the shadow result.
            shadow_admin = max([admin, *(r.severity for r in shadow_hits if r.admin)])
            shadow_user = max([user, *(r.severity for r in shadow_hits if not r.admin)])
            shadow_locked = shadow_admin == NONE and shadow_user != NONE and _locked(admin_rules, call, at, shadow=True)
            shadow_final = _combine(shadow_admin, shadow_user, shadow_locked, default)
        matched = admin_hits + user_hits + shadow_hits
        if not matched:
            return _no_match(final, risk, set_aside)
        # When the admin layer asks, its ask rules (the only ones with approver flags) are admin_hits.
        return _decision(final, risk, deciding, matched, shadow_final, admin_hits if admin == 1 else [], set_aside)

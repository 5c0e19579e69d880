"""The rule form: what a person picked and typed, kept as typed, and the rule it makes.

Field names are the rule's own paths (``conditions.0.value``, ``cap.max``), so
a problem reported by the rule model or the rule book lands beside the field
it is about. A refused rule comes back exactly as it was entered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData

from approvals.rules import NOTICE_CHANNELS, Condition, Rule, RuleError
from server.web.rules_schema import PRESENCE, Argument, common_arguments, tools_selected
from server.web.rules_words import Vocabulary, period_words

CAP_PERIODS = {3600: "per hour", 86400: "per day", 604800: "per week"}
# How the form names the channels an escalation can tell approvers by.
CHANNEL_LABELS = {"email": "E-mail", "slack": "Slack", "push": "Their devices (push notifications)"}
RISKS = ("read", "write", "send", "delete")
ROLES = ("owner", "admin", "member")
LOCAL_MINUTE = "%Y-%m-%dT%H:%M"
_INDEX = re.compile(r"\[(\d+)\]")
_CONDITION_KEY = re.compile(r"^conditions\.(\d+)(\..*)?$")
_PERSON_KEY = re.compile(r"^approvers\.people\.\d+$")
# People are typed as a list: commas, semicolons, spaces or lines apart.
_PEOPLE_APART = re.compile(r"[\s,;]+")


class FormErrors(Exception):
    """The form cannot make a rule; ``fields`` maps each form field to its problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in fields.items()))


@dataclass
class ConditionDraft:
    arg: str = ""
    op: str = ""
    value: str = ""
    picked: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, condition: Condition) -> ConditionDraft:
        if condition.op == "exists":
            return cls(condition.arg, "exists" if condition.value else "missing")
        value = condition.value
        items = value if isinstance(value, list) else [value]
        return cls(condition.arg, condition.op, ", ".join(_typed_text(v) for v in items), [str(v) for v in items])

    @property
    def blank(self) -> bool:
        return not (self.arg or self.value.strip() or self.picked)


def _typed_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class RuleDraft:
    """Every field of the rule form, as text."""

    scope: str = "user"
    effect: str = "ask"
    app: str = ""
    tool: str = "*"
    risk: str = ""
    conditions: list[ConditionDraft] = field(default_factory=list)
    cap_max: str = ""
    cap_per: str = "86400"
    expires_at: str = ""
    shadow: bool = False
    description: str = ""
    locked: bool = False
    require_out_of_band: bool = False
    admin_may_approve: bool = False
    # Who approves (workspace ask rules): the people as typed, the admins, how many approvals, and escalation.
    approvers_people: str = ""
    approvers_admins: bool = False
    approvers_count: str = "1"
    no_self_approval: bool = False
    escalate_after_minutes: str = ""
    escalate_to_admins: bool = False
    escalate_by: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    connection_scope: str = ""
    # The connections a rule is bound to ("remember" binds one); the form shows them and keeps them.
    connection_ids: list[str] = field(default_factory=list)
    weekdays: list[str] = field(default_factory=list)
    hours_from: str = ""
    hours_to: str = ""

    @classmethod
    def of(cls, rule: Rule) -> RuleDraft:
        context = rule.context
        return cls(
            scope=rule.scope,
            effect=rule.effect.value,
            app=rule.app or "",
            tool=rule.tool,
            risk=rule.risk or "",
            conditions=[ConditionDraft.of(c) for c in rule.conditions],
            cap_max=str(rule.cap.max) if rule.cap else "",
            cap_per=str(rule.cap.per_seconds) if rule.cap else "86400",
            expires_at=rule.expires_at.astimezone(UTC).strftime(LOCAL_MINUTE) if rule.expires_at else "",
            shadow=rule.mode == "shadow",
            description=rule.description,
            locked=rule.locked,
            require_out_of_band=rule.require_out_of_band,
            admin_may_approve=rule.admin_may_approve,
            approvers_people=", ".join(rule.approvers.people) if rule.approvers else "",
            approvers_admins=rule.approvers.admins if rule.approvers else False,
            approvers_count=str(rule.approvers.count) if rule.approvers else "1",
            no_self_approval=rule.no_self_approval,
            escalate_after_minutes=str(rule.escalate_after_minutes or ""),
            escalate_to_admins=rule.escalate_to == "admins",
            escalate_by=list(rule.escalate_by),
            roles=list(context.roles or []),
            connection_scope=context.connection_scope or "",
            connection_ids=list(context.connection_ids or []),
            weekdays=list(context.weekdays or []),
            hours_from=f"{context.hours.start:%H:%M}" if context.hours else "",
            hours_to=f"{context.hours.end:%H:%M}" if context.hours else "",
        )

    @classmethod
    def from_form(cls, form: FormData) -> RuleDraft:
        def text(name: str, default: str = "") -> str:
            return str(form.get(name) or default).strip()

        indexes = sorted(
            {int(match.group(1)) for key in form if (match := _CONDITION_KEY.match(key)) and match.group(2) == ".arg"}
        )
        return cls(
            scope=text("scope", "user"),
            effect=text("effect", "ask"),
            app=text("app"),
            tool=text("tool", "*"),
            risk=text("risk"),
            conditions=[
                ConditionDraft(
                    arg=text(f"conditions.{i}.arg"),
                    op=text(f"conditions.{i}.op"),
                    value=str(form.get(f"conditions.{i}.value") or ""),
                    picked=[str(v) for v in form.getlist(f"conditions.{i}.value")],
                )
                for i in indexes
            ],
            cap_max=text("cap.max"),
            cap_per=text("cap.per_seconds", "86400"),
            expires_at=text("expires_at"),
            shadow=form.get("mode") == "shadow",
            description=text("description"),
            locked=form.get("locked") == "on",
            require_out_of_band=form.get("require_out_of_band") == "on",
            admin_may_approve=form.get("admin_may_approve") == "on",
            approvers_people=text("approvers.people"),
            approvers_admins=form.get("approvers.admins") == "on",
            approvers_count=text("approvers.count", "1"),
            no_self_approval=form.get("no_self_approval") == "on",
            escalate_after_minutes=text("escalate_after_minutes"),
            escalate_to_admins=form.get("escalate_to") == "admins",
            escalate_by=[str(v) for v in form.getlist("escalate_by")],
            roles=[str(v) for v in form.getlist("context.roles")],
            connection_scope=text("context.connection_scope"),
            connection_ids=list(
                dict.fromkeys(s for v in form.getlist("context.connection_ids") if (s := str(v).strip()))
            ),
            weekdays=[str(v) for v in form.getlist("context.weekdays")],
            hours_from=text("context.hours.from"),
            hours_to=text("context.hours.to"),
        )

    def to_data(self, arguments: Mapping[str, Argument]) -> tuple[dict[str, Any], list[int]]:
        """The rule's JSON, and for each condition in it the form row it came from (blank rows are left out).

        Raises FormErrors for what cannot even be read (a number that is not one);
        everything else is left to the rule model and the rule book to judge.
        """
        errors: dict[str, str] = {}
        conditions: list[dict[str, Any]] = []
        rows: list[int] = []
        for row, condition in enumerate(self.conditions):
            if condition.blank:
                continue
            if not condition.arg:
                errors[f"conditions.{row}.arg"] = "choose an argument"
                continue
            argument = arguments.get(condition.arg) or Argument(condition.arg, "any")
            op = condition.op or argument.operators[0]
            try:
                value = argument.parse(op, condition.value, condition.picked)
            except ValueError as exc:
                errors[f"conditions.{row}.value"] = str(exc)
                continue
            conditions.append({"arg": condition.arg, "op": "exists" if op in PRESENCE else op, "value": value})
            rows.append(row)
        data: dict[str, Any] = {
            "effect": self.effect,
            "scope": self.scope,
            "app": self.app or None,
            "tool": self.tool or "*",
            "risk": self.risk or None,
            "conditions": conditions,
            "context": self._context(errors),
            "cap": self._cap(errors),
            "expires_at": self._expiry(errors),
            "mode": "shadow" if self.shadow else "enforce",
            "description": self.description,
            "locked": self.locked and self.scope == "workspace",
            "require_out_of_band": self.require_out_of_band and self.scope == "workspace",
            "admin_may_approve": self.admin_may_approve and self.scope == "workspace",
            # Sent whatever the scope and effect, so a rule that may not have them says so beside them.
            "approvers": self._approvers(errors),
            "no_self_approval": self.no_self_approval,
            "escalate_after_minutes": self._minutes(errors),
            "escalate_to": "admins" if self.escalate_to_admins else None,
            "escalate_by": self.escalate_by,
        }
        if errors:
            raise FormErrors(errors)
        return data, rows

    @property
    def names_approvers(self) -> bool:
        """Whether any of the who-approves fields is filled in, so the form keeps showing them."""
        return bool(
            self.approvers_people
            or self.approvers_admins
            or self.approvers_count not in ("", "1")
            or self.no_self_approval
            or self.escalate_after_minutes
            or self.escalate_to_admins
            or self.escalate_by
        )

    def _approvers(self, errors: dict[str, str]) -> dict[str, Any] | None:
        people = [person for person in _PEOPLE_APART.split(self.approvers_people) if person]
        if not (people or self.approvers_admins or self.approvers_count not in ("", "1")):
            return None
        try:
            count = int(self.approvers_count or "1")
        except ValueError:
            errors["approvers.count"] = "enter a whole number of approvals"
            return None
        return {"people": people, "admins": self.approvers_admins, "count": count}

    def _minutes(self, errors: dict[str, str]) -> int | None:
        if not self.escalate_after_minutes:
            return None
        try:
            return int(self.escalate_after_minutes)
        except ValueError:
            errors["escalate_after_minutes"] = "enter a whole number of minutes"
            return None

    def _cap(self, errors: dict[str, str]) -> dict[str, int] | None:
        if not self.cap_max:
            return None
        try:
            return {"max": int(self.cap_max), "per_seconds": int(self.cap_per)}
        except ValueError:
            errors["cap.max"] = "enter a whole number of calls"
            return None

    def _expiry(self, errors: dict[str, str]) -> str | None:
        if not self.expires_at:
            return None
        try:
            moment = datetime.strptime(self.expires_at, LOCAL_MINUTE)
        except ValueError:
            errors["expires_at"] = "enter a date and a time"
            return None
        return moment.replace(tzinfo=UTC).isoformat()

    def _context(self, errors: dict[str, str]) -> dict[str, Any]:
        context: dict[str, Any] = {}
        if self.roles:
            context["roles"] = self.roles
        if self.connection_scope:
            context["connection_scope"] = self.connection_scope
        if self.connection_ids:
            context["connection_ids"] = self.connection_ids
        if self.weekdays:
            context["weekdays"] = self.weekdays
        if self.hours_from or self.hours_to:
            if not (self.hours_from and self.hours_to):
                errors["context.hours"] = "give both a start and an end time"
            else:
                context["hours"] = {"from": self.hours_from, "to": self.hours_to}
        return context


FIELD_LABELS = {
    "effect": "What happens",
    "scope": "Whose calls",
    "app": "App",
    "tool": "Tool",
    "risk": "Risk",
    "cap": "Cap",
    "cap.max": "Cap",
    "cap.per_seconds": "Cap period",
    "expires_at": "Expires",
    "context": "Circumstances",
    "context.hours": "Hours",
    "context.hours.from": "Hours: from",
    "context.hours.to": "Hours: to",
    "context.connection_ids": "Connections",
    "description": "Description",
    "locked": "Lock",
    "require_out_of_band": "Approve only on the web",
    "admin_may_approve": "Admins may approve",
    "approvers": "Who approves",
    "approvers.people": "Approvers",
    "approvers.admins": "Admins approve too",
    "approvers.count": "Approvals needed",
    "no_self_approval": "Not by whoever asked",
    "escalate_after_minutes": "Escalate after",
    "escalate_to": "Escalate to the admins",
    "escalate_by": "Tell the approvers again by",
}
CONDITION_PARTS = {"arg": "argument", "op": "test", "value": "value"}
# Where a problem without a field of its own is shown.
ANCHORS = {"cap": "cap.max", "context": "context.hours", "approvers": "approvers.people"}


def field_label(name: str) -> str:
    """How the error summary names a field: "Condition 2: value" rather than ``conditions.1.value``."""
    match = _CONDITION_KEY.match(name)
    if match:
        part = (match.group(2) or "").lstrip(".")
        return f"Condition {int(match.group(1)) + 1}: {CONDITION_PARTS.get(part, part or 'condition')}"
    return FIELD_LABELS.get(name, name)


def field_anchor(name: str) -> str:
    """The id of the input a problem is about, for the error summary's links."""
    match = _CONDITION_KEY.match(name)
    if match and not match.group(2):
        name = f"{name}.arg"
    return "f-" + ANCHORS.get(name, name).replace(".", "-")


def problems_of_model(exc: ValidationError) -> dict[str, str]:
    """The rule model's complaints by field path; model-level checks name their field first ("cap: ...")."""
    fields: dict[str, str] = {}
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        head, _, rest = message.partition(": ")
        if error["type"] == "value_error" and rest and " " not in head:
            location, message = ".".join(filter(None, [location, head])), rest
        if _PERSON_KEY.match(location):
            # One of the people typed, which the form shows as one field: say which one it is.
            location, message = "approvers.people", f"“{error['input']}” is not an e-mail address"
        fields.setdefault(location or "rule", message)
    return fields


def problems_of_rule(exc: RuleError) -> dict[str, str]:
    """The rule book's complaints, with ``conditions[0].arg`` written as the form writes it."""
    return {_INDEX.sub(r".\1", name): problem for name, problem in exc.fields.items()}


def on_rows(problems: dict[str, str], rows: list[int]) -> dict[str, str]:
    """Move problems about the rule's nth condition to the form row it came from."""
    placed = {}
    for name, problem in problems.items():
        match = _CONDITION_KEY.match(name)
        if match and int(match.group(1)) < len(rows):
            name = f"conditions.{rows[int(match.group(1))]}{match.group(2) or ''}"
        placed[name] = problem
    return placed


@dataclass(frozen=True)
class ToolChoice:
    value: str
    label: str


@dataclass(frozen=True)
class ToolGroup:
    label: str
    tools: list[ToolChoice]


def tool_groups(vocabulary: Vocabulary, app: str | None) -> list[ToolGroup]:
    """The tools to pick from, by app: only the chosen app's, or every app's."""
    catalog = vocabulary.catalog
    groups = []
    for app_id, app_name in sorted(vocabulary.app_names.items(), key=lambda item: item[1].lower()):
        if app is None or app_id == app:
            names = sorted(n for n, info in catalog.items() if info.app == app_id)
            choices = [ToolChoice(n, f"{vocabulary.tool_titles.get(n, n)} · {catalog[n].risk}") for n in names]
            groups.append(ToolGroup(app_name, choices))
    return groups


@dataclass
class Choices:
    """What the form offers for a draft: apps, the tools of the chosen app, and the arguments they share."""

    vocabulary: Vocabulary
    apps: list[tuple[str, str]]
    tool_groups: list[ToolGroup]
    arguments: dict[str, Argument]
    covered: list[str]

    @classmethod
    def for_draft(cls, draft: RuleDraft, vocabulary: Vocabulary) -> Choices:
        catalog = vocabulary.catalog
        apps = sorted(vocabulary.app_names.items(), key=lambda item: item[1].lower())
        app = draft.app if draft.app in vocabulary.app_names else None
        everything = ToolChoice("*", f"Every tool of {vocabulary.app_name(app)}" if app else "Every tool of every app")
        groups = [ToolGroup("", [everything]), *tool_groups(vocabulary, app)]
        if not any(choice.value == draft.tool for group in groups for choice in group.tools):
            # A pattern saved over the API, or a tool of an app no longer chosen: shown, so it is never lost unseen.
            groups[0].tools.append(ToolChoice(draft.tool, f"Tools matching {draft.tool}"))
        covered = tools_selected(catalog, app=app, tool=draft.tool, risk=draft.risk or None)
        shared = common_arguments(catalog, covered, vocabulary.senders)
        return cls(vocabulary, apps, groups, {a.path: a for a in shared}, covered)

    @classmethod
    def settled(cls, draft: RuleDraft, vocabulary: Vocabulary) -> Choices:
        """The choices once the draft fits them, after app, tool or argument changed.

        A tool that the chosen app does not have gives way to every tool of
        the app, and an operator that does not fit the argument to its first
        one that does.
        """
        choices = cls.for_draft(draft, vocabulary)
        if not choices.covered and draft.tool != "*":
            draft.tool = "*"
            choices = cls.for_draft(draft, vocabulary)
        for condition in draft.conditions:
            known = choices.arguments.get(condition.arg)
            if known is not None and condition.op not in known.operators:
                condition.op = known.operators[0]
        return choices

    @property
    def covered_titles(self) -> list[str]:
        return [self.vocabulary.tool_titles.get(name, name) for name in self.covered]

    def argument(self, path: str) -> Argument:
        """The argument at ``path``; one the chosen tools do not share still shows, so nothing typed is lost."""
        return self.arguments.get(path) or Argument(path, "any")

    @property
    def escalation_channels(self) -> list[tuple[str, str]]:
        """The channels an escalation can tell the approvers by, with their names."""
        return [(channel, CHANNEL_LABELS.get(channel, channel)) for channel in NOTICE_CHANNELS]

    def cap_periods(self, current: str) -> list[tuple[str, str]]:
        """The periods a cap can count over, keeping an unusual one a rule was saved with."""
        periods = [(str(seconds), label) for seconds, label in CAP_PERIODS.items()]
        if current.isdigit() and int(current) not in CAP_PERIODS:
            periods.append((current, period_words(int(current))))
        return periods

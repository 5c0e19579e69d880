"""Rules in plain words, as the console shows them: "to is only at domains client.com, partner.io".

People read rules far more often than they write them, so every part of a
rule (what it covers, its conditions, cap and circumstances) has a sentence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from approvals.rules import Cap, Catalog, Condition, Rule, RuleContext
from server.web.rules_schema import Argument, arguments_of, tools_selected


@dataclass(frozen=True)
class EffectWords:
    label: str
    tone: str  # the badge class
    meaning: str


EFFECTS = {
    "allow": EffectWords("Allow", "ok", "runs without asking"),
    "ask": EffectWords("Ask", "warn", "waits for a person's approval"),
    "deny": EffectWords("Deny", "bad", "never runs"),
}
ROLES = {"owner": "owners", "admin": "admins", "member": "members"}
PERIODS = {60: "a minute", 3600: "an hour", 86400: "a day", 604800: "a week"}
COMPARISONS = {"lt": "<", "lte": "≤", "gt": ">", "gte": "≥"}


@dataclass(frozen=True)
class Vocabulary:
    """What the words need from the tool registry: app names, tool titles and schemas."""

    app_names: Mapping[str, str]
    tool_titles: Mapping[str, str]
    catalog: Catalog

    @classmethod
    def of(cls, registry: Any, catalog: Catalog) -> Vocabulary:
        return cls(
            app_names={app: manifest.name for app, manifest in registry.manifests.items()},
            tool_titles={name: tool.spec.title for name, tool in registry.tools.items()},
            catalog=catalog,
        )

    def app_name(self, app: str | None) -> str:
        return "any app" if app is None else self.app_names.get(app, app)


@dataclass(frozen=True)
class Phrase:
    """A condition: the argument it tests (shown as code) and what it says about it."""

    subject: str
    text: str

    def __str__(self) -> str:
        return f"{self.subject} {self.text}"


@dataclass(frozen=True)
class RuleWords:
    effect: EffectWords
    target: str
    pattern: str  # the tool name or pattern, shown as code beside the words
    conditions: list[Phrase]
    context: list[str]
    cap: str | None
    flags: list[str]


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return f"“{value}”"
    if isinstance(value, list):
        return ", ".join(_shown(item) for item in value)
    return json.dumps(value, ensure_ascii=False)


def condition_phrase(condition: Condition, argument: Argument | None = None) -> Phrase:
    many = argument is not None and argument.many
    op, value = condition.op, condition.value
    if op == "exists":
        text = "is given" if value else "is not given"
    elif op in COMPARISONS:
        text = f"{COMPARISONS[op]} {_shown(value)}"
    elif op == "eq":
        text = f"is {_shown(value)}"
    elif op == "ne":
        text = f"is not {_shown(value)}"
    elif op == "in":
        text = f"{'are all among' if many else 'is one of'} {_shown(value)}"
    elif op == "not_in":
        text = f"{'include none of' if many else 'is none of'} {_shown(value)}"
    elif op == "matches":
        text = f"{'all match' if many else 'matches'} the pattern {_shown(value)}"
    elif op == "contains":
        text = f"{'includes' if many else 'contains'} {_shown(value)}"
    elif op == "domain_in":
        text = f"is only at domains {', '.join(value)}"
    else:
        unit = ("item" if value == 1 else "items") if many else ("character" if value == 1 else "characters")
        text = f"{'has' if many else 'is'} at most {value} {unit}{'' if many else ' long'}"
    return Phrase(condition.arg, text)


def period_words(seconds: int) -> str:
    if seconds in PERIODS:
        return PERIODS[seconds]
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            return f"every {seconds // size} {unit}s"
    return f"every {seconds} seconds"


def cap_words(cap: Cap) -> str:
    return f"at most {cap.max} {period_words(cap.per_seconds)}"


def context_words(context: RuleContext, timezone: str) -> list[str]:
    words = []
    if context.roles:
        words.append(f"only for {_listed([ROLES[role] for role in context.roles])}")
    if context.connection_scope:
        words.append(f"only on {context.connection_scope} connections")
    if context.weekdays:
        words.append(f"only on {', '.join(day.title() for day in context.weekdays)}")
    if context.hours:
        start, end = context.hours.start, context.hours.end
        words.append(f"only from {start:%H:%M} to {end:%H:%M} ({timezone} time)")
    return words


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def target_words(rule: Rule, vocabulary: Vocabulary) -> str:
    """What the rule covers: one tool by its title, or a family of tools ("Send tools of Gmail matching gmail_*")."""
    if rule.tool in vocabulary.tool_titles:
        return vocabulary.tool_titles[rule.tool]
    kind = f"{rule.risk} " if rule.risk else ""
    of_app = f" of {vocabulary.app_name(rule.app)}" if rule.app else ""
    family = f"every {kind}tool{of_app}" if rule.tool == "*" else f"{kind}tools{of_app} matching {rule.tool}"
    return family[0].upper() + family[1:]


def flag_words(rule: Rule) -> list[str]:
    flags = []
    if rule.locked:
        flags.append("Locked: personal rules cannot loosen it")
    if rule.require_out_of_band:
        flags.append("Approval only on the web or over the API")
    if rule.admin_may_approve:
        flags.append("Admins may approve for the person")
    return flags


def describe(rule: Rule, vocabulary: Vocabulary, timezone: str = "UTC") -> RuleWords:
    tools = tools_selected(vocabulary.catalog, app=rule.app, tool=rule.tool, risk=rule.risk)
    arguments = {a.path: a for a in arguments_of(vocabulary.catalog[tools[0]].input_schema)} if tools else {}
    return RuleWords(
        effect=EFFECTS[rule.effect.value],
        target=target_words(rule, vocabulary),
        pattern=rule.tool,
        conditions=[condition_phrase(c, arguments.get(c.arg)) for c in rule.conditions],
        context=context_words(rule.context, timezone),
        cap=cap_words(rule.cap) if rule.cap else None,
        flags=flag_words(rule),
    )

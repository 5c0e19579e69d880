"""Rules in plain words, as the console shows them: "to is only at domains client.com, partner.io".

People read rules far more often than they write them, so every part of a
rule (what it covers, its conditions, cap and circumstances) has a sentence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from approvals.rules import RECIPIENTS, Cap, Catalog, Condition, Effect, Rule, RuleContext
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
    # Connection id -> its label, for the connections the reader may see; any other is named by its id.
    connection_labels: Mapping[str, str] = field(default_factory=dict)
    # The tools whose manifest declares their recipients, where the form offers ``@recipients``; None: any with egress.
    senders: frozenset[str] | None = None

    @classmethod
    def of(cls, registry: Any, catalog: Catalog, connection_labels: Mapping[str, str] | None = None) -> Vocabulary:
        return cls(
            app_names={app: manifest.name for app, manifest in registry.manifests.items()},
            tool_titles={name: tool.spec.title for name, tool in registry.tools.items()},
            catalog=catalog,
            connection_labels=dict(connection_labels or {}),
            senders=frozenset(name for name, tool in registry.tools.items() if tool.spec.recipients),
        )

    def app_name(self, app: str | None) -> str:
        return "any app" if app is None else self.app_names.get(app, app)

    def connection_name(self, connection_id: str) -> str:
        label = self.connection_labels.get(connection_id)
        return f"“{label}”" if label else connection_id


@dataclass(frozen=True)
class Phrase:
    """A condition: the argument it tests (shown as code, unless it is words such as "every recipient") and what
    it says about it."""

    subject: str
    text: str
    code: bool = True

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


def _either(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _domains(value: Any) -> str:
    return _either([str(domain) for domain in value]) if isinstance(value, list) and value else _shown(value)


def _fields(value: Any) -> str:
    names = [str(name) for name in value] if isinstance(value, list) else [str(value)]
    return _listed(names) if names else "none"


def recipients_phrase(condition: Condition, effect: Effect | str = Effect.ALLOW) -> Phrase:
    """``@recipients`` in words: an allow rule needs every recipient to fit, an ask or deny rule holds once any does.

    A recipient that cannot be checked (not exactly one mailbox, too long) never fits an allow rule and always
    fits an ask or deny rule (approvals.rules), which "every recipient is at" and "any recipient is at" both say.
    """
    op, value = condition.op, condition.value
    if op == "exists":
        return Phrase("the call", "has at least one recipient" if value else "has no recipients", code=False)
    if op == "max_length":
        return Phrase("the call", f"has at most {value} recipient{'' if value == 1 else 's'}", code=False)
    every = Effect(effect) is Effect.ALLOW
    if op == "not_in":
        if every:
            return Phrase("no recipient", f"is {_either([_shown(v) for v in value])}", code=False)
        return Phrase("any recipient", f"is not {_either([_shown(v) for v in value])}", code=False)
    subject = "every recipient" if every else "any recipient"
    if op == "domain_in":
        text = f"is at {_domains(value)}"
    elif op == "in":
        text = f"is {_either([_shown(v) for v in value])}" if isinstance(value, list) else f"is {_shown(value)}"
    elif op == "matches":
        text = f"matches the pattern {_shown(value)}"
    else:  # an op @recipients does not take (the rule book refuses it); still said, never hidden
        text = f"{op} {_shown(value)}"
    return Phrase(subject, text, code=False)


def condition_phrase(
    condition: Condition, argument: Argument | None = None, effect: Effect | str = Effect.ALLOW
) -> Phrase:
    """A condition in words. On a list, an allow rule needs every item to fit and an ask or deny rule holds
    once any item fits, so the words depend on the rule's effect."""
    if condition.arg == RECIPIENTS:
        return recipients_phrase(condition, effect)
    many = argument is not None and argument.many
    every = Effect(effect) is Effect.ALLOW
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
        text = f"{('are all among' if every else 'include one of') if many else 'is one of'} {_shown(value)}"
    elif op == "not_in":
        text = f"{('include none of' if every else 'include one not among') if many else 'is none of'} {_shown(value)}"
    elif op == "matches":
        verb = ("all match" if every else "include one matching") if many else "matches"
        text = f"{verb} the pattern {_shown(value)}"
    elif op == "contains":
        text = f"{'includes' if many else 'contains'} {_shown(value)}"
    elif op == "domain_in":
        if not many:
            text = f"is only at domains {', '.join(value)}" if every else f"is at {_domains(value)}"
        else:
            text = f"are all only at domains {', '.join(value)}" if every else f"include one at {_domains(value)}"
    elif op == "keys_in":
        if not many:
            text = f"sets only the fields {_fields(value)}"
        else:
            verb = "each set" if every else "include one setting"
            text = f"{verb} only the fields {_fields(value)}"
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


def connection_words(connection_ids: list[str], vocabulary: Vocabulary | None = None) -> str:
    """ "only on the connection “Work”": by label where the reader may see it, else by id."""
    names = [vocabulary.connection_name(c) if vocabulary else c for c in connection_ids]
    return f"only on the connection{'s' if len(names) > 1 else ''} {_listed(names)}"


def context_words(context: RuleContext, timezone: str, vocabulary: Vocabulary | None = None) -> list[str]:
    words = []
    if context.roles:
        words.append(f"only for {_listed([ROLES[role] for role in context.roles])}")
    if context.connection_scope:
        words.append(f"only on {context.connection_scope} connections")
    if context.connection_ids:
        words.append(connection_words(context.connection_ids, vocabulary))
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
    if rule.scope == "workspace" and rule.effect is Effect.ALLOW:
        # Personal connections answer to their owner (SECURITY.md, 6).
        if rule.context.connection_scope == "personal":
            flags.append("Never auto-approves: on a personal connection only its owner's rules do")
        else:
            flags.append("Not on anyone's personal connection: only its owner's rules auto-approve there")
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
        conditions=[condition_phrase(c, arguments.get(c.arg), rule.effect) for c in rule.conditions],
        context=context_words(rule.context, timezone, vocabulary),
        cap=cap_words(rule.cap) if rule.cap else None,
        flags=flag_words(rule),
    )

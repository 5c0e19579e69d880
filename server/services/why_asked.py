"""Why a call waits for a person, in plain words.

The rule engine's reasons (``approvals/rules.py``) are written for logs and the API: "no rule matched; default for
write tools: ask". A person deciding reads what they mean for this call: "No rule covers sending e-mail outside
acme.test". This module only reads the reasons a decision gave; it never decides anything itself, so the rules mean
what they meant. A reason it does not know is shown as it is, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from approvals.rules import DEFAULT_REASON, NO_MATCH_REASON
from tools.summary import escape

_RULE = re.compile(r"^(?P<label>.*) \((?P<effect>allow|ask|deny)\)$", re.S)
_SET_ASIDE = re.compile(
    r"^(?P<rule>.*) set aside: only the owner's own rules auto-approve calls on a personal connection$", re.S
)
_CAP = re.compile(r"^rule (?P<id>\S+) allows (?P<max>\d+) auto-approvals per (?P<window>.+), and they are used up$")
_WINDOW = re.compile(r"^(?:(?P<days>\d+) days?, )?(?P<hours>\d+):(?P<minutes>\d\d):(?P<seconds>\d\d)$")

#: How each risk's calls are called in a sentence, and what they ask by default.
KINDS = {"write": "Writes", "send": "Messages", "delete": "Deletions", "read": "Reads"}
#: What "this call" is, by risk.
THIS = {"write": "this change", "send": "this message", "delete": "this deletion", "read": "this read"}
PERIODS = {60: "minute", 3600: "hour", 86400: "day", 604800: "week"}


@dataclass(frozen=True)
class RuleFacts:
    """What a card says of a rule that decided: whose it is and how it describes itself."""

    id: str
    scope: str  # "workspace" or "user"
    description: str


@dataclass(frozen=True)
class Asking:
    """The call the reasons are about, as far as the sentences need it."""

    risk: str
    # Every recipient value of the call (addresses, channels), and whether they are e-mail addresses.
    recipients: Sequence[str]
    mail: bool
    # The domain of the asker's own address: "outside acme.test" is said against it.
    own_domain: str
    # Whether the person reading is the one who asked ("your rules"), else the asker's name.
    yours: bool
    asker: str
    out_of_band: bool


def why_asked(reasons: Sequence[str], call: Asking, rules: Mapping[str, RuleFacts]) -> tuple[str, ...]:
    """The reasons as sentences, in their order, with one more when an admin rule keeps the call out of band."""
    sentences: list[str] = []
    for reason in reasons:
        sentences.extend(_sentences(reason, call, rules))
    if call.out_of_band:
        sentences.append("An admin rule says a person approves this here, outside the assistant's chat.")
    return tuple(dict.fromkeys(sentences))


def _sentences(reason: str, call: Asking, rules: Mapping[str, RuleFacts]) -> list[str]:
    kind = KINDS.get(call.risk, "Such calls")
    whose_rules = "one of your rules" if call.yours else "a rule"
    if reason == NO_MATCH_REASON.get(call.risk):
        return [_uncovered(call), f"{kind} ask unless {whose_rules} allows them."]
    if reason == DEFAULT_REASON.get(call.risk):
        return [f"{kind} ask unless a rule allows them, and none of the rules that apply here may change that."]
    set_aside = _SET_ASIDE.match(reason)
    if set_aside:
        inner = _RULE.match(set_aside.group("rule"))
        name = _rule_name(inner.group("label") if inner else set_aside.group("rule"), call, rules)
        return [
            f"{name} would let it run, but on a personal connection only its owner's own rules let calls run "
            "without asking."
        ]
    cap = _CAP.match(reason)
    if cap:
        per = _period(cap.group("window"))
        return [f"A rule lets {cap.group('max')} calls like this run per {per} without asking, and they are used up."]
    decided = _RULE.match(reason)
    if decided:
        name = _rule_name(decided.group("label"), call, rules)
        return [f"{name} {_does(decided.group('effect'))}."]
    return [_sentence(escape(reason))]


def _uncovered(call: Asking) -> str:
    """What no rule covers: e-mail outside the asker's domain, a channel, or just this call."""
    if call.risk == "send" and call.recipients:
        if call.mail:
            domains = sorted({value.rpartition("@")[2].lower() for value in call.recipients if "@" in value})
            outside = [domain for domain in domains if domain != call.own_domain]
            if outside and call.own_domain:
                return f"No rule covers sending e-mail outside {call.own_domain} (here to {_and(outside)})."
            if outside:
                return f"No rule covers sending e-mail to {_and(outside)}."
            return f"No rule covers sending this e-mail, even within {call.own_domain}."
        return f"No rule covers posting to {_and([escape(value) for value in call.recipients])}."
    return f"No rule covers {THIS.get(call.risk, 'this call')}."


def _rule_name(text: str, call: Asking, rules: Mapping[str, RuleFacts]) -> str:
    """Whose rule it is and what it calls itself ("The workspace rule “…”", "Your rule “…”"), from the engine's
    label of it: its description, or "workspace rule rule_…"."""
    found = next((r for r in rules.values() if text in (r.description, f"{r.scope} rule {r.id}")), None)
    scope = found.scope if found else ("workspace" if text.startswith("workspace rule ") else "")
    if scope == "workspace":
        whose = "The workspace rule"
    elif scope == "user":
        whose = "Your rule" if call.yours else f"{call.asker}'s rule"
    else:
        whose = "The rule"
    described = found.description if found else ("" if re.match(r"^(workspace|user) rule \S+$", text) else text)
    if described:
        return f"{whose} “{escape(described)}”"
    return f"{whose} {found.id if found else text.rpartition(' ')[2]}"


def _does(effect: str) -> str:
    return {
        "ask": "asks for a person's approval",
        "deny": "refuses it",
        "allow": "lets calls like this run without asking",
    }[effect]


def _period(window: str) -> str:
    parts = _WINDOW.match(window.strip())
    if not parts:
        return escape(window)
    seconds = int(
        timedelta(
            days=int(parts.group("days") or 0),
            hours=int(parts.group("hours")),
            minutes=int(parts.group("minutes")),
            seconds=int(parts.group("seconds")),
        ).total_seconds()
    )
    if seconds in PERIODS:
        return PERIODS[seconds]
    for size, name in sorted(PERIODS.items(), reverse=True):
        if seconds % size == 0:
            return f"{seconds // size} {name}s"
    return f"{seconds} seconds"


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."

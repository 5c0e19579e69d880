"""A tool's arguments as the rule form offers them: each path, its type, and the operators that fit it.

A person never types a JSON path. The form lists the arguments found in the
tool's JSON Schema (looking into objects and arrays, as the rule engine does)
and, for each, only the operators the engine accepts for that type and can
actually match at run time.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from approvals.rules import RECIPIENT_OPS, RECIPIENTS, Catalog, Rule, matched_tools

# Operators as the form names them: "missing" is the engine's ``exists`` with value false.
OPERATOR_LABELS = {
    "eq": "is",
    "ne": "is not",
    "in": "is one of",
    "not_in": "is none of",
    "lt": "is less than",
    "lte": "is at most",
    "gt": "is more than",
    "gte": "is at least",
    "matches": "matches the pattern",
    "contains": "contains",
    "domain_in": "is only at domains",
    "max_length": "is at most … long",
    "exists": "is given",
    "missing": "is not given",
    "keys_in": "sets only these fields",
}
# Wording where the value is a list (an array, or a field inside an array of objects). An allow rule needs
# every item to fit; an ask or deny rule holds once any item fits (approvals.rules, _QUANTIFIED_OPS).
LIST_OPERATOR_LABELS = {
    **OPERATOR_LABELS,
    "in": "are all among",
    "not_in": "include none of",
    "contains": "includes",
    "matches": "all match the pattern",
    "domain_in": "are all only at domains",
    "max_length": "has at most … items",
    "keys_in": "each set only these fields",
}
ANY_LIST_OPERATOR_LABELS = {
    **LIST_OPERATOR_LABELS,
    "in": "include one of",
    "not_in": "include one not among",
    "matches": "include one matching the pattern",
    "domain_in": "include one at domains",
    "keys_in": "include one setting only these fields",
}
# All of a call's recipients at once (``@recipients``), as the tool's manifest declares them.
RECIPIENT_OPERATOR_LABELS = {
    "domain_in": "are all only at domains",
    "in": "are all among",
    "not_in": "include none of",
    "matches": "all match the pattern",
    "max_length": "number at most",
    "exists": "include at least one",
    "missing": "are none at all",
}
ANY_RECIPIENT_OPERATOR_LABELS = {
    **RECIPIENT_OPERATOR_LABELS,
    "domain_in": "include one at domains",
    "in": "include one of",
    "not_in": "include one not among",
    "matches": "include one matching the pattern",
}
# How the form names each kind of argument, alone and in a list.
KIND_LABELS = {
    "string": ("text", "texts"),
    "email": ("e-mail address", "e-mail addresses"),
    "integer": ("whole number", "whole numbers"),
    "number": ("number", "numbers"),
    "boolean": ("yes or no", "yes-or-no values"),
    "object": ("group of fields", "groups of fields"),
    "recipient": ("recipient", "recipients"),
    "any": ("value", "values"),
}
SCALARS = ("integer", "number", "boolean")
PRESENCE = ("exists", "missing")


@dataclass(frozen=True)
class Argument:
    """One argument path of a tool, typed from its schema."""

    path: str
    kind: str  # string | email | integer | number | boolean | object | recipient | any
    array: bool = False  # its own schema is an array
    many: bool = False  # its value is a list: an array, or a field inside an array of objects
    choices: tuple[Any, ...] = ()
    description: str = ""
    fields: tuple[str, ...] = ()  # an object's declared fields, for keys_in
    title: str = ""  # how the argument picker names it, when not by its path

    @property
    def recipients(self) -> bool:
        return self.path == RECIPIENTS

    @property
    def kind_label(self) -> str:
        words = KIND_LABELS[self.kind]
        return f"list of {words[1]}" if self.many else words[0]

    @property
    def choice_label(self) -> str:
        """The argument as its picker lists it: "to · list of e-mail addresses", or its title."""
        return self.title or f"{self.path} · {self.kind_label}"

    @property
    def operators(self) -> tuple[str, ...]:
        if self.recipients:
            return (*(op for op in RECIPIENT_OPS if op != "exists"), *PRESENCE)
        if self.kind == "object" and not self.array:
            # keys_in tests one object (or each object of a list, for a field inside an array of objects).
            return ("keys_in", *PRESENCE)
        if self.many:
            if self.kind == "email":
                return ("domain_in", "contains", "in", "not_in", "max_length", *PRESENCE)
            if self.kind == "string":
                return ("contains", "in", "not_in", "matches", "max_length", *PRESENCE)
            if self.kind in SCALARS:
                if self.array:
                    return ("contains", "in", "not_in", "max_length", *PRESENCE)
                # A number inside an array of objects arrives as a list, which numeric tests never match.
                return ("in", "not_in", *PRESENCE)
            return ("max_length", *PRESENCE) if self.array else PRESENCE
        if self.kind in ("integer", "number"):
            return ("lte", "lt", "gte", "gt", "eq", "ne", "in", "not_in", *PRESENCE)
        if self.kind == "boolean":
            return ("eq", *PRESENCE)
        if self.kind == "email":
            return ("domain_in", "eq", "ne", "in", "not_in", "matches", *PRESENCE)
        if self.kind == "string":
            if self.choices:
                return ("eq", "ne", "in", "not_in", *PRESENCE)
            return ("eq", "ne", "in", "not_in", "contains", "matches", "max_length", *PRESENCE)
        if self.kind == "object":
            return PRESENCE
        return ("eq", "ne", "in", "not_in", *PRESENCE)

    def label_of(self, operator: str, effect: str = "allow") -> str:
        """The operator as the test picker names it; on a list, an ask or deny rule holds once any item fits."""
        every = effect == "allow"
        if self.recipients:
            labels = RECIPIENT_OPERATOR_LABELS if every else ANY_RECIPIENT_OPERATOR_LABELS
        elif self.many:
            labels = LIST_OPERATOR_LABELS if every else ANY_LIST_OPERATOR_LABELS
        else:
            labels = OPERATOR_LABELS
        return labels[operator]

    def value_input(self, operator: str) -> str:
        """Which input the value needs: none, checks, fields, list, number, whole, boolean, choice, pattern or text."""
        if operator in PRESENCE:
            return "none"
        if operator == "keys_in":
            return "fields" if self.fields else "list"
        if operator in ("in", "not_in") and self.choices:
            return "checks"
        if operator in ("in", "not_in", "domain_in"):
            return "list"
        if operator in ("lt", "lte", "gt", "gte"):
            return "number"
        if operator == "max_length":
            return "whole"
        if operator == "matches":
            return "pattern"
        if self.kind == "boolean":
            return "boolean"
        if self.choices:
            return "choice"
        if self.kind in ("integer", "number"):
            return "number"
        return "text"

    def parse(self, operator: str, text: str, picked: list[str]) -> Any:
        """The condition's value from what was typed or picked; ValueError says what to enter instead."""
        shape = self.value_input(operator)
        if shape == "none":
            return operator == "exists"
        if shape == "checks":
            if not picked:
                raise ValueError("pick at least one value")
            return [self.scalar(choice) for choice in picked]
        if shape == "fields":
            names = list(dict.fromkeys(name.strip() for name in picked if name.strip()))
            if not names:
                raise ValueError("pick at least one field")
            return names
        if shape == "list":
            items = [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]
            if not items:
                raise ValueError("enter at least one value, separated by commas")
            if operator == "domain_in":
                return [item.lstrip("@").lower() for item in items]
            if operator == "keys_in":
                return list(dict.fromkeys(items))  # field names are text, whatever the object holds
            return [self.scalar(item) for item in items]
        if shape == "number":
            return _number(text)
        if shape == "whole":
            return _whole(text)
        if not text.strip():
            raise ValueError("enter a value")
        return self.scalar(text)

    def scalar(self, text: str) -> Any:
        """One value of this argument's type from its text."""
        if self.kind == "integer":
            return _whole(text)
        if self.kind == "number":
            return _number(text)
        if self.kind == "boolean":
            if text not in ("true", "false"):
                raise ValueError("choose yes or no")
            return text == "true"
        if self.choices:
            # Enum values keep their own type (a number enum stays a number).
            for choice in self.choices:
                if str(choice) == text:
                    return choice
            raise ValueError(f"choose one of {', '.join(map(str, self.choices))}")
        return text


def _number(text: str) -> int | float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError("enter a number") from None
    if not math.isfinite(value):
        raise ValueError("enter a number")
    return int(value) if value.is_integer() and "." not in text else value


def _whole(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("enter a whole number") from None


def _kind(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    types = [declared] if isinstance(declared, str) else [t for t in declared or () if t != "null"]
    if not types and "enum" in schema:
        values = schema["enum"]
        types = ["boolean" if all(isinstance(v, bool) for v in values) else "string"]
    kind = types[0] if len(types) == 1 else "any"
    if kind == "string" and schema.get("format") == "email":
        return "email"
    return kind if kind in ("string", "integer", "number", "boolean", "object") else "any"


def arguments_of(schema: Mapping[str, Any]) -> list[Argument]:
    """Every argument path of a tool's input schema, parents before their fields."""
    found: list[Argument] = []

    def walk(node: Mapping[str, Any], prefix: str, inside_array: bool) -> None:
        for name, sub in node.get("properties", {}).items():
            inner, array = sub, False
            while inner.get("type") == "array":
                inner, array = inner.get("items", {}), True
            argument = Argument(
                path=f"{prefix}{name}",
                kind=_kind(inner),
                array=array,
                many=array or inside_array,
                choices=tuple(inner.get("enum", ())),
                description=str(sub.get("description", "")),
                fields=tuple(inner.get("properties", {})) if _kind(inner) == "object" else (),
            )
            found.append(argument)
            if argument.kind == "object":
                walk(inner, f"{argument.path}.", argument.many)

    walk(schema, "", False)
    return found


def tools_selected(catalog: Catalog, *, app: str | None, tool: str, risk: str | None) -> list[str]:
    """The tools a rule with this app, tool pattern and risk would apply to; none if the pattern is malformed."""
    try:
        probe = Rule.model_validate(
            {"effect": "allow", "scope": "workspace", "app": app, "tool": tool or "*", "risk": risk}
        )
    except ValueError:
        return []
    return matched_tools(probe, catalog)


def recipients_argument(
    catalog: Catalog, tools: Iterable[str], senders: Container[str] | None = None
) -> Argument | None:
    """``@recipients`` when every one of ``tools`` declares recipients (to, cc, bcc, attendees, channel…), else None.

    ``senders`` are the tools whose manifest names its recipients; a read tool whose e-mail filter was only
    inferred to be one (``contact_email``) sends nothing, so the form does not offer it there. Its title names
    the arguments it gathers, so a person sees that bcc cannot slip past it.
    """
    names: list[str] = []
    for name in tools:
        egress = catalog[name].egress
        if not egress or (senders is not None and name not in senders):
            return None
        names.extend(path.split(".")[0] for path in egress)
    if not names:
        return None
    gathered = list(dict.fromkeys(names))
    shown = ", ".join(gathered[:3]) + (", …" if len(gathered) > 3 else "")
    return Argument(
        path=RECIPIENTS,
        kind="recipient",
        many=True,
        title=f"All recipients ({shown})",
        description="Every recipient of the call, whichever argument names it",
    )


def common_arguments(catalog: Catalog, tools: Iterable[str], senders: Container[str] | None = None) -> list[Argument]:
    """The arguments every one of ``tools`` has, with the same type: a condition must fit each tool it covers.

    ``@recipients`` comes first when every tool declares recipients: it is the test that cannot be escaped
    by moving an address from to into bcc.
    """
    tools = list(tools)
    shared: dict[str, Argument] | None = None
    for name in tools:
        here = {a.path: a for a in arguments_of(catalog[name].input_schema)}
        shared = here if shared is None else {p: a for p, a in shared.items() if p in here and _alike(here[p], a)}
    everyone = recipients_argument(catalog, tools, senders)
    return [*([everyone] if everyone else []), *(shared or {}).values()]


def _alike(one: Argument, other: Argument) -> bool:
    return (one.kind, one.array, one.many, one.choices, one.fields) == (
        other.kind,
        other.array,
        other.many,
        other.choices,
        other.fields,
    )

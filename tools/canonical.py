"""Canonical arguments: the one form of a call that is digested, decided on, shown to a person and run.

A rule must never decide on a value the provider reads differently (``#EXEC`` for
``exec``, a mailbox with a second ``@``), so every value with more than one spelling
is put in its single form here, before anything else sees the call; adapters take it
as it is. The step is pure and idempotent: canonical arguments canonicalise to
themselves, so it may safely run again on a stored call.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from tools.errors import InvalidArguments
from tools.mail import canonical_mailbox

if TYPE_CHECKING:
    from tools.context import ToolContext

#: A JSON value: what a call's arguments hold once ``_check_json`` has let them through.
Json: TypeAlias = bool | int | float | str | list["Json"] | dict[str, "Json"] | None
JsonObject: TypeAlias = dict[str, Json]

#: An app's canonical form of one string argument; it raises ValueError saying what is wrong.
Hook = Callable[[str], str]

#: An app's canonical form of one string argument that only its provider knows (a Slack channel id's name);
#: it raises InvalidArguments naming the argument, or ToolError when the provider cannot answer.
Resolver = Callable[["ToolContext", str], Awaitable[str]]


def canonicalize(schema: dict[str, Any], arguments: dict[str, Any], hooks: Mapping[str, Hook]) -> dict[str, Any]:
    """Arguments in their canonical form; InvalidArguments naming each field that has none.

    Values of a type the schema does not expect are left for schema validation to report.
    """
    problems: dict[str, str] = {}
    _check_json(arguments, problems)
    if problems:
        raise InvalidArguments(problems)
    result = _mailboxes_in(schema, arguments, (), problems)
    for path, hook in hooks.items():
        result = _apply_in(result, path.split("."), (), hook, problems)
    if problems:
        raise InvalidArguments(problems)
    return result


async def resolve(ctx: ToolContext, arguments: dict[str, Any], hooks: Mapping[str, Resolver]) -> dict[str, Any]:
    """Canonical arguments with each value at a resolver's path in the form its provider gives it.

    Each distinct value is asked about once, and the answer replaces it wherever it occurs.
    """
    for path, hook in hooks.items():
        values = {value for value in values_at(arguments, path) if isinstance(value, str)}
        answers = {value: await hook(ctx, value) for value in sorted(values)}
        arguments = _apply_in(arguments, path.split("."), (), answers.__getitem__, {})
    return arguments


def values_at(arguments: dict[str, Any], path: str) -> list[Any]:
    """Every value at a dotted path, arrays on the way and at the end flattened, in order."""
    found: list[Any] = [arguments]
    for name in path.split("."):
        found = [item[name] for item in _flat(found) if isinstance(item, dict) and name in item]
    return _flat(found)


def recipients(arguments: dict[str, Any], paths: tuple[str, ...]) -> tuple[str, ...]:
    """The string values at the egress paths, in order, each once."""
    values = (value for path in paths for value in values_at(arguments, path) if isinstance(value, str))
    return tuple(dict.fromkeys(values))


def _flat(values: list[Any]) -> list[Any]:
    return [item for value in values for item in (value if isinstance(value, list) else [value])]


def _field(path: tuple[str | int, ...]) -> str:
    """A field named as schema errors name it: ``to.0``."""
    return ".".join(map(str, path)) or "(arguments)"


def _check_json(arguments: object, problems: dict[str, str]) -> None:
    """Only JSON values, and only valid Unicode: a lone surrogate has no UTF-8 form any provider could read."""
    if not isinstance(arguments, dict):
        problems["(arguments)"] = "must be an object"
        return
    pending: list[tuple[tuple[str | int, ...], object]] = [((), arguments)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if not _valid_unicode(value):
                problems.setdefault(_field(path), "contains invalid Unicode (a lone surrogate)")
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or not _valid_unicode(key):
                    problems.setdefault(_field(path), "has a key that is not valid Unicode text")
                else:
                    pending.append(((*path, key), item))
        elif isinstance(value, list):
            pending.extend(((*path, index), item) for index, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.setdefault(_field(path), "must be a finite number")
        elif not (value is None or isinstance(value, bool | int | float)):
            problems.setdefault(_field(path), "is not a JSON value")


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _mailboxes(schema: object, value: Json, path: tuple[str | int, ...], problems: dict[str, str]) -> Json:
    """A copy of ``value`` with every string the schema declares ``format: email`` made a canonical mailbox."""
    if not isinstance(schema, dict):
        return value
    if schema.get("format") == "email" and isinstance(value, str):
        try:
            return canonical_mailbox(value)
        except ValueError as exc:
            problems.setdefault(_field(path), f"not one plain e-mail address (local@domain): it {exc}")
            return value
    if isinstance(value, list):
        most = schema.get("maxItems")
        if isinstance(most, int) and len(value) > most:
            # Refused before any item is parsed: 100,000 addresses must not cost seconds to turn away.
            problems.setdefault(_field(path), f"has {len(value):,} items; at most {most} are allowed")
            return value
        items = schema.get("items")
        return [_mailboxes(items, item, (*path, index), problems) for index, item in enumerate(value)]
    if isinstance(value, dict):
        return _mailboxes_in(schema, value, path, problems)
    return value


def _mailboxes_in(
    schema: object, value: JsonObject, path: tuple[str | int, ...], problems: dict[str, str]
) -> JsonObject:
    """``_mailboxes`` for an object, which stays an object."""
    if not isinstance(schema, dict):
        return value
    properties = schema.get("properties") or {}
    others = schema.get("additionalProperties")
    return {key: _mailboxes(properties.get(key, others), item, (*path, key), problems) for key, item in value.items()}


def _apply(value: Json, names: list[str], path: tuple[str | int, ...], hook: Hook, problems: dict[str, str]) -> Json:
    """A copy of ``value`` with ``hook`` applied to the strings at the dotted path ``names``."""
    if isinstance(value, list):
        return [_apply(item, names, (*path, index), hook, problems) for index, item in enumerate(value)]
    if names and isinstance(value, dict):
        return _apply_in(value, names, path, hook, problems)
    if not names and isinstance(value, str):
        try:
            return hook(value)
        except ValueError as exc:
            problems.setdefault(_field(path), str(exc))
    return value


def _apply_in(
    value: JsonObject, names: list[str], path: tuple[str | int, ...], hook: Hook, problems: dict[str, str]
) -> JsonObject:
    """``_apply`` for an object, which stays an object; ``names`` is not empty."""
    name, rest = names[0], names[1:]
    if name not in value:
        return value
    return {**value, name: _apply(value[name], rest, (*path, name), hook, problems)}

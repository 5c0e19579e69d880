"""What a person changed in a call before approving it, field by field, and the line that tells the assistant.

The assistant asked for one call and a person approved another: its result says so
("Approved with changes: subject 'Helo' → 'Hello'"), so it neither claims to have
done what it asked nor tries its own version again. Values are escaped as every
channel escapes them (``tools.summary``): control and invisible characters never
reach the assistant or a page raw.
"""

from __future__ import annotations

import json
from typing import Any

from tools.summary import escape

# A value longer than this is cut in the line (its length stated); ``changes`` in the result carries it whole.
LINE_VALUE_LIMIT = 80


def changes(original: dict[str, Any], edited: dict[str, Any]) -> list[dict[str, Any]]:
    """Each top-level argument that differs, in the order the assistant gave them then the added ones:
    ``{"field", "from", "to"}``, with ``None`` where it was or is now absent."""
    names = [*original, *(name for name in edited if name not in original)]
    return [
        {"field": name, "from": original.get(name), "to": edited.get(name)}
        for name in names
        if _canonical(original.get(name, _ABSENT)) != _canonical(edited.get(name, _ABSENT))
    ]


def changed_fields(original: dict[str, Any], edited: dict[str, Any]) -> tuple[str, ...]:
    return tuple(change["field"] for change in changes(original, edited))


def line(changed: list[dict[str, Any]]) -> str:
    """One line for the assistant: each field, what it asked, what runs instead."""
    parts = [f"{escape(c['field'])} {_shown(c['from'])} → {_shown(c['to'])}" for c in changed]
    return "Approved with changes: " + "; ".join(parts)


_ABSENT = object()


def _canonical(value: Any) -> Any:
    return value if value is _ABSENT else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    text = f"'{value}'" if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > LINE_VALUE_LIMIT:
        text = f"{text[: LINE_VALUE_LIMIT - 1]}… ({len(text)} characters)"
    return escape(text)

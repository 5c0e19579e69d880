"""The one summary of a call that a person approves, whichever channel shows it.

The in-chat message, the inbox card, the approval page and the e-mail notice all
show this text, so a person sees the same thing everywhere, and it must not lie:
every recipient is named in full on a line of its own, the sending connection is
named, a non-ASCII domain is shown as punycode with a warning, and every value is
escaped so that no argument can write a line of its own. Only values that say
nothing about who receives the call (a body, say) may be shortened, and then say
how long they are.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import idna

from store.connections import ConnectionView
from tools.canonical import values_at
from tools.mail import canonical_domain
from tools.registry import RegisteredTool

HEADLINE_VALUE_LIMIT = 80
DETAIL_VALUE_LIMIT = 200

#: How a recipient line is labelled, by the egress argument it comes from.
LABELS = {
    "to": "To",
    "cc": "Cc",
    "bcc": "Bcc",
    "reply_to": "Reply-To",
    "attendees": "Attendees",
    "channel": "Channel",
    "url": "URL",
}

#: Setup or option fields that hold the address a connection sends as, best first.
SENDER_FIELDS = ("from_address", "account_email", "account")

_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}

#: Combining marks kept on one character; more in a row are shown as escapes. Real writing stacks a few (a
#: Vietnamese vowel carries two, pointed Hebrew three or four); a stack of dozens is only there to draw over
#: the lines above and below it.
MARKS_IN_A_ROW = 4

#: Letters and symbols that draw as blank space though Unicode does not file them as spaces (Hangul fillers,
#: the Braille blank, Khmer's inherent vowels, the combining grapheme joiner): escaped like invisible ones.
_BLANK_LOOKING = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0")


def escape(text: str) -> str:
    """Text that shows every character it holds on one line: breaks, controls and invisible ones as escapes.

    A backslash is doubled, so an escape in the output can only come from the character it stands for. Combining
    marks past ``MARKS_IN_A_ROW`` on one character are escapes too: a screen stacks them above (or below) the
    letter, and a tall enough stack is drawn over the lines around it, a recipient's among them.
    """
    if text.isascii() and text.isprintable() and "\\" not in text:
        return text  # nothing to escape: most values, kept off the slow path below
    return _each(text, _escaped, _code)


def _each(text: str, shown: Callable[[str], str], past_marks: Callable[[str], str]) -> str:
    """``text`` with each character as ``shown`` shows it, and each mark past ``MARKS_IN_A_ROW`` on one character
    as ``past_marks`` does. A mark is a combining one (Mn, Me) or any character with a combining class: a
    spacing mark with one (U+1D165) is reordered among the others when text is normalized or drawn, so it must
    not start a new stack."""
    out: list[str] = []
    marks = 0
    for char in text:
        if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me"):
            marks += 1
            out.append(past_marks(char) if marks > MARKS_IN_A_ROW else shown(char))
        else:
            marks = 0
            out.append(shown(char))
    return "".join(out)


def _escaped(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    category = unicodedata.category(char)
    if category[0] == "C" or (category[0] == "Z" and char != " ") or char in _BLANK_LOOKING:
        return _code(char)
    return char


def _code(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def render(tool: RegisteredTool, arguments: dict[str, Any], connection: ConnectionView | None) -> str:
    """The call in plain text, lines separated by ``\\n``; the same arguments always give the same text."""
    egress = {path.split(".")[0] for path in tool.egress}
    lines = [_headline(tool, arguments, egress), *_through(tool, connection), f"Risk: {tool.risk.value}"]
    recipients: list[tuple[str, str]] = []
    for path in tool.egress:
        label = LABELS.get(path.split(".")[0], path.split(".")[0].replace("_", " ").capitalize())
        recipients.extend((label, value) for value in values_at(arguments, path) if isinstance(value, str))
    lines.extend(f"{label}: {escape(_ascii_domain(value))}" for label, value in recipients)
    warned = dict.fromkeys(w for _, value in recipients if (w := _domain_warning(value)) is not None)
    lines.extend(warned)
    listed = list(tool.spec.input_schema.get("properties", {})) if tool.spec.shown is None else tool.spec.shown
    shown = [name for name in listed if name in arguments and name not in egress]
    if shown:
        lines.append("Details:")
        lines.extend(f"  {escape(name)}: {_shortened(arguments[name], DETAIL_VALUE_LIMIT)}" for name in shown)
    hidden = sorted(name for name in arguments if name not in egress and name not in shown)
    if hidden:
        lines.append(f"Also set (see the full arguments): {escape(', '.join(hidden))}")
    return "\n".join(lines)


def recipient(value: str) -> str:
    """One recipient as the summary names it: escaped, with a non-ASCII domain as punycode."""
    return escape(_ascii_domain(value))


def full_arguments(arguments: dict[str, Any]) -> str:
    """Every argument as indented JSON in ASCII, so nothing invisible survives: the in-chat "see all" view."""
    return json.dumps(arguments, ensure_ascii=True, indent=2).replace("\x7f", "\\u007f")


def headline(tool: RegisteredTool, arguments: dict[str, Any], names: Mapping[str, str]) -> str:
    """The summary's first line with some ids said by the names of what they stand for (a meeting's title, quoted),
    as the manifest's ``shown_as`` reads them; a recipient is never among them, and is always shown whole."""
    return _headline(tool, arguments, {path.split(".")[0] for path in tool.egress}, names)


def _headline(
    tool: RegisteredTool, arguments: dict[str, Any], egress: set[str], names: Mapping[str, str] | None = None
) -> str:
    """The manifest's summary with its placeholders filled: recipients whole, other values shortened."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in arguments:
            return "…"
        value = arguments[name]
        if names and name in names and name not in egress:
            return f"“{_shortened(names[name], HEADLINE_VALUE_LIMIT)}”"
        if name in egress:
            items = value if isinstance(value, list) else [value]
            return ", ".join(escape(_ascii_domain(item)) if isinstance(item, str) else _json(item) for item in items)
        return _shortened(value, HEADLINE_VALUE_LIMIT)

    return re.sub(r"{([^{}]+)}", fill, tool.spec.summary) if tool.spec.summary else escape(tool.spec.title)


def _through(tool: RegisteredTool, connection: ConnectionView | None) -> list[str]:
    """Which app and connection act, and the address they send as where the connection has one."""
    app = escape(tool.manifest.name)
    if connection is None:
        return [f"Through: {app} (connection not known)"]
    label = escape(connection.label or connection.id)
    lines = [f"Through: {app}, connection “{label}” ({connection.scope.value})"]
    settings = {**connection.options, **connection.setup}
    sender = next((str(settings[name]) for name in SENDER_FIELDS if settings.get(name)), None)
    if sender is not None:
        name = settings.get("from_name")
        lines.append(f"Sender: {escape(f'{name} <{sender}>' if name else sender)}")
    return lines


def _shortened(value: Any, limit: int) -> str:
    """A value escaped, cut at ``limit`` characters with its full length stated."""
    text = value if isinstance(value, str) else _json(value)
    if len(text) <= limit:
        return escape(text) if isinstance(value, str) else text
    cut = escape(text[:limit]) if isinstance(value, str) else text[:limit]
    return f"{cut} [… {len(text):,} characters in all]"


def _json(value: Any) -> str:
    """A structured value as compact JSON, with anything invisible escaped as JSON escapes it."""
    text = json.dumps(value, ensure_ascii=False)
    # JSON has escaped its own backslashes and line breaks already; what is left unsafe gets a JSON escape, and
    # so does a stack of marks, as in any other value.
    return _each(
        text, lambda char: char if char == "\\" or _escaped(char) == char else _json_escape(char), _json_escape
    )


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _domain(value: str) -> str | None:
    """The domain a recipient reaches: a mailbox's, or a URL's host."""
    if "://" in value:
        try:
            return urlsplit(value).hostname
        except ValueError:
            return None
    return value.rpartition("@")[2] if "@" in value else None


def _ascii_domain(value: str) -> str:
    """A mailbox with its domain as punycode, in case it reached here before canonicalisation."""
    domain = _domain(value)
    if "://" in value or domain is None or domain.isascii():
        return value
    try:
        return f"{value.rpartition('@')[0]}@{canonical_domain(domain)}"
    except ValueError:
        return value


def _domain_warning(value: str) -> str | None:
    """A warning line for a domain that is not plain ASCII, naming the scripts its letters are written in."""
    domain = _domain(value)
    if domain is None:
        # A channel or another name, not an address: it may still imitate a familiar one.
        if value.isascii():
            return None
        return f"Warning: {escape(value)} is not plain ASCII ({_written(value)}); it may imitate a familiar name"
    shown = escape(_ascii_domain(value))
    if domain.isascii() and not any(label.startswith("xn--") for label in domain.lower().split(".")):
        return None
    try:
        letters = idna.decode(domain)
    except (idna.IDNAError, UnicodeError):
        letters = domain
    return (
        f"Warning: the domain of {shown} is not plain ASCII ({_written(letters)}); it is shown as punycode, "
        "and may imitate a familiar domain"
    )


def _written(letters: str) -> str:
    """Which scripts the letters of a name are written in, in words."""
    scripts = sorted({unicodedata.name(c, "UNKNOWN").split(" ")[0].title() for c in letters if c.isalpha()})
    mixed = f"mixing {', '.join(scripts[:-1])} and {scripts[-1]} letters" if len(scripts) > 1 else ""
    return mixed or (f"written in {scripts[0]} letters" if scripts else "written in non-ASCII characters")

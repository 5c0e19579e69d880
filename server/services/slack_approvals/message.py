"""What a Slack approval message says, in Block Kit: the whole story of the call as its card tells it
(``server.services.cards``, set out as text by ``server.services.card_text``), who asked through which assistant,
the expiry, and the buttons; once decided, what became of it instead of the buttons.

Everything the assistant chose (its arguments, the names read for its ids, its own name) is escaped for Slack's
mrkdwn: ``&``, ``<`` and ``>`` become entities, so no argument can write a mention (``<!channel>``), a link
(``<https://evil|click>``) or a user reference; and the text is ``verbatim``, so Slack does not turn a bare
address or ``#channel`` into a link either. What shows is what the text says.

A message offers Approve only when it shows the whole request: every recipient, every argument, the message as it
will be sent, why it asks. Slack holds 50 blocks of at most 3,000 characters; a request longer than that shows its
start and a note to open it, and no Approve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.services import card_text, cards
from server.services.card_text import Entry, Part
from store import approval_notices

#: Slack's limits: characters in a section's text, fields in a section, blocks in a message.
SECTION_CHARS = 3000
SECTION_FIELDS = 10
MESSAGE_BLOCKS = 50
#: The blocks a message has besides the request: the header, who asked, the note or the outcome, the buttons.
AROUND = 4
#: A value longer than this is quoted below its label rather than beside it, and an argument's label and value
#: longer than this go across the message rather than in a column (Slack's own limit for a field is 2,000).
SHORT = 300
TOO_LONG = "_The rest of this request is too long for Slack: open it to read all of it._"

APPROVE, DENY, OPEN = "approve", "deny", "open"
DENY_FORM = "deny"
REASON = "reason"
REASON_CHARS = 500

WHERE = {
    "web": "in the console",
    "api": "over the API",
    "cli": "in the command line",
    "slack": "in Slack",
    "elicitation": "in the assistant",
    "email": "from an e-mail link",
}


def mrkdwn(text: str) -> str:
    """``text`` as Slack's mrkdwn shows it literally: its three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True)
class Card:
    """One approval as a Slack message shows it: its story as the approver it is sent to reads it."""

    approval_id: str
    app_name: str
    story: cards.Card
    expires_at: datetime
    page_url: str


@dataclass(frozen=True)
class _Line:
    """A line of a section: Companion's markup (``lead``), then text already escaped. A line too long for one
    section goes on in the next after ``again``: a quoted line stays quoted, any other says it goes on."""

    lead: str
    text: str
    again: str = "…"


def _text(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def _lines(entry: Entry) -> list[_Line]:
    """An entry across the message: ``*Label:* value``, or ``*Label*`` with each line of a text quoted below it,
    or each item of a list."""
    value, quoted = mrkdwn(entry.value), [mrkdwn(line) for line in entry.lines]
    if entry.label is not None and len(value) > SHORT:
        # Quoted below the label, a long value stays marked as the value's in every section it runs into.
        value, quoted = "", [value, *quoted]
    note = f"_{mrkdwn(entry.note)}_" if entry.note else ""
    said = " ".join(part for part in (value, note) if part)
    label = ""
    if entry.label is not None:
        # Beside its value a label ends with a colon; above a value's lines it stands alone, as in a column.
        label = f"*{mrkdwn(entry.label)}:* " if said else f"*{mrkdwn(entry.label)}*"
    head = [_Line(label, said)] if label or said else []
    return [
        *head,
        *(_Line(">", line, again=">") for line in quoted),
        *(_Line("• ", mrkdwn(item)) for item in entry.items),
    ]


def _column(entry: Entry) -> str | None:
    """An argument as a field of a section (Slack sets two side by side), or None if it is too long for one."""
    if entry.label is None or entry.lines:
        return None
    value = [mrkdwn(entry.value)] if entry.value else []
    note = f" _{mrkdwn(entry.note)}_" if entry.note else ""
    text = "\n".join([f"*{mrkdwn(entry.label)}*", *value, *(f"• {mrkdwn(item)}" for item in entry.items)]) + note
    return text if len(text) <= SHORT else None


def _cut(line: _Line) -> list[str]:
    """The line as pieces that each fit a section; an entity is never split between two."""
    pieces, lead, rest = [], line.lead, line.text
    if len(lead) > SECTION_CHARS // 2:
        # A label as long as a section (an argument's name may be the assistant's) is cut as the text is.
        lead, rest = "", lead + rest
    while len(lead) + len(rest) > SECTION_CHARS:
        at = SECTION_CHARS - len(lead)
        # Every "&" in escaped text begins an entity, of at most five characters.
        entity = rest.rfind("&", at - 4, at)
        if entity != -1 and rest.find(";", entity) >= at:
            at = entity
        pieces.append(lead + rest[:at])
        lead, rest = line.again, rest[at:]
    return [*pieces, lead + rest]


def _sections(lines: Sequence[_Line]) -> list[dict[str, Any]]:
    """The lines in as few sections as hold them, each line whole where it fits in one."""
    texts: list[str] = []
    for line in lines:
        for piece in _cut(line):
            if texts and len(texts[-1]) + 1 + len(piece) <= SECTION_CHARS:
                texts[-1] += "\n" + piece
            else:
                texts.append(piece)
    return [{"type": "section", "text": _text(text)} for text in texts]


def _arguments(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """The arguments in their order: short ones in columns, ten to a section, longer ones across the message."""
    blocks: list[dict[str, Any]] = []
    lines: list[_Line] = []
    columns: list[str] = []
    for entry in entries:
        column = _column(entry)
        if column is None:
            blocks += _fields(columns)
            columns = []
            lines += _lines(entry)
        else:
            blocks += _sections(lines)
            lines = []
            columns.append(column)
    return [*blocks, *_sections(lines), *_fields(columns)]


def _fields(columns: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {"type": "section", "fields": [_text(c) for c in columns[start : start + SECTION_FIELDS]]}
        for start in range(0, len(columns), SECTION_FIELDS)
    ]


def _titled(title: str, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The part's title in bold above its first block: in that block where it fits."""
    head = f"*{mrkdwn(title)}*"
    first, rest = blocks[0], blocks[1:]
    if "text" not in first:
        return [{"type": "section", "text": _text(head), "fields": first["fields"]}, *rest]
    if len(head) + 1 + len(first["text"]["text"]) <= SECTION_CHARS:
        return [{"type": "section", "text": _text(f"{head}\n{first['text']['text']}")}, *rest]
    return [{"type": "section", "text": _text(head)}, *blocks]


def _part(part: Part) -> list[dict[str, Any]]:
    if part.arguments:
        blocks = _arguments(part.entries)
    else:
        blocks = _sections([line for entry in part.entries for line in _lines(entry)])
    return _titled(part.title, blocks) if part.title and blocks else blocks


def _request(card: Card) -> tuple[list[dict[str, Any]], bool]:
    """The request's blocks, as many as a message holds beside the blocks around them, and whether they are all
    of it."""
    blocks = [block for part in card_text.parts(card.story) for block in _part(part)]
    room = MESSAGE_BLOCKS - AROUND
    if len(blocks) <= room:
        return blocks, True
    return [*blocks[: room - 1], {"type": "section", "text": _text(TOO_LONG)}], False


def shows_in_full(card: Card) -> bool:
    """Whether a message can show the whole request. Approve is offered only then: a request cut short could hide
    the very recipient or argument at its end (the assistant chooses how long the rest is)."""
    return _request(card)[1]


def _button(action_id: str, label: str, value: str, *, style: str) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "text": _plain(label), "style": style, "value": value}


def _open(card: Card) -> dict[str, Any]:
    """A link button: Slack opens the approval page, and tells Companion of the press, which decides nothing."""
    return {
        "type": "button",
        "action_id": OPEN,
        "text": _plain("Open"),
        "url": card.page_url,
        "value": card.approval_id,
    }


def _date(at: datetime) -> str:
    """A time every reader sees in their own time zone, with UTC for clients that cannot."""
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def _asked(card: Card) -> dict[str, Any]:
    """Who asked through which assistant, and until when it waits."""
    asked_by = card.story.asked_by
    asked_by = asked_by if len(asked_by) <= 1000 else asked_by[:999] + "…"
    return {
        "type": "section",
        "fields": [_text(f"*Asked by*\n{mrkdwn(asked_by)}"), _text(f"*Expires*\n{_date(card.expires_at)}")],
    }


def _header(card: Card) -> dict[str, Any]:
    return {"type": "header", "text": _plain(f"Approval request: {card.app_name}"[:150])}


def waiting(card: Card) -> dict[str, Any]:
    """The message while the approval waits: ``text`` for notifications, ``blocks`` for the message itself."""
    request, whole = _request(card)
    buttons = [
        *([_button(APPROVE, "Approve", card.approval_id, style="primary")] if whole else []),
        _button(DENY, "Deny", card.approval_id, style="danger"),
        _open(card),
    ]
    note = "Nothing runs until it is approved." if whole else "Open it to read all of it and approve it there."
    blocks = [
        _header(card),
        _asked(card),
        *request,
        {"type": "context", "elements": [_text(note)]},
        {"type": "actions", "block_id": "decide", "elements": buttons},
    ]
    return {"text": mrkdwn(f"Approval waiting in {card.app_name}: {card.story.headline}"), "blocks": blocks}


@dataclass(frozen=True)
class Outcome:
    """What became of the approval, for the message that replaces the buttons."""

    shown: str
    decided_by: str | None = None
    via: str | None = None
    reason: str | None = None
    decided_at: datetime | None = None
    edited: bool = False


def outcome_line(outcome: Outcome) -> str:
    """The outcome in words, escaped (a reason is the decider's own text)."""
    by = mrkdwn(outcome.decided_by) if outcome.decided_by else None
    how = ", ".join(
        part
        for part in (
            WHERE.get(outcome.via, f"via {mrkdwn(outcome.via)}") if outcome.via else "",
            _date(outcome.decided_at) if outcome.decided_at else "",
        )
        if part
    )
    how = f" {how}" if how else ""
    if outcome.shown == approval_notices.APPROVED:
        verb = "Approved with changes" if outcome.edited else "Approved"
        return f"*{verb} by {by or 'a rule'}*{how}."
    if outcome.shown == approval_notices.DENIED:
        because = f": {mrkdwn(outcome.reason)}" if outcome.reason else "."
        return f"*Denied by {by or 'a person'}*{how}{because}"
    if outcome.shown == approval_notices.WITHDRAWN:
        return "*Withdrawn* by the person who asked. Nothing runs."
    if by is not None:
        return f"*Expired.* Approved by {by}{how}, but the call did not run before its time was up."
    return "*Expired.* Nobody decided in time, so the call did not run."


def settled(card: Card, outcome: Outcome) -> dict[str, Any]:
    """The message once the approval is decided anywhere, or expired: the same request, the outcome instead of the
    buttons, and a link to the approval page."""
    line = outcome_line(outcome)
    blocks = [
        _header(card),
        _asked(card),
        *_request(card)[0],
        {"type": "section", "text": _text(line)},
        {"type": "actions", "block_id": "settled", "elements": [_open(card)]},
    ]
    return {"text": mrkdwn(f"{card.app_name}: ") + line, "blocks": blocks}


def deny_form(card: Card, metadata: str) -> dict[str, Any]:
    """The modal Deny opens: the request again, as the message shows it, and the reason, which the assistant is
    told."""
    return {
        "type": "modal",
        "callback_id": DENY_FORM,
        "private_metadata": metadata,
        "title": _plain("Deny this request"),
        "submit": _plain("Deny"),
        "close": _plain("Cancel"),
        "blocks": [
            *_request(card)[0],
            {
                "type": "input",
                "block_id": REASON,
                "label": _plain("Why? The assistant is told."),
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON,
                    "multiline": True,
                    "max_length": REASON_CHARS,
                },
            },
        ],
    }

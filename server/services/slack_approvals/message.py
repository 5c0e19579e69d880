"""What a Slack approval message says, in Block Kit: the whole story of the call as its card tells it
(``server.services.cards``, set out by ``server.services.card_text``), who asked through which assistant, the
expiry, and the buttons; once decided, what became of it instead of the buttons.

Everything the assistant chose (its arguments, the names read for its ids, the summary's quoted values, its own
name) is a ``text`` element of a ``rich_text`` block, which Slack shows character for character. mrkdwn would not
do: it has no escape for ``*``, ``_``, ``~`` or a backtick, so ``evil_corp_@x.test`` would read there as an italic
``evilcorp@x.test``. Nor can a text element write a mention, a link or a date: those are elements of their own.
Companion's own words are set apart by the elements' style (its labels bold, its notes italic), never by
characters, so no value can pass for a label. mrkdwn carries only Companion's own words, and the notification
``text`` names no more than the app.

A message offers Approve only when it shows the whole request: every recipient, every argument, the message as it
will be sent, why it asks. Slack documents 50 blocks a message and no limit for a ``rich_text`` block, but refuses
a message whose blocks hold much more than 12,000 characters in all (``msg_blocks_too_long``, slackapi/bolt-js
issues 2509 and 2867). A request is given ``REQUEST_CHARS`` of them; a longer one shows its start and a note to
open it, and no Approve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.services import card_text, cards
from server.services.card_text import Entry, Part
from store import approval_notices

#: The characters of text a request may take in a message; with all around it (who asked, the outcome and its
#: reason, the buttons: at most about 2,200) a message stays well under the 12,000 Slack takes.
REQUEST_CHARS = 7000
#: Slack's limit for a header's text.
HEADER_CHARS = 150
#: The assistant's name and the person it acts for, beyond which the message says no more of them.
ASKED_CHARS = 1000
TOO_LONG = "The rest of this request is too long for Slack: open it to read all of it."
#: Said, in Companion's italics, for a value that has no characters at all.
EMPTY = "(empty)"

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
    """``text`` with mrkdwn's three control characters as entities, for Companion's own words (an app's name):
    nothing else can be escaped in mrkdwn, so nothing the assistant chose is put there."""
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
class Message:
    """A message as ``chat.postMessage`` and ``chat.update`` take it, and whether it offers Approve."""

    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    approve: bool = False

    def payload(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


# -- rich text: the assistant's characters as they are, Companion's words by their style ------------------------


def _run(text: str, *, bold: bool = False, italic: bool = False) -> dict[str, Any]:
    run: dict[str, Any] = {"type": "text", "text": text}
    style = {name: True for name, on in (("bold", bold), ("italic", italic)) if on}
    return {**run, "style": style} if style else run


def _value(text: str) -> dict[str, Any]:
    """A value as it is; an empty one said so (a text element holds at least one character)."""
    return _run(text) if text else _run(EMPTY, italic=True)


def _section(*runs: dict[str, Any]) -> dict[str, Any]:
    return {"type": "rich_text_section", "elements": list(runs)}


def _date(at: datetime) -> dict[str, Any]:
    """A time every reader sees in their own time zone, with UTC for clients that cannot."""
    return {
        "type": "date",
        "timestamp": int(at.timestamp()),
        "format": "{date_short_pretty} at {time}",
        "fallback": at.strftime("%Y-%m-%d %H:%M UTC"),
    }


def _rich(elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "rich_text", "elements": elements}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _chars(element: dict[str, Any]) -> int:
    """The characters of text a rich text element holds."""
    if "elements" in element:
        return sum(_chars(inner) for inner in element["elements"])
    return len(element.get("text", ""))


def _leading(elements: list[dict[str, Any]], room: int) -> list[dict[str, Any]]:
    """The elements' first ``room`` characters of text, as they are set out: the element the end falls in is cut
    there."""
    kept: list[dict[str, Any]] = []
    for element in elements:
        if room <= 0:
            break
        size = _chars(element)
        if size <= room:
            kept.append(element)
            room -= size
            continue
        if "elements" in element:
            inner = _leading(element["elements"], room)
            if inner:
                kept.append({**element, "elements": inner})
        else:
            kept.append({**element, "text": element["text"][:room]})
        break
    return kept


# -- the request ------------------------------------------------------------------------------------------------


def _rows(entry: Entry) -> list[dict[str, Any]]:
    """An entry as rich text: ``Label: value`` on a line, or the label with a text's lines quoted below it, or a
    list's items as bullets; a line the card says as it is, as it is."""
    below = bool(entry.lines or entry.items)
    if entry.label is None:
        head = [_run(entry.value)] if entry.value else []
    elif below:
        head = [_run(entry.label, bold=True)]
    else:
        head = [_run(f"{entry.label}: ", bold=True), _value(entry.value)]
    note = [_run(f" {entry.note}" if head else entry.note, italic=True)] if entry.note else []
    rows = [_section(*head, *note)] if head or note else []
    if entry.lines:
        # Every line of the value inside one quote: none of them can pass for a line of Companion's.
        rows.append({"type": "rich_text_quote", "elements": [_value("\n".join(entry.lines))]})
    if entry.items:
        rows.append(
            {"type": "rich_text_list", "style": "bullet", "elements": [_section(_value(i)) for i in entry.items]}
        )
    return rows


def _part(part: Part) -> list[dict[str, Any]]:
    rows = [row for entry in part.entries for row in _rows(entry)]
    return [_section(_run(part.title, bold=True)), *rows] if part.title and rows else rows


def _request(card: Card) -> tuple[list[dict[str, Any]], bool]:
    """The request's blocks, a rich text block a part, and whether they are all of it: a request longer than
    ``REQUEST_CHARS`` shows its start, then says it goes on."""
    parts = [rows for part in card_text.parts(card.story) if (rows := _part(part))]
    if sum(_chars(row) for rows in parts for row in rows) <= REQUEST_CHARS:
        return [_rich(rows) for rows in parts], True
    blocks, room = [], REQUEST_CHARS
    for rows in parts:
        kept = _leading(rows, room)
        if kept:
            blocks.append(_rich(kept))
        room -= sum(_chars(row) for row in kept)
    return [*blocks, _rich([_section(_run(TOO_LONG, italic=True))])], False


# -- around the request -----------------------------------------------------------------------------------------


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


def _asked(card: Card) -> dict[str, Any]:
    """Who asked through which assistant, and until when it waits."""
    asked_by = card.story.asked_by
    asked_by = asked_by if len(asked_by) <= ASKED_CHARS else asked_by[: ASKED_CHARS - 1] + "…"
    return _rich(
        [
            _section(_run("Asked by: ", bold=True), _value(asked_by)),
            _section(_run("Expires: ", bold=True), _date(card.expires_at)),
        ]
    )


def _header(card: Card) -> dict[str, Any]:
    return {"type": "header", "text": _plain(f"Approval request: {card.app_name}"[:HEADER_CHARS])}


def waiting(card: Card) -> Message:
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
        {"type": "context", "elements": [_mrkdwn(note)]},
        {"type": "actions", "block_id": "decide", "elements": buttons},
    ]
    return Message(f"An approval is waiting for you in {mrkdwn(card.app_name)}.", blocks, approve=whole)


@dataclass(frozen=True)
class Outcome:
    """What became of the approval, for the message that replaces the buttons."""

    shown: str
    decided_by: str | None = None
    via: str | None = None
    reason: str | None = None
    decided_at: datetime | None = None
    edited: bool = False


def outcome_rows(outcome: Outcome) -> list[dict[str, Any]]:
    """The outcome as rich text: the decider's address and reason as they are (a reason is their own words)."""
    by = outcome.decided_by
    how = [_run(f" {WHERE.get(outcome.via, f'via {outcome.via}')}")] if outcome.via else []
    if outcome.decided_at:
        how += [_run(", " if how else " "), _date(outcome.decided_at)]
    if outcome.shown == approval_notices.APPROVED:
        verb = "Approved with changes" if outcome.edited else "Approved"
        return [_section(_run(f"{verb} by {by or 'a rule'}", bold=True), *how, _run("."))]
    if outcome.shown == approval_notices.DENIED:
        said = _section(_run(f"Denied by {by or 'a person'}", bold=True), *how, _run(":" if outcome.reason else "."))
        reason = outcome.reason[:REASON_CHARS] if outcome.reason else ""
        return [said, {"type": "rich_text_quote", "elements": [_run(reason)]}] if reason else [said]
    if outcome.shown == approval_notices.WITHDRAWN:
        return [_section(_run("Withdrawn", bold=True), _run(" by the person who asked. Nothing runs."))]
    if by is not None:
        return [
            _section(
                _run("Expired.", bold=True),
                _run(f" Approved by {by}"),
                *how,
                _run(", but the call did not run before its time was up."),
            )
        ]
    return [_section(_run("Expired.", bold=True), _run(" Nobody decided in time, so the call did not run."))]


def settled(card: Card, outcome: Outcome) -> Message:
    """The message once the approval is decided anywhere, or expired: the same request, the outcome instead of the
    buttons, and a link to the approval page."""
    blocks = [
        _header(card),
        _asked(card),
        *_request(card)[0],
        _rich(outcome_rows(outcome)),
        {"type": "actions", "block_id": "settled", "elements": [_open(card)]},
    ]
    return Message(f"Approval request in {mrkdwn(card.app_name)}: {outcome.shown}.", blocks)


@dataclass(frozen=True)
class Denial:
    """What the Deny form shows: the one summary every channel shows (``tools.summary``), kept with the approval,
    so the form is made without reading through the app and opens within Slack's three seconds."""

    app_name: str
    summary: str


def deny_form(denial: Denial, metadata: str) -> dict[str, Any]:
    """The modal Deny opens: the request's summary, and the reason, which the assistant is told."""
    lines = [_section(_run(line)) for line in denial.summary.split("\n") if line]
    shown = _leading(lines, REQUEST_CHARS)
    if shown != lines:
        shown.append(_section(_run(TOO_LONG, italic=True)))
    return {
        "type": "modal",
        "callback_id": DENY_FORM,
        "private_metadata": metadata,
        "title": _plain("Deny this request"),
        "submit": _plain("Deny"),
        "close": _plain("Cancel"),
        "blocks": [
            _rich([_section(_run(f"What the assistant asks in {denial.app_name}", bold=True)), *shown]),
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

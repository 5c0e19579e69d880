"""What a Slack approval message says, in Block Kit: the summary from the one renderer, who asked through which
assistant, the expiry, and the buttons; once decided, what became of it instead of the buttons.

Everything the assistant chose (the summary's arguments, its own name) is escaped for Slack's mrkdwn: ``&``,
``<`` and ``>`` become entities, so no argument can write a mention (``<!channel>``), a link
(``<https://evil|click>``) or a user reference; and the text is ``verbatim``, so Slack does not turn a bare
address or ``#channel`` into a link either. What shows is what the text says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from store import approval_notices

#: Slack's limits: characters in a section's text, blocks in a message.
SECTION_CHARS = 3000
MESSAGE_BLOCKS = 50
#: Sections the summary may fill, leaving room for the rest of the message.
SUMMARY_SECTIONS = 40

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
    """One approval as a Slack message shows it."""

    approval_id: str
    app_name: str
    summary: str
    #: "Claude on behalf of alice@acme.test" (``server.services.asked_by``), as plain text.
    asked_by: str
    risk: str
    expires_at: datetime
    page_url: str


def _text(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": False}


def _pieces(summary: str) -> list[str]:
    """The summary, escaped, cut into sections' texts; an entity is never split between two."""
    pieces: list[str] = [""]
    for char in summary:
        escaped = mrkdwn(char)
        if len(pieces[-1]) + len(escaped) > SECTION_CHARS:
            pieces.append("")
        pieces[-1] += escaped
    return [piece for piece in pieces if piece]


def shows_in_full(summary: str) -> bool:
    """Whether a message can show the whole summary. Approve is offered only then: a request cut short could
    hide the very recipient at its end (the assistant chooses how long the rest is)."""
    return len(_pieces(summary)) <= SUMMARY_SECTIONS


def _summary_sections(summary: str) -> list[dict[str, Any]]:
    """The summary in as many sections as it needs, or, past what one message holds, its start and a note."""
    sections = [{"type": "section", "text": _text(piece)} for piece in _pieces(summary)]
    if len(sections) > SUMMARY_SECTIONS:
        rest = "_The rest of this request is too long for Slack: open it to read all of it._"
        sections = [*sections[: SUMMARY_SECTIONS - 1], {"type": "section", "text": _text(rest)}]
    return sections


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


def _facts(card: Card) -> dict[str, Any]:
    """Who asked through which assistant, and until when it waits (the summary already says the risk)."""
    asked_by = card.asked_by if len(card.asked_by) <= 1000 else card.asked_by[:999] + "…"
    return {
        "type": "section",
        "fields": [_text(f"*Asked by*\n{mrkdwn(asked_by)}"), _text(f"*Expires*\n{_date(card.expires_at)}")],
    }


def _header(card: Card) -> dict[str, Any]:
    return {"type": "header", "text": _plain(f"Approval request: {card.app_name}"[:150])}


def waiting(card: Card) -> dict[str, Any]:
    """The message while the approval waits: ``text`` for notifications, ``blocks`` for the message itself."""
    whole = shows_in_full(card.summary)
    buttons = [
        *([_button(APPROVE, "Approve", card.approval_id, style="primary")] if whole else []),
        _button(DENY, "Deny", card.approval_id, style="danger"),
        _open(card),
    ]
    note = "Nothing runs until it is approved." if whole else "Open it to read all of it and approve it there."
    blocks = [
        _header(card),
        *_summary_sections(card.summary),
        _facts(card),
        {"type": "context", "elements": [_text(note)]},
        {"type": "actions", "block_id": "decide", "elements": buttons},
    ]
    return {"text": mrkdwn(f"Approval waiting in {card.app_name}: {card.summary}"), "blocks": blocks}


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
        *_summary_sections(card.summary),
        _facts(card),
        {"type": "section", "text": _text(line)},
        {"type": "actions", "block_id": "settled", "elements": [_open(card)]},
    ]
    return {"text": mrkdwn(f"{card.app_name}: ") + line, "blocks": blocks}


def deny_form(card: Card, metadata: str) -> dict[str, Any]:
    """The modal Deny opens: the request again, and the reason, which the assistant is told."""
    return {
        "type": "modal",
        "callback_id": DENY_FORM,
        "private_metadata": metadata,
        "title": _plain("Deny this request"),
        "submit": _plain("Deny"),
        "close": _plain("Cancel"),
        "blocks": [
            *_summary_sections(card.summary),
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

"""A card (``server.services.cards``) as labelled lines of text, for the channels that show text rather than a page:
the approval e-mail and the Slack message.

Each of them writes the same parts in its own markup, in the console's order: what will happen (the headline,
with ids said by name, and the summary's facts: the connection, every recipient, any warning), the message as its
recipient will see it, every argument labelled, and why it asks. Nothing is shortened here: a channel that cannot
show all of it says so, and offers no Approve.

Companion's own words (the labels, the titles, the notes) are kept apart from the card's text, which the assistant
chose, so a channel can mark them differently. A value is on its label's line when it is one line; a text of
several lines, and a list, keep each line or item apart below the label, where a channel marks each as the value's
(quoted, or as an item), so no line of a value can pass for one of Companion's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from server.services.cards import ArgumentField, Card, MessagePreview, Shown

DETAILS = "Details"
WHY = "Why it asks"
HIDDEN = "(hidden from the other recipients)"
UNCHANGED = "(unchanged)"


@dataclass(frozen=True)
class Entry:
    """One thing a card says: Companion's label for it (None for a line the card says as it is), then the value,
    on the label's line, or as a text's ``lines`` or a list's ``items`` below it, each apart."""

    label: str | None = None
    value: str = ""
    lines: tuple[str, ...] = ()
    items: tuple[str, ...] = ()
    #: Companion's words after the value.
    note: str = ""


@dataclass(frozen=True)
class Part:
    """Entries under Companion's title (none for the first part); ``arguments`` marks the call's arguments, which
    a channel may set out side by side."""

    title: str | None
    entries: tuple[Entry, ...]
    arguments: bool = False


def parts(card: Card) -> list[Part]:
    """The card's story in the order every channel tells it."""
    told = [Part(None, tuple(Entry(value=line) for line in (card.headline, *card.facts)))]
    if card.message is not None:
        told.append(_message(card.message))
    if card.fields:
        told.append(Part(DETAILS, tuple(entry for f in card.fields for entry in _field(f)), arguments=True))
    if card.why:
        told.append(Part(WHY, (Entry(value=" ".join(card.why)),)))
    return told


def _message(preview: MessagePreview) -> Part:
    email = preview.kind == "email"
    entries = [Entry("From" if email else "Posted as", preview.sender)] if preview.sender else []
    # One recipient a line, as the summary has them: "a@x.test, b@y.test" as one value never reads as two.
    entries += [
        Entry(label, value, note=HIDDEN if label == "Bcc" else "")
        for label, values in preview.headers
        for value in values
    ]
    if preview.subject is not None:
        entries.append(Entry("Subject", preview.subject))
    if preview.body is not None:
        entries.append(Entry("Body" if email else "Text", lines=tuple(preview.body.text.split("\n"))))
    if preview.body_note:
        entries.append(Entry(note=preview.body_note))
    title = "The e-mail as its recipients will see it" if email else "The message as the channel will see it"
    return Part(title, tuple(entries))


def _field(field: ArgumentField) -> list[Entry]:
    """An argument: its value; the name of what an id stands for beside the id; or, for an update, what it is now
    and what it becomes, each on a line of its own (so neither can pass for the other)."""
    if field.current is not None and not field.unchanged:
        return [_value(f"{field.label} (now)", field.current), _value(f"{field.label} (new)", field.value)]
    if field.named is not None:
        return [Entry(field.label, f"{field.named} ({_one_line(field.value.text)})")]
    entry = _value(field.label, field.value)
    return [replace(entry, note=UNCHANGED) if field.unchanged else entry]


def _value(label: str, shown: Shown) -> Entry:
    if shown.items:
        return Entry(label, items=tuple(_one_line(item) for item in shown.items))
    if "\n" in shown.text:
        return Entry(label, lines=tuple(shown.text.split("\n")))
    return Entry(label, shown.text)


def _one_line(text: str) -> str:
    """A value whose lines the card kept apart, on one line: its breaks as ``\\n``, as ``tools.summary.escape``
    writes them (each line is escaped already, so a ``\\n`` in the text reads ``\\\\n``)."""
    return text.replace("\n", "\\n")

"""Red team: what an adversarial assistant can make the approval display show, with only its agent key and the
arguments it sends (tools/summary.py ``escape``, the inbox's cut cards, the batch page's grouping).

Each test is a defence. Where the red team first found a hole, the docstring says how it was made and what
fixed it. A strict xfail whose reason starts "ACCEPTED:" is a difference left visible only on the approval page,
for the reason it gives.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.services import cards
from server.services.approval_batch import identical
from server.services.cards import LONG_CHARACTERS, LONG_LINES, ArgumentField, _shown, _text
from server.services.slack_approvals import message as slack_message
from server.web import approval_cards
from store.models import Approval, utcnow
from tests.conftest import alices_meeting
from tests.marks import longest_run_of_marks
from tests.test_approval_mail import mailed  # noqa: F401 (a fixture)
from tests.test_console_settings import mailing, postbox  # noqa: F401 (fixtures mailed needs)
from tools.summary import MARKS_IN_A_ROW, escape, render

ACUTE = "\u0301"  # combining acute accent: Mn, canonical combining class 230 (above)
STEM = "\U0001d165"  # musical symbol combining stem: Mc, yet canonical combining class 216
INBOX_CSS = Path(approval_cards.__file__).parent / "static" / "inbox.css"


def seen_in_html(text: str) -> str:
    """Text as a browser lays it out under ``white-space: normal``: runs of spaces and line breaks are one space."""
    return re.sub(r"\s+", " ", text).strip()


# -- 1. towers of marks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "marks",
    [
        ACUTE * 60,  # the plain Zalgo tower
        "\u20dd\u20e0\u20d2" * 20,  # enclosing and overlay marks (Me, Mn)
        "\u0489" * 60,  # Cyrillic millions sign (Me)
        "\ufe0f\ufe0e" * 30 + "\U000e0100" * 10,  # variation selectors (Mn)
        "\u0e49\u0e47\u0e4c" * 20,  # Thai tone marks stacking
        "\u0f90\u0f91\u0fb2" * 20,  # Tibetan subjoined letters stacking below
        "\u1ab0\u1dc0\u0361" * 20,  # extended and double-width marks
    ],
)
def test_a_stack_of_marks_keeps_four_on_its_letter_and_shows_the_rest_as_escapes(marks: str) -> None:
    shown = escape("a" + marks)
    assert longest_run_of_marks(shown) == MARKS_IN_A_ROW
    assert shown.count("\\u") + shown.count("\\U") == len(marks) - MARKS_IN_A_ROW


@pytest.mark.parametrize("blank", ["\u3164", "\u115f", "\u1160", "\uffa0", "\u2800", "\u180e"])
def test_letters_that_draw_as_nothing_are_escapes(blank: str) -> None:
    """A blank-looking letter is not a mark, so it would restart the count unseen; it is an escape instead."""
    assert escape(f"a{ACUTE * 4}{blank}{ACUTE * 4}") == f"a{ACUTE * 4}\\u{ord(blank):04x}{ACUTE * 4}"


@pytest.mark.parametrize("splitter", ["\u200d", "\u200b", "\x00", "\u2028", "\u061c", "\u2066"])
def test_an_invisible_splitter_restarts_the_count_only_by_showing_itself(splitter: str) -> None:
    """A joiner (or a control) between two stacks is an escape of its own: the second stack stands on its
    visible last letter, not on the first stack."""
    shown = escape("a" + (ACUTE * 4 + splitter) * 10)
    assert splitter not in shown and longest_run_of_marks(shown) == MARKS_IN_A_ROW
    assert re.fullmatch(r"a(\u0301{4}\\(x|u)[0-9a-f]+)+", shown)


def test_precomposed_letters_carry_their_own_marks_only() -> None:
    """NFC letters (ǘ is u with two marks) add at most what one letter carries, not a stack."""
    shown = escape("\u01d8" + ACUTE * 20)
    assert longest_run_of_marks(unicodedata.normalize("NFD", shown)) <= MARKS_IN_A_ROW + 2


def test_a_tower_cannot_be_rebuilt_from_short_stacks_by_canonical_reordering() -> None:
    """Once a hole: ``"a" + ("\\u0301" * 4 + "\\U0001d165") * 10``. When ``escape`` counted only Mn/Me, each
    U+1D165 (Mc, yet combining class 216) restarted the count and every acute stayed raw. Canonical ordering
    sorts a run of non-zero-class marks by class, so U+1D165 moves ahead of the acutes (230): in NFC, and as
    HarfBuzz lays it out, one letter with 39 acutes, drawn over the Bcc line above it in every channel. Now every
    character with a combining class counts as a mark (tools/summary.py ``_each``)."""
    shown = escape("a" + (ACUTE * 4 + STEM) * 10)
    assert longest_run_of_marks(unicodedata.normalize("NFC", shown)) <= MARKS_IN_A_ROW


@pytest.mark.anyio
async def test_a_tower_inside_an_object_is_escaped_in_the_summary(companion: Any) -> None:
    """Once a hole: ``salesforce_update_record`` with ``fields={"Description": "a" + "\\u0316" * 150}`` (any
    object or list argument). The summary renders a non-string with ``_json``, which escaped only controls, so
    all 150 marks stayed raw in the headline of every channel, the batch row and the in-chat approval, drawn down
    over the lines under it. ``_json`` now applies the same marks rule as ``escape`` (``_each``)."""
    tool = companion.gateway.registry.tools["salesforce_update_record"]
    arguments = {"object": "Contact", "id": "003Dn00000AbCdEIAV", "fields": {"Description": "a" + "\u0316" * 150}}
    summary = render(tool, arguments, None)
    assert longest_run_of_marks(summary) <= MARKS_IN_A_ROW


@pytest.mark.anyio
async def test_the_rebuilt_tower_reaches_the_email_body(mailed: Any) -> None:  # noqa: F811 (the fixture)
    """The rebuilt tower, measured where Alice reads it: the e-mail body holds no stack of more than four."""
    companion, ask = mailed
    meeting = await alices_meeting(companion)
    body = await ask("harmony_create_action_item", {"meeting_id": meeting, "text": "a" + (ACUTE * 4 + STEM) * 10})
    assert longest_run_of_marks(unicodedata.normalize("NFC", body)) <= MARKS_IN_A_ROW


@pytest.mark.anyio
async def test_a_plain_tower_reaches_the_email_body_as_escapes(mailed: Any) -> None:  # noqa: F811 (the fixture)
    companion, ask = mailed
    meeting = await alices_meeting(companion)
    body = await ask("harmony_create_action_item", {"meeting_id": meeting, "text": "Call Bob" + ACUTE * 200})
    assert longest_run_of_marks(unicodedata.normalize("NFC", body)) <= MARKS_IN_A_ROW and "\\u0301" in body


def slack_text(value: str) -> str:
    """Every text element of the Slack message for a card whose one argument is ``value``, a Bcc line above it."""
    field = ArgumentField("text", "Text", _shown(value))
    story = cards.Card("apr_1", "Claude on behalf of you", utcnow(), "Do it", ("Bcc: a@acme.test",), (field,), None, ())
    sent = slack_message.waiting(slack_message.Card("apr_1", "Notes", story, utcnow(), "http://c.test/approvals/apr_1"))
    return "\n".join(texts_in(sent.blocks))


def texts_in(node: Any) -> list[str]:
    if isinstance(node, list):
        return [text for item in node for text in texts_in(item)]
    if isinstance(node, dict):
        own = [node["text"]] if isinstance(node.get("text"), str) else []
        return own + [text for value in node.values() if isinstance(value, list | dict) for text in texts_in(value)]
    return []


def test_a_plain_tower_reaches_slack_as_escapes() -> None:
    assert longest_run_of_marks(unicodedata.normalize("NFC", slack_text("Call Bob" + ACUTE * 200))) <= MARKS_IN_A_ROW


def test_the_rebuilt_tower_reaches_slack_as_escapes() -> None:
    assert (
        longest_run_of_marks(unicodedata.normalize("NFC", slack_text("a" + (ACUTE * 4 + STEM) * 10))) <= MARKS_IN_A_ROW
    )


# -- 2. the inbox's cut cards ---------------------------------------------------------------------------------


def test_a_value_just_under_the_thresholds_is_shown_whole_and_one_just_over_is_cut() -> None:
    six = "\n".join(["Thanks!", "", "", "", "", "Bcc: all@acme.test"])
    assert not _text(six, full=False).cut and "Bcc: all@acme.test" in _text(six, full=False).text
    assert _text(six + "\nx", full=False).cut
    assert not _text("x" * LONG_CHARACTERS, full=False).cut and _text("x" * (LONG_CHARACTERS + 1), full=False).cut
    # Line breaks counted as a browser draws them: "\r" alone is escaped, so it makes no line.
    assert "\\r" in _text("a\r" * LONG_LINES * 2, full=False).text


def test_objects_and_long_lists_are_never_cut_silently() -> None:
    """An object is JSON, cut like text past the thresholds; a list shows every item whole, however long, so the
    inbox never offers Approve over a part it does not show."""
    nested = {"a": {"b": {"c": ["d", {"e": "Bcc: x@evil.test"}]}}}
    assert _shown(nested, full=False).cut
    small = {"k": "Bcc: x@evil.test"}
    assert "Bcc: x@evil.test" in _shown(small, full=False).text and not _shown(small, full=False).cut
    many = [f"item {i} " + "y" * 300 for i in range(40)]
    shown = _shown(many, full=False)
    assert shown.items is not None and list(shown.items) == many


@pytest.mark.anyio
async def test_numbers_strings_and_booleans_in_an_object_read_apart(companion: Any) -> None:
    """Salesforce's ``fields`` takes any scalar: 1, 1.0, "1" and true are four calls, and read as four."""
    tool = companion.gateway.registry.tools["salesforce_update_record"]
    values: list[Any] = [1, 1.0, "1", True, None, "null"]
    cards_shown = {_shown({"N": v}, full=False).text for v in values}
    summaries = {
        render(tool, {"object": "Contact", "id": "003Dn00000AbCdEIAV", "fields": {"N": v}}, None) for v in values
    }
    assert len(cards_shown) == len(summaries) == len(values)


def test_a_list_item_with_a_line_break_does_not_look_like_one_with_a_space() -> None:
    """Once a hole: a string-list argument (Linear's ``labels``) with the item ``"urgent\\nsecurity"`` drew, in an
    ``<li>`` without ``pre-wrap``, as "urgent security": two calls, one card. Now the item is escaped whole
    (server/services/cards.py ``_shown``) and ``.items li`` keeps its blanks (inbox.css)."""
    css = INBOX_CSS.read_text()
    items_rule = re.search(r"\.approval \.items li \{[^}]*\}", css)
    pre = items_rule is not None and "pre" in items_rule.group(0)
    broken, spaced = _shown(["urgent\nsecurity"]).items, _shown(["urgent security"]).items
    assert broken is not None and spaced is not None
    assert pre or seen_in_html(broken[0]) != seen_in_html(spaced[0])


def test_a_one_line_value_keeps_its_spaces() -> None:
    """Once a hole: ``"Pay Bob  100"`` and ``"Pay Bob 100"`` (or ``" Pay"`` and ``"Pay"``) drew the same while
    only multi-line values were ``pre-wrap``. Now every ``.text`` is (inbox.css)."""
    css = INBOX_CSS.read_text()
    assert re.search(r"\.approval \.text[ ,{][^}]*pre-wrap", css) or (
        seen_in_html(_shown("Pay Bob  100").text) != seen_in_html(_shown("Pay Bob 100").text)
    )


@pytest.mark.xfail(
    strict=True,
    reason="ACCEPTED: a line ending is not shown; an escape at the end of every line of a CRLF body would make "
    "the common case unreadable, and the approval page's full arguments show it",
)
def test_crlf_and_lf_text_do_not_look_the_same() -> None:
    """Steps: two calls, one ``text`` "a\\r\\nb", the other "a\\nb". ``_text`` splits on ``\\r?\\n`` and joins
    with "\\n", so both cards (inbox and page) read the same; only the page's full arguments tell them apart, and
    the inbox offers Approve on each. Impact: informational (a line ending). Location:
    server/services/cards.py ``_LINE_BREAK``. Fix: show a "\\r" before a line break as ``\\r``."""
    assert _shown("a\r\nb", full=False).text != _shown("a\nb", full=False).text


# -- 3. the batch page -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_batch_summary_names_every_recipient_whole(companion: Any) -> None:
    tool = companion.gateway.registry.tools["email_send_email"]
    bcc = [f"{'x' * 60}{i}@{'sub.' * 10}evil.test" for i in range(48)]
    arguments = {
        "to": ["bob@client.test"],
        "bcc": bcc,
        "subject": "s" * 500,
        "body_text": "Hi\nBcc: nobody@acme.test\n" + "z" * 5000,
    }
    summary = render(tool, arguments, None)
    lines = summary.split("\n")
    assert all(f"Bcc: {address}" in lines for address in bcc) and "To: bob@client.test" in lines
    # The body is cut and says so; its fake "Bcc:" line stays inside the escaped value.
    assert "[… 5,025 characters in all]" in summary and "Bcc: nobody@acme.test" not in lines


@pytest.mark.anyio
async def test_two_calls_differing_only_in_a_recipient_are_two_batch_rows(companion: Any, demo_keys: Any) -> None:
    assistant = await companion.principal_for(demo_keys.keys["alice@acme.test"])
    meeting = await alices_meeting(companion)
    asked = []
    for arguments in (
        {"meeting_id": meeting, "text": "Call Erin", "assignee_email": "erin@acme.test"},
        {"meeting_id": meeting, "text": "Call Erin", "assignee_email": "erin@evil.test"},
        {"meeting_id": meeting, "text": "Call Erin ", "assignee_email": "erin@acme.test"},
        {"meeting_id": meeting, "text": "Call\u00a0Erin", "assignee_email": "erin@acme.test"},
    ):
        result = await companion.gateway.call(assistant, "harmony_create_action_item", arguments)
        assert result.data is not None and result.data["status"] == "approval_required", result.message
        asked.append(result.data["approval_id"])
    async with companion.db.session() as session:
        approvals = list(await session.scalars(select(Approval).where(Approval.id.in_(asked))))
    assert len(identical(approvals)) == len(set(asked)) == 4

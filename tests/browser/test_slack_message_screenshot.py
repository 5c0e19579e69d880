"""A picture of a Slack approval message, drawn from the blocks the Slack fake received.

Slack's own client cannot be driven here, so the test draws the Block Kit the server sent as Slack lays it out
(header, rich text with its bold and italic elements, quotes, lists and dates, context, buttons), in Chromium: once
as the approver first sees it, once after they approved it from Slack. With
``COMPANION_SCREENSHOTS=docs/screenshots`` it renews the picture in the docs, and the blocks beside it as
``slack-approval.json``; in the suite both go to a scratch folder.
"""

from __future__ import annotations

import copy
import html
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.test_slack_approvals import ALICE, ASK, slack_world

pytestmark = pytest.mark.anyio

STYLE = """
body { margin: 0; padding: 24px; background: #f8f8f8; font: 15px/1.46668 -apple-system, "Segoe UI", "Helvetica Neue",
       "DejaVu Sans", Arial, sans-serif; color: #1d1c1d; width: 720px; }
h2 { font-size: 12px; font-weight: 700; text-transform: uppercase; letter-spacing: .06em; color: #616061;
     margin: 0 0 8px; }
.msg { display: flex; gap: 10px; background: #fff; border: 1px solid #dddddd; border-radius: 8px; padding: 14px 16px;
       margin-bottom: 24px; }
.avatar { width: 36px; height: 36px; border-radius: 6px; background: #4a154b; color: #fff; font-weight: 700;
          display: flex; align-items: center; justify-content: center; flex: none; }
.who { font-weight: 900; } .app { font-size: 10px; background: #e8e8e8; color: #616061; border-radius: 2px;
       padding: 1px 3px; margin-left: 4px; vertical-align: 2px; } .time { color: #616061; font-size: 12px; }
.header { font-size: 18px; font-weight: 900; margin: 6px 0 4px; }
.section { margin: 6px 0; white-space: pre-wrap; overflow-wrap: anywhere; }
.fields { display: grid; grid-template-columns: 1fr 1fr; gap: 8px 16px; margin: 8px 0; }
.fields div { white-space: pre-wrap; }
.rich { margin: 6px 0; }
.rich > div { white-space: pre-wrap; overflow-wrap: anywhere; }
.quote { border-left: 4px solid #dddddd; padding-left: 10px; margin: 2px 0; }
.rich ul { margin: 2px 0; padding-left: 22px; }
.context { color: #616061; font-size: 13px; margin: 6px 0; }
.actions { display: flex; gap: 8px; margin-top: 10px; }
.button { border: 1px solid #bbbabb; border-radius: 4px; padding: 0 12px; height: 28px; display: inline-flex;
          align-items: center; font-weight: 700; font-size: 13px; background: #fff; color: #1d1c1d; }
.primary { background: #007a5a; border-color: #007a5a; color: #fff; }
.danger { background: #fff; border-color: #e01e5a; color: #e01e5a; }
"""

DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")


def shown(mrkdwn: str) -> str:
    """What Slack shows for mrkdwn (Companion's own words only): dates by their fallback, entities as characters,
    *bold* in bold, _italics_ in italics."""
    text = html.escape(html.unescape(DATE.sub(r"\1", mrkdwn)), quote=False)
    text = re.sub(r"\*([^*\n]+)\*", r"<b>\1</b>", text)
    return re.sub(r"(?<!\w)_([^_\n]+)_(?!\w)", r"<i>\1</i>", text)


def text_of(text: dict[str, Any]) -> str:
    return shown(text["text"]) if text["type"] == "mrkdwn" else html.escape(text["text"])


def runs_html(elements: list[dict[str, Any]]) -> str:
    """A rich text section's elements: each text element's characters as they are, in its style; a date by its
    fallback."""
    drawn = ""
    for element in elements:
        if element["type"] == "date":
            drawn += html.escape(element["fallback"])
            continue
        assert element["type"] == "text", f"a rich text element the picture does not draw: {element['type']}"
        text, style = html.escape(element["text"], quote=False), element.get("style", {})
        text = f"<b>{text}</b>" if style.get("bold") else text
        drawn += f"<i>{text}</i>" if style.get("italic") else text
    return drawn


def rich_html(block: dict[str, Any]) -> str:
    parts = []
    for element in block["elements"]:
        kind = element["type"]
        if kind == "rich_text_section":
            parts.append(f"<div>{runs_html(element['elements'])}</div>")
        elif kind == "rich_text_quote":
            parts.append(f'<div class="quote">{runs_html(element["elements"])}</div>')
        elif kind == "rich_text_list":
            items = "".join(f"<li>{runs_html(item['elements'])}</li>" for item in element["elements"])
            parts.append(f"<ul>{items}</ul>")
        else:
            raise AssertionError(f"a rich text object the picture does not draw: {kind}")
    return '<div class="rich">' + "".join(parts) + "</div>"


def block_html(block: dict[str, Any]) -> str:
    kind = block["type"]
    if kind == "header":
        return f'<div class="header">{text_of(block["text"])}</div>'
    if kind == "section":
        parts = [f'<div class="section">{text_of(block["text"])}</div>'] if "text" in block else []
        if "fields" in block:
            parts.append(
                '<div class="fields">' + "".join(f"<div>{text_of(f)}</div>" for f in block["fields"]) + "</div>"
            )
        return "".join(parts)
    if kind == "rich_text":
        return rich_html(block)
    if kind == "context":
        return '<div class="context">' + " ".join(text_of(e) for e in block["elements"]) + "</div>"
    if kind == "actions":
        return (
            '<div class="actions">'
            + "".join(
                f'<span class="button {e.get("style", "")}">{html.escape(e["text"]["text"])}'
                + (" ↗" if "url" in e else "")
                + "</span>"
                for e in block["elements"]
            )
            + "</div>"
        )
    raise AssertionError(f"a block the picture does not draw: {kind}")


def page(messages: list[tuple[str, dict[str, Any]]]) -> str:
    drawn = "".join(
        f"<h2>{html.escape(title)}</h2>"
        '<div class="msg"><div class="avatar">H</div><div>'
        '<span class="who">Harmony Companion</span><span class="app">APP</span> <span class="time">11:42</span>'
        + "".join(block_html(b) for b in message["blocks"])
        + "</div></div>"
        for title, message in messages
    )
    return f"<!doctype html><html><head><meta charset='utf-8'><style>{STYLE}</style></head><body>{drawn}</body></html>"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("COMPANION_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def test_a_slack_approval_message_as_the_approver_sees_it(settings, registry, chromium, shots):
    async with slack_world(settings, registry) as world:
        title = await world.meeting_title()
        approval_id = await world.ask_for(
            ASK,
            {
                "meeting_id": world.meeting,
                "text": "Send Carol the *final* pricing sheet <!channel>\nand the signed_NDA_v2 ~today~",
                "assignee_email": "alice@acme.test",
                "due_date": "2026-12-11",
            },
        )
        # As received: the fake keeps one copy of each message, which the update then changes.
        posted = copy.deepcopy(world.message_to(ALICE, approval_id))
        await world.press(ALICE, posted, "approve")
        decided = await world.updated(posted, "Approved by")
    received = {
        "chat.postMessage": {"channel": ALICE, "text": posted["text"], "blocks": posted["blocks"]},
        "chat.update": {key: decided[key] for key in ("channel", "ts", "text", "blocks")},
    }
    (shots / "slack-approval.json").write_text(json.dumps(received, indent=2, ensure_ascii=False) + "\n")
    drawn = page([("Waiting for Alice", posted), ("After Alice approved it in Slack", decided)])
    context = await chromium.new_context(viewport={"width": 768, "height": 600}, device_scale_factor=2)
    try:
        tab = await context.new_page()
        await tab.set_content(drawn)
        # The argument shows character for character, its mention and its marks as text, as Slack shows rich text;
        # the meeting by its title; why it asks.
        assert await tab.get_by_text("*final* pricing sheet <!channel>").count() >= 1
        assert await tab.get_by_text("signed_NDA_v2 ~today~").count() >= 1
        assert await tab.get_by_text(f"“{title}”").count() >= 1
        assert await tab.get_by_text("Why it asks").count() == 2
        await tab.screenshot(path=str(shots / "slack-approval.png"), full_page=True)
    finally:
        await context.close()
    assert (shots / "slack-approval.png").stat().st_size > 10_000

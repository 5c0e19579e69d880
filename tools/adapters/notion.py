"""Notion, through its REST API (https://api.notion.com/v1), version 2022-06-28.

Every request names the API version in the ``Notion-Version`` header (the
manifest's ``api.headers``); Notion refuses one without it. Lists come back as ``{"object": "list", "results",
"next_cursor", "has_more"}`` and take ``start_cursor``/``page_size``. A page's
title lives in whichever of its properties has type ``title``; a database's in
its own ``title`` array. Content is a list of blocks, at most 100 per request,
each holding rich text whose text pieces are at most 2,000 characters long.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from manifests import MANIFEST_DIR
from tools.arguments import Arguments
from tools.context import ToolContext
from tools.errors import InvalidArguments, ToolError

#: The manifest this adapter carries out; the entry point in pyproject.toml registers the pair.
MANIFEST = MANIFEST_DIR / "notion.yaml"

MAX_BLOCKS = 100
MAX_TEXT = 2000
HEADINGS = {"#": "heading_1", "##": "heading_2", "###": "heading_3"}
BULLETS = ("- ", "* ")
UUID = re.compile(r"^([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})$", re.I)
# A Notion URL ends its path with the page's id, after the title slug: /Meeting-notes-1a2b...; ?v= names a view.
URL_ID = re.compile(r"^https?://[^/?#]*notion\.(?:so|site|com)/(?:[^?#]*[/-])?([0-9a-f]{32})(?:[?#]|$)", re.I)


class Search(Arguments):
    query: str | None = None
    object: Literal["page", "database"] | None = None
    limit: int = 20
    cursor: str | None = None


class CreatePage(Arguments):
    title: str
    parent_page_id: str | None = None
    parent_database_id: str | None = None
    content: str | None = None


class AppendToPage(Arguments):
    page_id: str
    content: str


async def _notion(ctx: ToolContext, method: str, path: str, **kwargs: Any) -> Any:
    """One call to Notion's API; the version header it requires comes from the manifest."""
    return await ctx.api.json(method, path, **kwargs)


def notion_id(value: str) -> str:
    """Canonical page or database id: the dashed lower-case UUID, from an id with or without dashes or a Notion URL.

    It runs before any rule decides, so a rule on a page holds however the page is written.
    """
    text = value.strip()
    found = URL_ID.match(text)
    plain = found.group(1) if found else text
    parts = UUID.match(plain)
    if parts is None:
        raise ValueError("is neither a Notion id nor a Notion page URL")
    return "-".join(parts.groups()).lower()


def _plain(rich_text: list[dict[str, Any]]) -> str:
    return "".join(str(part.get("plain_text", "")) for part in rich_text)


def _title(item: dict[str, Any]) -> str:
    if item.get("object") == "database":
        return _plain(item.get("title") or [])
    for prop in (item.get("properties") or {}).values():
        if prop.get("type") == "title":
            return _plain(prop.get("title") or [])
    return ""


def _rich_text(text: str) -> list[dict[str, Any]]:
    """Text as rich text, cut into pieces Notion accepts.

    Notion limits each piece to 2,000 characters as JavaScript counts them, in
    UTF-16 code units, so a character outside the BMP (most emoji) counts twice.
    """
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if size + width > MAX_TEXT:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(char)
        size += width
    if current:
        pieces.append("".join(current))
    return [{"type": "text", "text": {"content": piece}} for piece in pieces]


def _block(kind: str, text: str) -> dict[str, Any]:
    return {"object": "block", "type": kind, kind: {"rich_text": _rich_text(text)}}


def blocks_of(content: str) -> list[dict[str, Any]]:
    """Blocks from plain text with a little Markdown: headings, bulleted items and paragraphs.

    Lines that follow one another form one paragraph and keep their line
    breaks, as a person typing notes meant them; a blank line ends it.
    """
    blocks: list[dict[str, Any]] = []
    paragraph: list[str] = []

    def end_paragraph() -> None:
        if paragraph:
            blocks.append(_block("paragraph", "\n".join(paragraph)))
            paragraph.clear()

    for line in content.splitlines():
        stripped = line.strip()
        marker, _, rest = stripped.partition(" ")
        if not stripped:
            end_paragraph()
        elif marker in HEADINGS and rest.strip():
            end_paragraph()
            blocks.append(_block(HEADINGS[marker], rest.strip()))
        elif stripped.startswith(BULLETS) and stripped[2:].strip():
            end_paragraph()
            blocks.append(_block("bulleted_list_item", stripped[2:].strip()))
        else:
            paragraph.append(line.rstrip())
    end_paragraph()
    if len(blocks) > MAX_BLOCKS:
        raise InvalidArguments(
            {
                "content": f"makes {len(blocks)} blocks and Notion takes at most {MAX_BLOCKS} at once; add the rest "
                "with notion_append_to_page"
            }
        )
    return blocks


async def bot_user(ctx: ToolContext) -> str:
    """Test connection: the bot user the credentials act as, and who connected it."""
    me = await _notion(ctx, "GET", "/v1/users/me")
    bot = me.get("bot") or {}
    owner = bot.get("owner") or {}
    if owner.get("type") == "user" and (owner.get("user") or {}).get("name"):
        return f"Connected to Notion as {owner['user']['name']}"
    name = me.get("name") or "an integration"
    workspace = bot.get("workspace_name")
    return f"Connected to Notion as {name} in {workspace}" if workspace else f"Connected to Notion as {name}"


async def search(ctx: ToolContext, arguments: Search) -> dict[str, Any]:
    body: dict[str, Any] = {"page_size": arguments.limit}
    if arguments.query:
        body["query"] = arguments.query
    if arguments.object:
        body["filter"] = {"property": "object", "value": arguments.object}
    if arguments.cursor:
        body["start_cursor"] = arguments.cursor
    # Search changes nothing, so a 5xx may be retried though it is a POST.
    found = await _notion(ctx, "POST", "/v1/search", json=body, idempotent=True)
    return {
        "results": [
            {
                "id": item["id"],
                "object": item["object"],
                "title": _title(item),
                "url": item.get("url", ""),
                "last_edited_time": item.get("last_edited_time", ""),
            }
            for item in found["results"]
        ],
        "next_cursor": found.get("next_cursor"),
    }


async def _title_property(ctx: ToolContext, database_id: str) -> str:
    """The name of a database's title property: each database names its own ("Name", "Task", ...)."""
    database = await _notion(ctx, "GET", f"/v1/databases/{database_id}")
    for name, prop in (database.get("properties") or {}).items():
        if prop.get("type") == "title":
            return str(name)
    raise ToolError("Notion returned a database without a title property.", code="provider_error")


async def create_page(ctx: ToolContext, arguments: CreatePage) -> dict[str, Any]:
    children = blocks_of(arguments.content or "")
    title = {"title": _rich_text(arguments.title)}
    if arguments.parent_page_id is not None and arguments.parent_database_id is None:
        parent = {"page_id": arguments.parent_page_id}
        # A page inside a page has one property, its title, always named "title".
        properties = {"title": title}
    elif arguments.parent_database_id is not None and arguments.parent_page_id is None:
        parent = {"database_id": arguments.parent_database_id}
        properties = {await _title_property(ctx, arguments.parent_database_id): title}
    else:
        problem = "give exactly one of parent_page_id and parent_database_id"
        raise InvalidArguments({"parent_page_id": problem, "parent_database_id": problem})
    body: dict[str, Any] = {"parent": parent, "properties": properties}
    if children:
        body["children"] = children
    page = await _notion(ctx, "POST", "/v1/pages", json=body)
    return {
        "id": page["id"],
        "title": _title(page),
        "url": page.get("url", ""),
        "created_time": page.get("created_time", ""),
        "blocks": len(children),
    }


async def append_to_page(ctx: ToolContext, arguments: AppendToPage) -> dict[str, Any]:
    page_id = arguments.page_id
    children = blocks_of(arguments.content)
    if not children:
        raise InvalidArguments({"content": "has no text to add"})
    # A PATCH here adds blocks, so the client layer does not repeat it after a 5xx: the first may have landed.
    appended = await _notion(ctx, "PATCH", f"/v1/blocks/{page_id}/children", json={"children": children})
    block_ids = [str(block["id"]) for block in appended["results"]]
    return {"page_id": page_id, "blocks": len(block_ids), "block_ids": block_ids}

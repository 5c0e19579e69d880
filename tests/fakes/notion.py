"""A fake of Notion's REST API, version 2022-06-28: search, pages, databases, block children, the bot user.

Requests must carry ``Notion-Version``; bodies are checked against the limits
Notion documents (100 blocks, 2,000 characters of text per rich text piece,
page_size up to 100), and errors come back in Notion's shape:
``{"object": "error", "status", "code", "message"}``. Pages and databases are
found only when shared with the integration, which here means: present.

Notion's OAuth tokens do not expire and come without a refresh token, so the
token endpoint's answer carries neither ``expires_in`` nor ``refresh_token``.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import Failure, ProviderFake

VERSION = "2022-06-28"
TEXT_BLOCKS = {"paragraph", "heading_1", "heading_2", "heading_3", "bulleted_list_item", "numbered_list_item"}
ERROR_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "restricted_resource",
    404: "object_not_found",
    409: "conflict_error",
    429: "rate_limited",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

Endpoint = Callable[[Request], Awaitable[Response]]


def error(status: int, code: str, message: str) -> JSONResponse:
    body = {"object": "error", "status": status, "code": code, "message": message, "request_id": str(uuid.uuid4())}
    return JSONResponse(body, status_code=status)


def invalid(message: str) -> JSONResponse:
    """Notion's answer to a body that does not match the endpoint's schema."""
    return error(400, "validation_error", message)


def not_shared(kind: str, object_id: str) -> JSONResponse:
    return error(
        404,
        "object_not_found",
        f"Could not find {kind} with ID: {object_id}. "
        "Make sure the relevant pages and databases are shared with your integration.",
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def rich_text(content: str) -> list[dict[str, Any]]:
    """Rich text as Notion returns it: the text, its plain form and default annotations."""
    annotations = dict.fromkeys(("bold", "italic", "strikethrough", "underline", "code"), False)
    return [
        {
            "type": "text",
            "text": {"content": content, "link": None},
            "annotations": {**annotations, "color": "default"},
            "plain_text": content,
            "href": None,
        }
    ]


def _url(title: str, object_id: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-")
    return f"https://www.notion.so/{slug + '-' if slug else ''}{object_id.replace('-', '')}"


def _id_of(raw: str) -> str | None:
    """Notion takes ids with or without dashes."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


class NotionFake(ProviderFake):
    key_header = "Authorization"
    key_scheme = "Bearer"

    def __init__(self) -> None:
        super().__init__(
            [
                Route("/v1/users/me", self._versioned(self.me), methods=["GET"]),
                Route("/v1/search", self._versioned(self.search), methods=["POST"]),
                Route("/v1/databases/{database_id}", self._versioned(self.retrieve_database), methods=["GET"]),
                Route("/v1/pages", self._versioned(self.create_page), methods=["POST"]),
                Route("/v1/blocks/{block_id}/children", self._versioned(self.append_children), methods=["PATCH"]),
            ],
            authorize_path="/v1/oauth/authorize",
            token_path="/v1/oauth/token",
        )
        self.owner: dict[str, Any] = {
            "object": "user",
            "id": str(uuid.uuid4()),
            "name": "Alice Example",
            "avatar_url": None,
            "type": "person",
            "person": {"email": "alice@acme.test"},
        }
        self.bot: dict[str, Any] = {
            "object": "user",
            "id": str(uuid.uuid4()),
            "name": "Harmony Companion",
            "avatar_url": None,
            "type": "bot",
            "bot": {"owner": {"type": "user", "user": self.owner}, "workspace_name": "Acme"},
        }
        self.workspace_id = str(uuid.uuid4())
        # Pages and databases shared with the integration, newest first, the order search answers in.
        self.objects: list[dict[str, Any]] = []
        self.children: dict[str, list[dict[str, Any]]] = {}
        self.notes = self.add_page("Meeting notes")
        self.add_page("Roadmap")
        self.tasks = self.add_database(
            "Action items",
            {
                "Task": {"type": "title", "title": {}},
                "Status": {"type": "select", "select": {"options": [{"name": "Open"}, {"name": "Done"}]}},
                "Due": {"type": "date", "date": {}},
            },
        )

    # -- data a test sets up ------------------------------------------------------------------

    def add_page(
        self, title: str, parent: dict[str, Any] | None = None, *, page_id: str | None = None
    ) -> dict[str, Any]:
        page_id = page_id or str(uuid.uuid4())
        now = _now()
        page = {
            "object": "page",
            "id": page_id,
            "created_time": now,
            "last_edited_time": now,
            "created_by": {"object": "user", "id": self.bot["id"]},
            "last_edited_by": {"object": "user", "id": self.bot["id"]},
            "cover": None,
            "icon": None,
            "parent": parent or {"type": "workspace", "workspace": True},
            "archived": False,
            "properties": {"title": {"id": "title", "type": "title", "title": rich_text(title)}},
            "url": _url(title, page_id),
            "public_url": None,
        }
        self.objects.insert(0, page)
        self.children[page_id] = []
        return page

    def add_database(self, title: str, properties: dict[str, dict[str, Any]]) -> dict[str, Any]:
        database_id = str(uuid.uuid4())
        now = _now()
        database = {
            "object": "database",
            "id": database_id,
            "created_time": now,
            "last_edited_time": now,
            "title": rich_text(title),
            "description": [],
            "is_inline": False,
            "parent": {"type": "workspace", "workspace": True},
            "archived": False,
            "properties": {
                name: {"id": "title" if spec["type"] == "title" else secrets.token_hex(2), "name": name, **spec}
                for name, spec in properties.items()
            },
            "url": _url("", database_id),
            "public_url": None,
        }
        self.objects.insert(0, database)
        return database

    def find(self, kind: str, object_id: str) -> dict[str, Any] | None:
        return next((o for o in self.objects if o["object"] == kind and o["id"] == object_id), None)

    def page_text(self, page_id: str) -> list[tuple[str, str]]:
        """A page's blocks as (type, plain text) pairs, for a test to read."""
        return [
            (b["type"], "".join(t["plain_text"] for t in b[b["type"]]["rich_text"])) for b in self.children[page_id]
        ]

    # -- Notion's answers ---------------------------------------------------------------------

    def issue(self, *, expires_in: int | None = None) -> dict[str, Any]:
        """Notion's token response: a token with no lifetime (``expires_in`` has no say) and no refresh token."""
        access = "ntn_" + secrets.token_urlsafe(24)
        self.access_tokens[access] = math.inf
        return {
            "access_token": access,
            "token_type": "bearer",
            "bot_id": self.bot["id"],
            "workspace_id": self.workspace_id,
            "workspace_name": "Acme",
            "workspace_icon": None,
            "owner": {"type": "user", "user": self.owner},
            "duplicated_template_id": None,
            "request_id": str(uuid.uuid4()),
        }

    def unauthorized(self) -> Response:
        return error(401, "unauthorized", "API token is invalid.")

    def failure_response(self, failure: Failure) -> Response:
        if failure.body is not None:
            return JSONResponse(failure.body, status_code=failure.status, headers=failure.headers)
        code = ERROR_CODES.get(failure.status, "internal_server_error")
        message = (
            "You have been rate limited. Please try again in a few minutes."
            if failure.status == 429
            else f"scripted {failure.status}"
        )
        response = error(failure.status, code, message)
        response.headers.update(failure.headers)
        return response

    def _versioned(self, endpoint: Endpoint) -> Endpoint:
        """Notion answers nothing without a Notion-Version header; this fake speaks only 2022-06-28."""

        async def checked(request: Request) -> Response:
            version = request.headers.get("Notion-Version")
            if version is None:
                return error(
                    400,
                    "missing_version",
                    "Notion-Version header failed validation: Notion-Version header should be defined, "
                    "instead was `undefined`.",
                )
            if version != VERSION:
                return invalid(f"This fake answers Notion-Version {VERSION}, not {version}.")
            return await endpoint(request)

        return checked

    async def _body(self, request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return error(400, "invalid_json", "Error parsing JSON body.")
        if not isinstance(body, dict):
            return invalid("body failed validation: body should be an object.")
        return body

    async def me(self, request: Request) -> Response:
        return JSONResponse(self.bot)

    async def search(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        page_size = body.get("page_size", 100)
        if not isinstance(page_size, int) or not 1 <= page_size <= 100:
            return invalid(
                f"body failed validation: body.page_size should be a number between 1 and 100, "
                f"instead was `{page_size}`.",
            )
        found = self.objects
        search_filter = body.get("filter")
        if search_filter is not None:
            if search_filter.get("property") != "object" or search_filter.get("value") not in ("page", "database"):
                return invalid(
                    'body failed validation: body.filter.value should be `"page"` or `"database"`, '
                    f"instead was `{json.dumps(search_filter.get('value'))}`.",
                )
            found = [o for o in found if o["object"] == search_filter["value"]]
        query = str(body.get("query") or "").lower()
        found = [o for o in found if query in self._title_of(o).lower()]
        start = 0
        if body.get("start_cursor") is not None:
            cursor = _id_of(str(body["start_cursor"]))
            start = next((n for n, o in enumerate(found) if o["id"] == cursor), -1)
            if start < 0:
                return invalid(
                    f"body failed validation: body.start_cursor `{body['start_cursor']}` "
                    "is not a cursor of this search.",
                )
        chunk = found[start : start + page_size]
        more = start + page_size < len(found)
        return JSONResponse(
            {
                "object": "list",
                "results": chunk,
                "next_cursor": found[start + page_size]["id"] if more else None,
                "has_more": more,
                "type": "page_or_database",
                "page_or_database": {},
            }
        )

    def _title_of(self, item: dict[str, Any]) -> str:
        texts = (
            item["title"]
            if item["object"] == "database"
            else next(p["title"] for p in item["properties"].values() if p["type"] == "title")
        )
        return "".join(t["plain_text"] for t in texts)

    async def retrieve_database(self, request: Request) -> Response:
        raw = request.path_params["database_id"]
        database = self.find("database", _id_of(raw) or "")
        if database is None:
            return not_shared("database", raw)
        return JSONResponse(database)

    def _blocks(self, children: Any, where: str, parent_id: str) -> list[dict[str, Any]] | JSONResponse:
        """Check blocks against Notion's limits; return them as Notion would answer them."""
        if not isinstance(children, list):
            return invalid(f"body failed validation: {where} should be an array.")
        if len(children) > 100:
            return invalid(
                f"body failed validation: {where}.length should be ≤ `100`, instead was `{len(children)}`.",
            )
        made = []
        for n, block in enumerate(children):
            kind = block.get("type")
            if kind not in TEXT_BLOCKS or not isinstance(block.get(kind), dict):
                return invalid(f"body failed validation: {where}[{n}] is not a known block.")
            pieces = block[kind].get("rich_text")
            if not isinstance(pieces, list) or len(pieces) > 100:
                return invalid(
                    f"body failed validation: {where}[{n}].{kind}.rich_text.length should be ≤ `100`.",
                )
            for m, piece in enumerate(pieces):
                content = (piece.get("text") or {}).get("content")
                if not isinstance(content, str):
                    return invalid(
                        f"body failed validation: {where}[{n}].{kind}.rich_text[{m}].text."
                        "content should be defined, instead was `undefined`.",
                    )
                if _utf16_length(content) > 2000:
                    return invalid(
                        f"body failed validation: {where}[{n}].{kind}.rich_text[{m}].text.content.length "
                        f"should be ≤ `2000`, instead was `{_utf16_length(content)}`.",
                    )
            now = _now()
            made.append(
                {
                    "object": "block",
                    "id": str(uuid.uuid4()),
                    "parent": {"type": "page_id", "page_id": parent_id},
                    "created_time": now,
                    "last_edited_time": now,
                    "has_children": False,
                    "archived": False,
                    "type": kind,
                    kind: {
                        "rich_text": [r for p in pieces for r in rich_text(p["text"]["content"])],
                        "color": "default",
                        **({"is_toggleable": False} if kind.startswith("heading") else {}),
                    },
                }
            )
        return made

    async def create_page(self, request: Request) -> Response:
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        parent = body.get("parent") or {}
        if ("page_id" in parent) == ("database_id" in parent):
            return invalid(
                "body failed validation. Fix one: body.parent.page_id should be defined, instead was `undefined`. "
                "body.parent.database_id should be defined, instead was `undefined`.",
            )
        kind = "page" if "page_id" in parent else "database"
        raw = str(parent[f"{kind}_id"])
        container = self.find(kind, _id_of(raw) or "")
        if container is None:
            return not_shared(kind, raw)
        properties = body.get("properties")
        if not isinstance(properties, dict):
            return invalid(
                "body failed validation: body.properties should be defined, instead was `undefined`.",
            )
        known = container["properties"] if kind == "database" else {"title": {"type": "title"}}
        for name, value in properties.items():
            if name not in known:
                return invalid(f"{name} is not a property that exists.")
            if known[name]["type"] == "title" and not isinstance((value or {}).get("title"), list):
                return invalid(f"body failed validation: body.properties.{name}.title should be an array.")
        title = "".join(
            (piece.get("text") or {}).get("content", "")
            for name, value in properties.items()
            if known[name]["type"] == "title"
            for piece in value["title"]
        )
        page_id = str(uuid.uuid4())
        blocks = self._blocks(body.get("children", []), "body.children", page_id)
        if isinstance(blocks, JSONResponse):
            return blocks
        page = self.add_page(title, {"type": f"{kind}_id", f"{kind}_id": container["id"]}, page_id=page_id)
        if kind == "database":
            page["properties"] = {
                name: {"id": spec["id"], "type": spec["type"], spec["type"]: None} for name, spec in known.items()
            }
            title_name = next(n for n, p in known.items() if p["type"] == "title")
            page["properties"][title_name] = {"id": "title", "type": "title", "title": rich_text(title)}
        self.children[page_id] = blocks
        return JSONResponse(page)

    async def append_children(self, request: Request) -> Response:
        raw = request.path_params["block_id"]
        page = self.find("page", _id_of(raw) or "")
        if page is None:
            return not_shared("block", raw)
        body = await self._body(request)
        if isinstance(body, JSONResponse):
            return body
        blocks = self._blocks(body.get("children"), "body.children", page["id"])
        if isinstance(blocks, JSONResponse):
            return blocks
        self.children[page["id"]].extend(blocks)
        page["last_edited_time"] = _now()
        return JSONResponse(
            {
                "object": "list",
                "results": blocks,
                "next_cursor": None,
                "has_more": False,
                "type": "block",
                "block": {},
            }
        )

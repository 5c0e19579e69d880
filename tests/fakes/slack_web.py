"""Slack's side of approvals: the Web API methods a Slack app's bot uses to message people and update those
messages, and the interaction requests Slack sends the app when someone presses a button or submits a form.

``SlackWebFake`` extends the Slack fake (``tests.fakes.slack``) with, as Slack documents them:
- ``users.lookupByEmail``: the member with an address on their profile, or ``users_not_found``;
- ``chat.postMessage`` to a member's id, which posts in the app's direct messages with them (a ``D…`` id);
- ``chat.update``: the message replaced, ``message_not_found`` for one the bot never posted there;
- ``views.open``: a modal opened with a ``trigger_id`` from an interaction, usable once and for 3 seconds
  (``expired_trigger_id``, ``invalid_trigger_id``);
- a ``response_url`` (``https://hooks.slack.com/actions/…``), where an app answers the person who pressed.
Blocks are held to Block Kit's documented shapes and limits (``invalid_blocks`` otherwise), ``rich_text`` blocks
included, and a message's blocks to 12,000 characters of text in all (``msg_blocks_too_long``: Slack does not
document it, but refuses messages past about that, slackapi/bolt-js issues 2509 and 2867), so what passes here fits
Slack.

The interactions are built as Slack builds them (``block_actions`` and ``view_submission`` payloads, posted as a
form field ``payload``) and signed as Slack signs them: ``v0=`` HMAC-SHA256 of ``v0:<timestamp>:<body>`` under the
app's signing secret, in ``X-Slack-Signature`` beside ``X-Slack-Request-Timestamp``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.slack import APP_ID, BOT_ID, BOT_USER, TEAM, SlackFake, _error, _ok

RESPONSE_ORIGIN = "https://hooks.slack.com"
TRIGGER_SECONDS = 3.0
#: The text a message's blocks may hold in all, as far as Slack has been seen to take it.
MESSAGE_BLOCKS_CHARS = 12_000
#: The styles a rich text element may have, and the list styles.
RICH_STYLES = {"bold", "italic", "strike", "code", "highlight", "client_highlight", "underline", "unlink"}
LIST_STYLES = {"bullet", "ordered"}


def member(user_id: str, name: str, email: str, **fields: Any) -> dict[str, Any]:
    """A workspace member as users.lookupByEmail describes them."""
    return {
        "id": user_id,
        "team_id": TEAM["id"],
        "name": name,
        "deleted": False,
        "real_name": name.title(),
        "tz": "Europe/Berlin",
        "is_admin": False,
        "is_bot": False,
        "is_app_user": False,
        "profile": {"real_name": name.title(), "display_name": name, "email": email},
        **fields,
    }


# -- Block Kit's limits (https://api.slack.com/reference/block-kit/blocks) --------------------------------------


def _text_problems(where: str, text: Any, limit: int, *, plain_only: bool = False) -> list[str]:
    if not isinstance(text, dict) or text.get("type") not in ("plain_text", "mrkdwn"):
        return [f"{where}: must be a text object"]
    if plain_only and text["type"] != "plain_text":
        return [f"{where}: must be plain_text"]
    value = text.get("text")
    if not isinstance(value, str) or not value:
        return [f"{where}: text must be a non-empty string"]
    if len(value) > limit:
        return [f"{where}: must be less than {limit + 1} characters"]
    return []


def _element_problems(where: str, element: Any) -> list[str]:
    if not isinstance(element, dict):
        return [f"{where}: must be an object"]
    if element.get("type") == "button":
        problems = _text_problems(f"{where}.text", element.get("text"), 75, plain_only=True)
        if len(str(element.get("action_id", ""))) > 255:
            problems.append(f"{where}.action_id: too long")
        if len(str(element.get("value", ""))) > 2000:
            problems.append(f"{where}.value: too long")
        if len(str(element.get("url", ""))) > 3000:
            problems.append(f"{where}.url: too long")
        if element.get("style") not in (None, "primary", "danger"):
            problems.append(f"{where}.style: must be primary or danger")
        return problems
    if element.get("type") == "plain_text_input":
        return [] if element.get("action_id") else [f"{where}.action_id: required"]
    return [f"{where}: unsupported element type {element.get('type')!r}"]


def _leaf_problems(where: str, leaf: Any) -> list[str]:
    """A rich text element inside a section, quote or list item: the ``text`` and ``date`` elements Companion
    sends."""
    if not isinstance(leaf, dict):
        return [f"{where}: must be an object"]
    problems = []
    style = leaf.get("style", {})
    if not isinstance(style, dict) or not set(style) <= RICH_STYLES or not all(v is True for v in style.values()):
        problems.append(f"{where}.style: must be an object of boolean styles")
    if leaf.get("type") == "text":
        if not isinstance(leaf.get("text"), str) or not leaf["text"]:
            problems.append(f"{where}.text: must be a non-empty string")
        return problems
    if leaf.get("type") == "date":
        if not isinstance(leaf.get("timestamp"), int) or not isinstance(leaf.get("format"), str):
            problems.append(f"{where}: a date needs a timestamp and a format")
        return problems
    return [f"{where}: unsupported rich text element {leaf.get('type')!r}"]


def _run_problems(where: str, element: Any) -> list[str]:
    """A rich_text_section or rich_text_quote: a non-empty array of rich text elements."""
    elements = element.get("elements") if isinstance(element, dict) else None
    if not isinstance(elements, list) or not elements:
        return [f"{where}.elements: must be a non-empty array"]
    return [p for m, leaf in enumerate(elements) for p in _leaf_problems(f"{where}.elements[{m}]", leaf)]


def _rich_text_problems(where: str, block: dict[str, Any]) -> list[str]:
    """https://docs.slack.dev/reference/block-kit/blocks/rich-text-block"""
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        return [f"{where}.elements: must be a non-empty array"]
    problems: list[str] = []
    for n, element in enumerate(elements):
        at = f"{where}.elements[{n}]"
        kind = element.get("type") if isinstance(element, dict) else None
        if kind in ("rich_text_section", "rich_text_quote", "rich_text_preformatted"):
            problems += _run_problems(at, element)
        elif kind == "rich_text_list":
            if element.get("style") not in LIST_STYLES:
                problems.append(f"{at}.style: must be bullet or ordered")
            items = element.get("elements")
            if not isinstance(items, list) or not items:
                problems.append(f"{at}.elements: must be a non-empty array")
                continue
            for m, item in enumerate(items):
                if not isinstance(item, dict) or item.get("type") != "rich_text_section":
                    problems.append(f"{at}.elements[{m}]: must be a rich_text_section")
                else:
                    problems += _run_problems(f"{at}.elements[{m}]", item)
        else:
            problems.append(f"{at}: unsupported rich text object {kind!r}")
    return problems


def text_characters(value: Any) -> int:
    """The characters of text anywhere in ``value``: text objects and rich text elements alike."""
    if isinstance(value, dict):
        own = len(value["text"]) if isinstance(value.get("text"), str) else 0
        return own + sum(text_characters(v) for v in value.values())
    if isinstance(value, list):
        return sum(text_characters(v) for v in value)
    return 0


def block_problems(blocks: Any, *, most: int) -> list[str]:
    """What Slack would refuse in ``blocks``, in its words; empty if it takes them."""
    if not isinstance(blocks, list) or not blocks:
        return ["blocks: must be a non-empty array"]
    if len(blocks) > most:
        return [f"blocks: must be fewer than {most + 1} items"]
    problems: list[str] = []
    block_ids: set[str] = set()
    for n, block in enumerate(blocks):
        where = f"[{n}]"
        kind = block.get("type") if isinstance(block, dict) else None
        block_id = block.get("block_id") if isinstance(block, dict) else None
        if block_id is not None:
            if block_id in block_ids:
                problems.append(f"{where}.block_id: duplicate")
            block_ids.add(block_id)
        if kind == "header":
            problems += _text_problems(f"{where}.text", block.get("text"), 150, plain_only=True)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: a section needs text or fields")
            if "text" in block:
                problems += _text_problems(f"{where}.text", block["text"], 3000)
            fields = block.get("fields", [])
            if len(fields) > 10:
                problems.append(f"{where}.fields: must be fewer than 11 items")
            for m, field in enumerate(fields):
                problems += _text_problems(f"{where}.fields[{m}]", field, 2000)
        elif kind == "context":
            elements = block.get("elements", [])
            if not elements or len(elements) > 10:
                problems.append(f"{where}.elements: must have 1 to 10 items")
            for m, element in enumerate(elements):
                problems += _text_problems(f"{where}.elements[{m}]", element, 3000)
        elif kind == "actions":
            elements = block.get("elements", [])
            if not elements or len(elements) > 25:
                problems.append(f"{where}.elements: must have 1 to 25 items")
            action_ids = [e.get("action_id") for e in elements if isinstance(e, dict)]
            if len(action_ids) != len(set(action_ids)):
                problems.append(f"{where}.elements: action_id must be unique")
            for m, element in enumerate(elements):
                problems += _element_problems(f"{where}.elements[{m}]", element)
        elif kind == "rich_text":
            problems += _rich_text_problems(where, block)
        elif kind == "input":
            problems += _text_problems(f"{where}.label", block.get("label"), 2000, plain_only=True)
            problems += _element_problems(f"{where}.element", block.get("element"))
        else:
            problems.append(f"{where}: unsupported type {kind!r}")
    return problems


def _invalid_blocks(problems: list[str]) -> JSONResponse:
    return _error("invalid_blocks", response_metadata={"messages": [f"[ERROR] {p}" for p in problems]})


class SlackWebFake(SlackFake):
    def __init__(self) -> None:
        super().__init__()
        methods = ["GET", "POST"]
        self.app.router.routes.extend(
            [
                Route("/api/users.lookupByEmail", self.lookup_by_email, methods=methods),
                Route("/api/chat.update", self.update_message, methods=["POST"]),
                Route("/api/views.open", self.open_view, methods=["POST"]),
                Route("/actions/{team}/{action}/{token}", self.respond, methods=["POST"]),
            ]
        )
        self.members = [
            member("U0ALICE001", "alice", "alice@acme.test"),
            member("U0ADMIN001", "admin", "admin@acme.test"),
            member("U0MALLORY1", "mallory", "mallory@acme.test"),
        ]
        self.updates: list[dict[str, Any]] = []
        self.views: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.triggers: dict[str, float] = {}

    # -- the directory --------------------------------------------------------------------------------------

    def member_by_id(self, user_id: str) -> dict[str, Any] | None:
        return next((m for m in self.members if m["id"] == user_id), None)

    async def lookup_by_email(self, request: Request) -> Response:
        """Slack finds a member by the address on their profile, case aside; a deactivated one too."""
        email = str((await self._arguments(request)).get("email") or "").lower()
        if not email:
            return _error("invalid_arguments")
        found = next((m for m in self.members if m["profile"]["email"].lower() == email), None)
        return _ok(user=found) if found else _error("users_not_found")

    # -- messages -------------------------------------------------------------------------------------------

    @staticmethod
    def _blocks(arguments: dict[str, Any]) -> Any:
        blocks = arguments.get("blocks")
        # A form sends blocks as a JSON string; a JSON body as an array.
        return json.loads(blocks) if isinstance(blocks, str) else blocks

    async def post_message(self, request: Request) -> Response:
        """To a member's id: the app's direct messages with them. Anything else as the Slack fake posts it."""
        arguments = await self._arguments(request)
        to = str(arguments.get("channel") or "")
        if not to.startswith("U"):
            return await super().post_message(request)
        if self.member_by_id(to) is None:
            return _error("channel_not_found")
        blocks = self._blocks(arguments)
        if blocks is not None and (problems := block_problems(blocks, most=50)):
            return _invalid_blocks(problems)
        if text_characters(blocks) > MESSAGE_BLOCKS_CHARS:
            return _error("msg_blocks_too_long")
        if not arguments.get("text") and not blocks:
            return _error("no_text")
        channel = "D" + to[1:]
        ts = f"{1700000000 + len(self.messages)}.{len(self.messages):06d}"
        message = {
            "type": "message",
            "text": str(arguments.get("text") or ""),
            "blocks": blocks or [],
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM["id"],
            "ts": ts,
        }
        self.messages.append({**message, "channel": channel, "to": to})
        return _ok(channel=channel, ts=ts, message=message)

    def message_at(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["channel"] == channel and m["ts"] == ts), None)

    async def update_message(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        message = self.message_at(str(arguments.get("channel") or ""), str(arguments.get("ts") or ""))
        if message is None:
            return _error("message_not_found")
        if message.get("user") != BOT_USER:
            return _error("cant_update_message")
        blocks = self._blocks(arguments)
        if blocks is not None and (problems := block_problems(blocks, most=50)):
            return _invalid_blocks(problems)
        if text_characters(blocks) > MESSAGE_BLOCKS_CHARS:
            return _error("msg_blocks_too_long")
        message["text"] = str(arguments.get("text") or message["text"])
        if blocks is not None:
            message["blocks"] = blocks
        self.updates.append(
            {"channel": message["channel"], "ts": message["ts"], "text": message["text"], "blocks": message["blocks"]}
        )
        return _ok(channel=message["channel"], ts=message["ts"], text=message["text"], message=message)

    # -- modals and answers to interactions -----------------------------------------------------------------

    def issue_trigger(self) -> str:
        trigger = f"{int(time.time())}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}"
        self.triggers[trigger] = time.monotonic()
        return trigger

    async def open_view(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        issued = self.triggers.pop(str(arguments.get("trigger_id") or ""), None)
        if issued is None:
            return _error("invalid_trigger_id")
        if time.monotonic() - issued > TRIGGER_SECONDS:
            return _error("expired_trigger_id")
        view = arguments.get("view")
        view = json.loads(view) if isinstance(view, str) else view
        if not isinstance(view, dict) or view.get("type") != "modal":
            return _error("invalid_arguments")
        problems = block_problems(view.get("blocks"), most=100)
        for part, limit in (("title", 24), ("submit", 24), ("close", 24)):
            if part in view or part == "title":
                problems += _text_problems(part, view.get(part), limit, plain_only=True)
        if len(str(view.get("private_metadata", ""))) > 3000:
            problems.append("private_metadata: must be less than 3001 characters")
        if problems:
            return _invalid_blocks(problems)
        opened = {
            **view,
            "id": "V" + secrets.token_hex(5).upper(),
            "team_id": TEAM["id"],
            "state": {"values": {}},
            "hash": secrets.token_hex(8),
            "app_id": APP_ID,
            "bot_id": BOT_ID,
        }
        self.views.append(opened)
        return _ok(view=opened)

    def response_url(self) -> str:
        """A fresh ``response_url`` for an interaction; the fake answers on its path without a token."""
        path = f"/actions/{TEAM['id']}/{secrets.randbelow(10**12)}/{secrets.token_urlsafe(18)}"
        self.open_paths = (*self.open_paths, path)
        return RESPONSE_ORIGIN + path

    async def respond(self, request: Request) -> Response:
        self.responses.append({"path": request.url.path, **json.loads(await request.body())})
        return PlainTextResponse("ok")

    # -- interactions, as Slack sends them to the app ---------------------------------------------------------

    def block_actions(self, user_id: str, message: dict[str, Any], action_id: str, value: str) -> dict[str, Any]:
        """The payload of a press on a button of ``message`` by ``user_id``."""
        pressed = self.member_by_id(user_id) or {"id": user_id, "name": "unknown"}
        shown = [e for b in message["blocks"] if b.get("type") == "actions" for e in b["elements"]]
        button = next(
            (e for e in shown if e.get("action_id") == action_id),
            {"text": {"type": "plain_text", "text": action_id}},
        )
        return {
            "type": "block_actions",
            "user": {"id": user_id, "username": pressed["name"], "name": pressed["name"], "team_id": TEAM["id"]},
            "api_app_id": APP_ID,
            "token": "verification-token-deprecated",
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": message["channel"],
                "is_ephemeral": False,
            },
            "trigger_id": self.issue_trigger(),
            "team": {"id": TEAM["id"], "domain": "acme"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": message["channel"], "name": "directmessage"},
            "message": {k: message[k] for k in ("type", "text", "blocks", "user", "bot_id", "app_id", "team", "ts")},
            "state": {"values": {}},
            "response_url": self.response_url(),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": next(
                        (b.get("block_id", "") for b in message["blocks"] if button in b.get("elements", [])), ""
                    ),
                    "text": button["text"],
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }

    def view_submission(self, user_id: str, view: dict[str, Any], typed: dict[str, str]) -> dict[str, Any]:
        """The payload of ``view`` submitted by ``user_id`` with ``typed`` in its inputs (by block and action id,
        which the forms here share)."""
        pressed = self.member_by_id(user_id) or {"id": user_id, "name": "unknown"}
        values = {name: {name: {"type": "plain_text_input", "value": value}} for name, value in typed.items()}
        return {
            "type": "view_submission",
            "team": {"id": TEAM["id"], "domain": "acme"},
            "user": {"id": user_id, "username": pressed["name"], "name": pressed["name"], "team_id": TEAM["id"]},
            "api_app_id": APP_ID,
            "token": "verification-token-deprecated",
            "trigger_id": self.issue_trigger(),
            "view": {**view, "state": {"values": values}},
            "response_urls": [],
            "is_enterprise_install": False,
        }


def signed(payload: dict[str, Any], secret: str, *, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers Slack posts an interaction with, signed with the app's signing secret."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }
    return body, headers

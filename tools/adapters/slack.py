"""Slack, through its Web API (https://slack.com/api/<method>).

Every method answers HTTP 200 with ``{"ok": true, ...}`` or ``{"ok": false,
"error": "<code>"}``: errors, a refused token among them, never show as an
HTTP status, so ``_call`` reads ``ok`` for the shared client. Only rate limits
(429 with Retry-After) and outages are HTTP errors, and the shared client
handles those. A rotating token that expired shows as ``token_expired`` rather
than a 401, so ``classify`` tells the shared client, which refreshes it once
and sends again, as after a 401.
Lists page with ``cursor`` in and ``response_metadata.next_cursor`` out, an
empty string on the last page.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from manifests import MANIFEST_DIR
from tools.arguments import Arguments
from tools.context import ToolContext
from tools.errors import InvalidArguments, ToolError
from tools.pagination import every_page
from tools.provider import Reading, json_body

#: The manifest this adapter carries out; the entry point in pyproject.toml registers the pair.
MANIFEST = MANIFEST_DIR / "slack.yaml"


def classify(response: httpx.Response) -> Reading | None:
    """A rotating token that expired early (the keeper refreshes it on time otherwise) is refused in a 200.

    Slack refused the call before doing anything, so after one refresh it is safe to send again, even a post.
    """
    if not response.is_success or b"token_expired" not in response.content:
        return None
    body = json_body(response)
    return Reading.REFUSED_TOKEN if isinstance(body, dict) and body.get("error") == "token_expired" else None


#: Channel ids are upper case (C… public or private, G… older private, D… direct); names never are.
CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{8,}$")

#: Slack's words for a token it no longer takes. An uninstalled app gets token_revoked.
REFUSED_TOKEN = {"invalid_auth", "not_authed", "token_revoked", "account_inactive"}

#: Errors about one argument: the argument, and what Slack's code means in plain words.
ARGUMENT_ERRORS = {
    "channel_not_found": ("channel", "Slack has no such channel, or it is private and the app was not invited"),
    "is_archived": ("channel", "the channel is archived"),
    "msg_too_long": ("text", "the message is too long for Slack"),
    "no_text": ("text", "the message has no text"),
    "invalid_cursor": ("cursor", "not a cursor Slack gave out, or it has expired; start from the first page"),
    "invalid_limit": ("limit", "Slack does not accept this page size"),
}

CHANNEL_TYPES = "public_channel,private_channel"


class PostMessage(Arguments):
    channel: str
    text: str
    thread_ts: str | None = None
    unfurl_links: bool | None = None


class ListChannels(Arguments):
    limit: int = 100
    cursor: str | None = None


def channel(value: str) -> str:
    """Canonical channel: an id as it is; a name without its # and in lower case, as Slack stores names.

    It runs before any rule decides, so a rule on ``exec`` also holds for ``#EXEC``.
    """
    if CHANNEL_ID.match(value):
        return value
    name = value.lstrip("#").lower()
    if not name:
        raise ValueError("names no channel: give a channel id (C…) or a name such as #general")
    return name


def channel_in_rules(channel: str) -> str:
    """A channel as a rule may name it: by name, since ids are resolved to names before rules decide."""
    written = channel.lstrip("#")
    if CHANNEL_ID.match(written) and not written.startswith("D"):
        raise ValueError(
            f"{written} is a Slack channel id; calls are decided on channel names (an id is looked up in Slack "
            "first), so name the channel instead, such as leadership"
        )
    return channel


async def channel_name(ctx: ToolContext, channel: str) -> str:
    """The name of the channel a canonical channel names: a name as it is; an id asked of Slack.

    Rules are written on names (``leadership``), so an id must not let a call past them: the id is
    resolved to the name before any rule decides, and that name is what the person sees and what is
    posted to. A direct message has no name and keeps its id.
    """
    if not CHANNEL_ID.match(channel):
        return channel
    data = await _call(ctx, "GET", "conversations.info", params={"channel": channel})
    found = data.get("channel") or {}
    if found.get("is_archived"):
        field, meaning = ARGUMENT_ERRORS["is_archived"]
        raise InvalidArguments({field: f"{meaning} (Slack: is_archived)"})
    name = found.get("name")
    if found.get("is_im") or not isinstance(name, str) or not name:
        return channel
    return name.lower()


async def _call(
    ctx: ToolContext,
    http_method: str,
    api_method: str,
    *,
    params: dict[str, Any] | None = None,
    json: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One Web API method's answer when ``ok``; otherwise a ToolError in plain words."""
    # JSON bodies must name their charset, or Slack adds a missing_charset warning to every answer.
    headers = {"Content-Type": "application/json; charset=utf-8"} if json is not None else None

    body = await ctx.api.json(http_method, api_method, params=params, json=json, headers=headers)
    if not isinstance(body, dict):
        raise ToolError("Slack answered with an unexpected body.", code="provider_error")
    if body.get("ok"):
        return body
    raise await _failure(ctx, str(body.get("error") or "unknown_error"), body)


async def _failure(ctx: ToolContext, error: str, body: dict[str, Any]) -> ToolError:
    if error in REFUSED_TOKEN:
        if ctx.keeper is not None:
            await ctx.keeper.mark_needs_reauth(ctx.connection, f"Slack refused the token ({error}).")
        return ToolError(
            f"Slack no longer accepts this connection ({error}): the app was removed from the workspace "
            "or its token was revoked. Reconnect it (Marketplace > Installed > Re-authenticate) and try again.",
            code="needs_reauth",
        )
    if error in ARGUMENT_ERRORS:
        field, meaning = ARGUMENT_ERRORS[error]
        return InvalidArguments({field: f"{meaning} (Slack: {error})"})
    if error == "not_in_channel":
        return ToolError(
            "The Slack app is not a member of this channel. Invite it in Slack (/invite and the app's name) "
            "and try again.",
            code="forbidden",
        )
    if error == "missing_scope":
        needed = body.get("needed") or "another permission"
        return ToolError(f"The Slack app lacks the permission {needed}. Reconnect Slack to grant it.", code="forbidden")
    if error in ("ratelimited", "rate_limited"):
        return ToolError("Slack is rate limiting this app. Try again in a minute.", code="rate_limited")
    details = (body.get("response_metadata") or {}).get("messages") or []
    said = f" ({'; '.join(map(str, details))})" if details else ""
    return ToolError(f"Slack rejected the request: {error}{said}.", code="invalid_request")


async def _channel_id(ctx: ToolContext, channel: str) -> str:
    """A channel id as given, or the id of the open channel with that canonical name."""
    if CHANNEL_ID.match(channel):
        return channel

    async def page(cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        data = await _call(
            ctx,
            "GET",
            "conversations.list",
            params={"types": CHANNEL_TYPES, "exclude_archived": "true", "limit": 200, "cursor": cursor},
        )
        return data.get("channels") or [], _next_cursor(data)

    async for found in every_page(page):
        if found.get("name") == channel:
            return str(found["id"])
    raise InvalidArguments(
        {"channel": f"no open channel named #{channel} that the Slack app can see; private ones need it invited"}
    )


def _next_cursor(data: dict[str, Any]) -> str | None:
    return (data.get("response_metadata") or {}).get("next_cursor") or None


async def auth_test(ctx: ToolContext) -> str:
    """Test connection: the workspace and the app's bot user the token belongs to."""
    data = await _call(ctx, "GET", "auth.test")
    return f"Connected to Slack workspace {data.get('team')} as {data.get('user')}"


async def post_message(ctx: ToolContext, arguments: PostMessage) -> dict[str, Any]:
    message: dict[str, Any] = {"channel": await _channel_id(ctx, arguments.channel), "text": arguments.text}
    if arguments.thread_ts is not None:
        message["thread_ts"] = arguments.thread_ts
    if arguments.unfurl_links is not None:
        message["unfurl_links"] = arguments.unfurl_links
    posted = await _call(ctx, "POST", "chat.postMessage", json=message)
    result: dict[str, Any] = {"ok": True, "channel": posted["channel"], "ts": posted["ts"]}
    try:
        link = await _call(
            ctx, "GET", "chat.getPermalink", params={"channel": posted["channel"], "message_ts": posted["ts"]}
        )
    except ToolError:
        # The message is posted; a link that cannot be had must not report a sent message as failed.
        return result
    if link.get("permalink"):
        result["permalink"] = str(link["permalink"])
    return result


async def list_channels(ctx: ToolContext, arguments: ListChannels) -> dict[str, Any]:
    data = await _call(
        ctx,
        "GET",
        "conversations.list",
        params={
            "types": CHANNEL_TYPES,
            "exclude_archived": "true",
            "limit": arguments.limit,
            "cursor": arguments.cursor,
        },
    )
    return {
        "channels": [
            {
                "id": channel["id"],
                "name": channel.get("name", ""),
                "is_private": bool(channel.get("is_private")),
                "is_member": bool(channel.get("is_member")),
                "num_members": channel.get("num_members"),
            }
            for channel in data.get("channels") or []
        ],
        "next_cursor": _next_cursor(data),
    }

"""A fake of Slack's Web API: auth.test, conversations.list and .info, chat.postMessage, chat.getPermalink,
oauth.v2.access.

Every method answers HTTP 200, with ``{"ok": true, ...}`` or ``{"ok": false,
"error": "<code>"}``, a refused token included: ``not_authed`` without one,
``invalid_auth`` for one Slack never issued, ``token_expired`` for a rotating
token past its 12 hours. Only rate limits (429 with Retry-After) and outages
are HTTP errors. The token endpoint answers the same way: its errors are
``ok: false`` codes such as ``invalid_refresh_token``, not RFC 6749 errors.

Arguments arrive as a query string, a form or a JSON body, as Slack takes them;
the bot sees every public channel, and the private ones it is a member of.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.fakes.base import CLIENT_ID, CLIENT_SECRET, Failure, ProviderFake

TEAM = {"id": "T0ACME0001", "name": "Acme"}
BOT_USER, BOT_ID, APP_ID = "U0HARMONY1", "B0HARMONY1", "A0HARMONY1"
WORKSPACE_URL = "https://acme.slack.com/"
MAX_TEXT = 40000


def _ok(**fields: Any) -> JSONResponse:
    return JSONResponse({"ok": True, **fields})


def _error(code: str, **fields: Any) -> JSONResponse:
    return JSONResponse({"ok": False, "error": code, **fields})


def _channel(
    channel_id: str, name: str, members: int, *, private: bool = False, member: bool = True, archived: bool = False
) -> dict[str, Any]:
    return {
        "id": channel_id,
        "name": name,
        "name_normalized": name,
        "is_channel": True,
        "is_group": False,
        "is_im": False,
        "is_mpim": False,
        "is_private": private,
        "is_archived": archived,
        "is_general": name == "general",
        "is_member": member,
        "created": 1449252889,
        "num_members": members,
    }


def _cursor(channel_id: str) -> str:
    return base64.b64encode(f"team:{channel_id}".encode()).decode()


class SlackFake(ProviderFake):
    def __init__(self) -> None:
        methods = ["GET", "POST"]
        super().__init__(
            [
                Route("/api/auth.test", self.auth_test, methods=methods),
                Route("/api/conversations.list", self.conversations_list, methods=methods),
                Route("/api/conversations.info", self.conversations_info, methods=methods),
                Route("/api/chat.postMessage", self.post_message, methods=methods),
                Route("/api/chat.getPermalink", self.get_permalink, methods=methods),
            ],
            authorize_path="/oauth/v2/authorize",
            token_path="/api/oauth.v2.access",
        )
        # Rotating Slack tokens live 12 hours.
        self.expires_in = 43200
        self.refusal = "invalid_auth"
        self.channels = [
            _channel("C0GENERAL1", "general", 12),
            _channel("C0RANDOM01", "random", 10),
            _channel("C0ANNOUNC1", "announcements", 40, member=False),
            _channel("C0LEADERS1", "leadership", 4, private=True),
            _channel("C0HRPRIVT1", "hr-private", 3, private=True, member=False),
            _channel("C0OLDPROJ1", "old-project", 5, archived=True),
        ]
        self.messages: list[dict[str, Any]] = []

    # -- tokens and refusals, the way Slack gives them -----------------------------------------

    def issue(self, *, expires_in: int | None = None) -> dict[str, Any]:
        """oauth.v2.access's answer for an app with token rotation on: a bot token, its team and app."""
        token = super().issue(expires_in=expires_in)
        return {
            "ok": True,
            "access_token": token["access_token"],
            "token_type": "bot",
            "scope": "chat:write,channels:read,groups:read",
            "bot_user_id": BOT_USER,
            "app_id": APP_ID,
            "expires_in": token["expires_in"],
            "refresh_token": token["refresh_token"],
            "team": TEAM,
            "enterprise": None,
            "is_enterprise_install": False,
            "authed_user": {"id": "U0ALICE001"},
        }

    async def authorize(self, request: Request) -> Response:
        """Slack's install page, approved at once. No PKCE: Slack takes it only from apps made public clients."""
        query = request.query_params
        if query.get("client_id") != CLIENT_ID:
            return JSONResponse({"ok": False, "error": "invalid_client_id"}, status_code=400)
        if not query.get("scope") and not query.get("user_scope"):
            return JSONResponse({"ok": False, "error": "no_scopes"}, status_code=400)
        code = "code-" + secrets.token_urlsafe(12)
        self.codes[code] = {"redirect_uri": query.get("redirect_uri", ""), "scope": query.get("scope", "")}
        target = query.get("redirect_uri", "")
        return RedirectResponse(f"{target}?{urlencode({'code': code, 'state': query.get('state', '')})}", 302)

    async def token(self, request: Request) -> Response:
        """oauth.v2.access: a code or a refresh token for a new token; errors are HTTP 200 and ``ok: false``."""
        form = await request.form()
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
        if client_id != CLIENT_ID:
            return _error("invalid_client_id")
        if client_secret != CLIENT_SECRET:
            return _error("bad_client_secret")
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        grant = form.get("grant_type") or "authorization_code"
        if grant == "authorization_code":
            issued = self.codes.pop(str(form.get("code", "")), None)
            if issued is None:
                return _error("invalid_code")
            if form.get("redirect_uri", issued["redirect_uri"]) != issued["redirect_uri"]:
                return _error("bad_redirect_uri")
            return JSONResponse(self.issue())
        if grant == "refresh_token":
            refresh = str(form.get("refresh_token", ""))
            if refresh not in self.refresh_tokens:
                return _error("invalid_refresh_token")
            self.refresh_tokens.discard(refresh)
            self.refreshes += 1
            return JSONResponse(self.issue())
        return _error("invalid_grant_type")

    def is_authorized(self, request: Request) -> bool:
        """Whether the bearer token is good; if not, remember Slack's word for why, for ``unauthorized``."""
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        if not token:
            self.refusal = "not_authed"
        elif token not in self.access_tokens:
            self.refusal = "invalid_auth"
        elif self.access_tokens[token] <= time.time():
            self.refusal = "token_expired"
        else:
            return True
        return False

    def unauthorized(self) -> Response:
        # The gate asks right after is_authorized, with no await between, so the refusal is this request's.
        return _error(self.refusal)

    def failure_response(self, failure: Failure) -> Response:
        if failure.body is not None:
            return JSONResponse(failure.body, status_code=failure.status, headers=failure.headers)
        code = {429: "ratelimited", 503: "service_unavailable"}.get(failure.status, "internal_error")
        return JSONResponse({"ok": False, "error": code}, status_code=failure.status, headers=failure.headers)

    # -- the Web API ---------------------------------------------------------------------------

    async def _arguments(self, request: Request) -> dict[str, Any]:
        arguments: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            if request.headers.get("content-type", "").startswith("application/json"):
                arguments.update(await request.json())
            else:
                arguments.update(await request.form())
        return arguments

    def _visible(self) -> list[dict[str, Any]]:
        """What a bot token sees: every public channel, and the private channels the bot is in."""
        return [c for c in self.channels if not c["is_private"] or c["is_member"]]

    def _find(self, channel: str) -> dict[str, Any] | None:
        name = channel.removeprefix("#")
        return next((c for c in self._visible() if channel == c["id"] or name == c["name"]), None)

    async def auth_test(self, request: Request) -> Response:
        return _ok(
            url=WORKSPACE_URL,
            team=TEAM["name"],
            user="harmony",
            team_id=TEAM["id"],
            user_id=BOT_USER,
            bot_id=BOT_ID,
            is_enterprise_install=False,
        )

    async def conversations_list(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        types = set(str(arguments.get("types") or "public_channel").split(","))
        if not types <= {"public_channel", "private_channel", "mpim", "im"}:
            return _error("invalid_types")
        try:
            limit = int(arguments.get("limit") or 100)
        except ValueError:
            return _error("invalid_limit")
        if not 1 <= limit <= 1000:
            return _error("invalid_limit")
        exclude_archived = str(arguments.get("exclude_archived", "false")).lower() in ("true", "1")
        channels = [
            c
            for c in self._visible()
            if ("private_channel" if c["is_private"] else "public_channel") in types
            and not (exclude_archived and c["is_archived"])
        ]
        start = 0
        if arguments.get("cursor"):
            try:
                after = base64.b64decode(str(arguments["cursor"]), validate=True).decode().removeprefix("team:")
            except (binascii.Error, UnicodeDecodeError):
                return _error("invalid_cursor")
            ids = [c["id"] for c in channels]
            if after not in ids:
                return _error("invalid_cursor")
            start = ids.index(after)
        page = channels[start : start + limit]
        rest = channels[start + limit :]
        return _ok(channels=page, response_metadata={"next_cursor": _cursor(rest[0]["id"]) if rest else ""})

    async def conversations_info(self, request: Request) -> Response:
        """One conversation by id; a private one the bot is not in is channel_not_found, as for a missing one."""
        arguments = await self._arguments(request)
        if not arguments.get("channel"):
            return _error("channel_not_found")
        channel = next((c for c in self._visible() if c["id"] == arguments["channel"]), None)
        if channel is None:
            return _error("channel_not_found")
        return _ok(channel=channel)

    async def post_message(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        channel = self._find(str(arguments.get("channel") or ""))
        if channel is None:
            return _error("channel_not_found")
        text = str(arguments.get("text") or "")
        if not text:
            return _error("no_text")
        if len(text) > MAX_TEXT:
            return _error("msg_too_long")
        if channel["is_archived"]:
            return _error("is_archived")
        if not channel["is_member"]:
            return _error("not_in_channel")
        ts = f"{1700000000 + len(self.messages)}.{len(self.messages):06d}"
        message: dict[str, Any] = {
            "type": "message",
            "text": text,
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM["id"],
            "ts": ts,
        }
        if arguments.get("thread_ts"):
            message["thread_ts"] = str(arguments["thread_ts"])
        self.messages.append({**message, "channel": channel["id"], "unfurl_links": arguments.get("unfurl_links")})
        warnings = {}
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json") and "charset=" not in content_type:
            warnings = {"warning": "missing_charset", "response_metadata": {"warnings": ["missing_charset"]}}
        return _ok(channel=channel["id"], ts=ts, message=message, **warnings)

    async def get_permalink(self, request: Request) -> Response:
        arguments = await self._arguments(request)
        channel = self._find(str(arguments.get("channel") or ""))
        if channel is None:
            return _error("channel_not_found")
        ts = str(arguments.get("message_ts") or "")
        message = next((m for m in self.messages if m["channel"] == channel["id"] and m["ts"] == ts), None)
        if message is None:
            return _error("message_not_found")
        permalink = f"{WORKSPACE_URL}archives/{channel['id']}/p{ts.replace('.', '')}"
        if "thread_ts" in message:
            permalink += f"?thread_ts={message['thread_ts']}&cid={channel['id']}"
        return _ok(channel=channel["id"], permalink=permalink)

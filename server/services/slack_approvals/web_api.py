"""The workspace's Slack bot, as its Slack connection holds it: the few Web API methods approvals use.

Calls go through the same provider client as the Slack tools (``tools.provider.ProviderApi``): the connection's
token, refreshed when it rotates, retries on 429 and outages, and ``COMPANION_PROVIDER_ORIGINS`` honoured. Slack
answers HTTP 200 with ``ok: false`` for its errors; those become ``SlackError`` here, and a token Slack no longer
takes marks the connection for reconnecting, as a tool call would.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select

from store.connections import ConnectionView, open_credentials
from store.crypto import SecretBox
from store.db import Database
from store.models import Connection, ConnectionScope, ConnectionStatus
from tools.adapters.slack import REFUSED_TOKEN
from tools.errors import ToolError
from tools.provider import ProviderApi
from tools.registry import Registry
from tools.tokens import TokenKeeper

log = logging.getLogger(__name__)

APP = "slack"

#: Errors after which the same request may well work later: the message is then updated by a later sweep.
TRANSIENT = {
    "ratelimited",
    "rate_limited",
    "provider_unavailable",
    "provider_timeout",
    "busy",
    "service_unavailable",
    "internal_error",
    "fatal_error",
    "request_timeout",
}

#: Where Slack's ``response_url`` points; an interaction naming any other host is not Slack's to answer.
RESPONSE_HOST = "hooks.slack.com"

JSON = {"Content-Type": "application/json; charset=utf-8"}


class SlackError(Exception):
    """Slack refused or could not be reached; ``error`` is Slack's code (or the provider client's)."""

    def __init__(self, error: str) -> None:
        super().__init__(f"Slack: {error}")
        self.error = error

    @property
    def transient(self) -> bool:
        return self.error in TRANSIENT


@dataclass
class SlackBot:
    """One workspace's Slack connection, for the length of one piece of work."""

    api: ProviderApi
    keeper: TokenKeeper

    @property
    def connection_id(self) -> str:
        return self.api.connection.id

    async def call(self, http_method: str, method: str, *, idempotent: bool | None = None, **arguments: Any) -> Any:
        """One Web API method's answer when ``ok``; raises SlackError otherwise."""
        try:
            if http_method == "GET":
                body = await self.api.json("GET", method, params=arguments)
            else:
                body = await self.api.json("POST", method, json=arguments, headers=JSON, idempotent=idempotent)
        except ToolError as exc:
            raise SlackError(exc.code) from None
        if not isinstance(body, dict):
            raise SlackError("unexpected_body")
        if body.get("ok"):
            return body
        error = str(body.get("error") or "unknown_error")
        if error in REFUSED_TOKEN:
            await self.keeper.mark_needs_reauth(self.api.connection, f"Slack refused the token ({error}).")
        raise SlackError(error)

    async def user_id_of(self, email: str) -> str | None:
        """The Slack member whose e-mail address is ``email`` (``users.lookupByEmail``); None if there is none, or
        only a deactivated account or a bot."""
        try:
            found = await self.call("GET", "users.lookupByEmail", email=email)
        except SlackError as exc:
            if exc.error == "users_not_found":
                return None
            raise
        user = found.get("user") or {}
        if user.get("deleted") or user.get("is_bot") or not isinstance(user.get("id"), str):
            return None
        profile_email = str((user.get("profile") or {}).get("email") or "")
        # Slack found the account by this address; one that says otherwise is not taken on trust.
        return str(user["id"]) if profile_email.lower() == email.lower() else None

    async def post(self, user_id: str, message: dict[str, Any]) -> tuple[str, str]:
        """Post ``message`` to the member's direct messages with the app; the conversation's id and the ts."""
        posted = await self.call(
            "POST", "chat.postMessage", channel=user_id, unfurl_links=False, unfurl_media=False, **message
        )
        return str(posted["channel"]), str(posted["ts"])

    async def update(self, channel: str, ts: str, message: dict[str, Any]) -> None:
        await self.call("POST", "chat.update", idempotent=True, channel=channel, ts=ts, **message)

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> None:
        await self.call("POST", "views.open", trigger_id=trigger_id, view=view)


async def bot_of(
    db: Database, box: SecretBox, registry: Registry, http: httpx.AsyncClient, keeper: TokenKeeper, workspace_id: str
) -> SlackBot | None:
    """The workspace's Slack connection as a bot to call, or None if the workspace has no working one."""
    async with db.session() as session:
        row = await session.scalar(
            select(Connection)
            .where(
                Connection.app == APP,
                Connection.scope == ConnectionScope.WORKSPACE,
                Connection.workspace_id == workspace_id,
                Connection.status == ConnectionStatus.ACTIVE,
            )
            .order_by(Connection.created_at, Connection.id)
            .limit(1)
        )
    manifest = registry.manifests.get(APP)
    if row is None or manifest is None:
        return None
    connection = ConnectionView.of(row)
    return SlackBot(ProviderApi(manifest, connection, http, keeper, open_credentials(box, connection)), keeper)


async def respond_ephemeral(http: httpx.AsyncClient, keeper: TokenKeeper, response_url: str, text: str) -> None:
    """Tell only the person who pressed a button (``response_url``, which Slack gave with the press).

    Only Slack's own address is posted to, through the origin the deployment set for Slack.
    """
    parts = urlsplit(response_url)
    if parts.scheme != "https" or parts.hostname != RESPONSE_HOST:
        log.warning("a Slack interaction named a response address outside %s; nothing was sent", RESPONSE_HOST)
        return
    policy = keeper.policy
    try:
        answered = await http.post(
            policy.rewrite(APP, response_url),
            json={"response_type": "ephemeral", "replace_original": False, "text": text},
            headers=JSON,
            timeout=policy.timeout,
        )
    except httpx.HTTPError as exc:
        log.warning("a reply to a Slack interaction was not sent: %s", type(exc).__name__)
        return
    if not answered.is_success:
        log.warning("Slack refused a reply to an interaction: HTTP %s", answered.status_code)

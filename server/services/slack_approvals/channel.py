"""The Slack channel of ``server.services.notices``: a direct message to each approver who chose Slack, and the
updates that keep those messages true.

A message goes out when the workspace's admin turned Slack approvals on, the workspace has a working Slack
connection (its bot), the server knows the Slack app's signing secret (without it no button could be trusted),
and the approver chose Slack in their settings. The approver is found in Slack by their e-mail address
(``users.lookupByEmail``), remembered for an hour.

Each message is kept as an ``ApprovalNotice``. When the approval is decided anywhere (the console, the API,
another channel, Slack itself) or its time is up, the message is updated: at once where the decision was made
in Slack, and otherwise by a sweep every few seconds on every replica, which claims each message with a
conditional update so that only one replica updates it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import httpx
from sqlalchemy import select

from server.services import approval_flow
from server.services.approval_flow import ApprovalFlow
from server.services.asked_by import on_behalf_of
from server.services.notices import Notice
from server.services.slack_approvals import message
from server.services.slack_approvals.signing import WINDOW_SECONDS
from server.services.slack_approvals.web_api import SlackBot, SlackError, bot_of
from server.settings import Settings
from store import approval_notices, seen_requests
from store.cache import SharedCache
from store.crypto import SecretBox
from store.db import Database
from store.models import Approval, ApprovalNotice, User, Workspace, utcnow
from tools.registry import Registry
from tools.tokens import TokenKeeper

log = logging.getLogger(__name__)

CHANNEL = "slack"
#: How long an approver's Slack account, found by e-mail, is reused before it is looked up again.
IDENTITY_SECONDS = 3600.0
#: How often the sweep looks for messages to update, and how many it takes at a time.
SWEEP_SECONDS = 3.0
SWEEP_BATCH = 50


class SlackChannel:
    """Slack direct messages about waiting approvals, and their updates."""

    name = CHANNEL

    def __init__(
        self,
        settings: Settings,
        db: Database,
        box: SecretBox,
        registry: Registry,
        http: httpx.AsyncClient,
        keeper: TokenKeeper,
        flow: ApprovalFlow,
        *,
        every: float = SWEEP_SECONDS,
    ) -> None:
        self.settings = settings
        self.db = db
        self.box = box
        self.registry = registry
        self.http = http
        self.keeper = keeper
        self.flow = flow
        self.every = every
        self._slack_ids: SharedCache[tuple[str, str], str | None] = SharedCache(IDENTITY_SECONDS)

    @property
    def configured(self) -> bool:
        """Whether this server can take Slack's button presses: it knows the Slack app's signing secret."""
        return self.settings.slack_signing_secret is not None

    async def bot(self, workspace_id: str) -> SlackBot | None:
        return await bot_of(self.db, self.box, self.registry, self.http, self.keeper, workspace_id)

    # -- a new approval ---------------------------------------------------------------------------------

    async def waiting(self, notice: Notice) -> None:
        """Send the approval to each approver who chose Slack, if the workspace has Slack approvals on."""
        if not self.configured:
            return
        async with self.db.session() as session:
            workspace = await session.get(Workspace, notice.workspace_id)
            if workspace is None or not workspace.slack_approvals:
                return
            asker = await session.get(User, notice.asker_id)
            # An approval is announced again when it escalates: those who have its message already are not
            # sent another.
            told = {n.user_id for n in await approval_notices.of_approval(session, notice.approval_id, CHANNEL)}
            approvers = [
                user
                for user in await session.scalars(
                    select(User).where(User.id.in_(notice.approvers), User.notify_slack.is_(True)).order_by(User.id)
                )
                if user.id not in told
            ]
        if not approvers:
            return
        bot = await self.bot(notice.workspace_id)
        if bot is None:
            log.info(
                "approval %s: Slack approvals are on, but the workspace has no working Slack connection",
                notice.approval_id,
            )
            return
        card = message.Card(
            approval_id=notice.approval_id,
            app_name=notice.app_name,
            summary=notice.summary,
            asked_by=on_behalf_of(notice.assistant, asker.email if asker else "someone"),
            risk=notice.risk,
            expires_at=notice.expires_at,
            page_url=self.flow.page_url(notice.approval_id),
        )
        for approver in approvers:
            try:
                await self._send(bot, card, approver)
            except SlackError as exc:
                log.warning(
                    "approval %s: the Slack message to %s was not sent: %s", notice.approval_id, approver.id, exc.error
                )

    async def _send(self, bot: SlackBot, card: message.Card, approver: User) -> None:
        slack_id = await self.slack_id(bot, approver.email)
        if slack_id is None:
            log.info("approval %s: %s has no Slack account with their e-mail address", card.approval_id, approver.id)
            return
        channel, ts = await bot.post(slack_id, message.waiting(card))
        async with self.db.transaction() as session:
            await approval_notices.record(
                session,
                approval_id=card.approval_id,
                user_id=approver.id,
                channel=CHANNEL,
                ref={"channel": channel, "ts": ts, "user": slack_id},
            )

    async def slack_id(self, bot: SlackBot, email: str) -> str | None:
        """The approver's Slack account, found by e-mail; one found is remembered for a while, none is not."""
        return await self._slack_ids.get(
            (bot.connection_id, email.lower()), lambda: bot.user_id_of(email), keep=lambda found: found is not None
        )

    # -- keeping messages true ---------------------------------------------------------------------------

    async def refresh(self, approval_id: str | None = None) -> int:
        """Update the messages (of one approval, or any) that no longer show what became of their approval;
        how many this process updated."""
        async with self.db.session() as session:
            due = await approval_notices.stale(session, CHANNEL, limit=SWEEP_BATCH, approval_id=approval_id)
        updated = 0
        for notice, shows in due:
            updated += await self._show(notice, shows)
        return updated

    async def _show(self, notice: ApprovalNotice, shows: str) -> int:
        was = notice.shown_status
        async with self.db.transaction() as session:
            if not await approval_notices.claim(session, notice.id, was=was, shows=shows):
                return 0  # another replica has it
            approval = await session.get(Approval, notice.approval_id)
        try:
            if approval is None:
                return 0
            bot = await self.bot(approval.workspace_id)
            if bot is None:
                log.info("approval %s: its Slack message cannot be updated: no working Slack connection", approval.id)
                return 0
            card, outcome = await self._settled_card(approval, shows)
            await bot.update(str(notice.ref["channel"]), str(notice.ref["ts"]), message.settled(card, outcome))
        except SlackError as exc:
            if exc.transient:
                async with self.db.transaction() as session:
                    await approval_notices.release(session, notice.id, shows=shows, back_to=was)
            log.warning("approval %s: its Slack message was not updated: %s", notice.approval_id, exc.error)
            return 0
        return 1

    async def card(self, approval: Approval) -> message.Card:
        """The approval as its message shows it, from what the one renderer made when the call was asked."""
        view = approval_flow.approval_view(self.flow, self.registry.tools, approval)
        async with self.db.session() as session:
            asker = await session.get(User, approval.user_id)
        return message.Card(
            approval_id=approval.id,
            app_name=str(view["app_name"]),
            summary=str(view["summary"]),
            asked_by=on_behalf_of(approval.assistant, asker.email if asker else "someone"),
            risk=approval.risk,
            expires_at=approval.expires_at,
            page_url=self.flow.page_url(approval.id),
        )

    async def _settled_card(self, approval: Approval, shows: str) -> tuple[message.Card, message.Outcome]:
        async with self.db.session() as session:
            decider = await session.get(User, approval.decided_by) if approval.decided_by else None
        outcome = message.Outcome(
            shown=shows,
            decided_by=decider.email if decider else None,
            via=approval.decided_via if decider else None,
            reason=approval.reason,
            decided_at=approval.decided_at if decider else None,
            edited=approval.edited_by is not None,
        )
        return await self.card(approval), outcome

    async def sweep(self) -> None:
        """One round of the background work: update what is stale, and forget signatures too old to replay."""
        await self.refresh()
        async with self.db.transaction() as session:
            await seen_requests.forget_before(session, utcnow() - timedelta(seconds=2 * WINDOW_SECONDS))

    async def forever(self) -> None:
        """The sweep, every ``every`` seconds, for as long as the server runs (its lifespan)."""
        while True:
            try:
                await self.sweep()
            except Exception:  # the next round tries again; a failure here must not end the sweeping
                log.exception("the Slack approvals sweep failed")
            await asyncio.sleep(self.every)

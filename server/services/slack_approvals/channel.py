"""The Slack channel of ``server.services.notices``: a direct message to each approver who chose Slack, and the
updates that keep those messages true.

A message goes out when the workspace's admin turned Slack approvals on, the workspace has a working Slack
connection (its bot), the server knows the Slack app's signing secret (without it no button could be trusted),
and the approver chose Slack in their settings. The approver is found in Slack by their e-mail address
(``users.lookupByEmail``), remembered for an hour. Each message tells the call's whole story as its card does
(``server.services.cards``), made as the approver it is sent to reads it: names are read as the person who asked,
and what the approver may see is what the console would show them.

Each message is kept as an ``ApprovalNotice``, with whether it offers Approve. When the approval is decided
anywhere (the console, the API, another channel, Slack itself) or its time is up, the message is updated by a
sweep every few seconds on every replica, woken at once where the decision was made in Slack; it claims each
message with a conditional update so that only one replica updates it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

import httpx
from sqlalchemy import select, true

from approvals import lifecycle
from server.services.approval_flow import ApprovalFlow
from server.services.cards import Cards
from server.services.notices import Notice
from server.services.slack_approvals import message
from server.services.slack_approvals.signing import WINDOW_SECONDS
from server.services.slack_approvals.web_api import SlackBot, SlackError, bot_of
from server.settings import Settings
from store import approval_notices, seen_requests
from store.cache import SharedCache
from store.crypto import SecretBox
from store.db import Database
from store.directory import member_principal
from store.models import Approval, ApprovalNotice, User, Workspace, utcnow
from store.principal import Principal
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
        cards: Cards,
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
        self.cards = cards
        self.every = every
        self._slack_ids: SharedCache[tuple[str, str], str | None] = SharedCache(IDENTITY_SECONDS)
        self._woken = asyncio.Event()

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
            approval = await session.get(Approval, notice.approval_id)
            if workspace is None or not workspace.slack_approvals or approval is None:
                return
            # An approval is announced again when it escalates: those who have its message already are not
            # sent another.
            told = {n.user_id for n in await approval_notices.of_approval(session, notice.approval_id, CHANNEL)}
            approvers: list[tuple[User, Principal]] = []
            # An escalation that names Slack reaches each approver there, whether or not they chose Slack.
            chose = true() if CHANNEL in notice.insist else User.notify_slack.is_(True)
            for user in await session.scalars(
                select(User).where(User.id.in_(notice.approvers), chose).order_by(User.id)
            ):
                # Each is shown the call as they may see it in the console: as a member of its workspace.
                viewer = await member_principal(session, notice.workspace_id, user.id, acting_as=CHANNEL)
                if user.id not in told and viewer is not None:
                    approvers.append((user, viewer))
        if not approvers:
            return
        bot = await self.bot(notice.workspace_id)
        if bot is None:
            log.info(
                "approval %s: Slack approvals are on, but the workspace has no working Slack connection",
                notice.approval_id,
            )
            return
        for approver, viewer in approvers:
            try:
                await self._send(bot, approval, approver, viewer)
            except SlackError as exc:
                log.warning(
                    "approval %s: the Slack message to %s was not sent: %s", notice.approval_id, approver.id, exc.error
                )

    async def _send(self, bot: SlackBot, approval: Approval, approver: User, viewer: Principal) -> None:
        slack_id = await self.slack_id(bot, approver.email)
        if slack_id is None:
            log.info("approval %s: %s has no Slack account with their e-mail address", approval.id, approver.id)
            return
        sent = message.waiting(await self.card(approval, viewer))
        channel, ts = await bot.post(slack_id, sent.payload())
        async with self.db.transaction() as session:
            # Whether it offers Approve is kept with it: a press is judged by what the message showed, at once,
            # without making the card again (which reads through the app, longer than Slack waits).
            await approval_notices.record(
                session,
                approval_id=approval.id,
                user_id=approver.id,
                channel=CHANNEL,
                ref={"channel": channel, "ts": ts, "user": slack_id, "approve": sent.approve},
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
            # An updated message offers no Approve: it says so from now on, even if Slack does not take the update.
            settled_ref = {**notice.ref, "approve": False}
            if not await approval_notices.claim(session, notice.id, was=was, shows=shows, ref=settled_ref):
                return 0  # another replica has it
            approval = await session.get(Approval, notice.approval_id)
            viewer = (
                await member_principal(session, approval.workspace_id, notice.user_id, acting_as=CHANNEL)
                if approval is not None
                else None
            )
        try:
            if approval is None:
                return 0
            if viewer is None:
                # Its buttons decide nothing for someone who left (``interactions``); the call is not shown again.
                log.info("approval %s: its Slack message is left as it is: its approver left", approval.id)
                return 0
            bot = await self.bot(approval.workspace_id)
            if bot is None:
                log.info("approval %s: its Slack message cannot be updated: no working Slack connection", approval.id)
                return 0
            card, outcome = await self._settled_card(approval, shows, viewer)
            await bot.update(
                str(notice.ref["channel"]), str(notice.ref["ts"]), message.settled(card, outcome).payload()
            )
        except SlackError as exc:
            if exc.transient:
                async with self.db.transaction() as session:
                    await approval_notices.release(session, notice.id, shows=shows, back_to=was)
            log.warning("approval %s: its Slack message was not updated: %s", notice.approval_id, exc.error)
            return 0
        return 1

    def denial(self, approval: Approval) -> message.Denial:
        """What the Deny form shows: the approval's own summary, made without reading through the app."""
        tool = self.registry.tools.get(approval.tool)
        if tool is None:
            return message.Denial(approval.app, approval.tool)
        summary = self.flow.summary(approval, tool, lifecycle.arguments_of(self.box, approval))
        return message.Denial(tool.manifest.name, summary)

    async def card(self, approval: Approval, viewer: Principal) -> message.Card:
        """The approval as its message shows it to ``viewer``, the approver it is sent to: its card."""
        story = (await self.cards.cards(viewer, [approval]))[approval.id]
        tool = self.registry.tools.get(approval.tool)
        return message.Card(
            approval_id=approval.id,
            app_name=tool.manifest.name if tool else approval.app,
            story=story,
            expires_at=approval.expires_at,
            page_url=self.flow.page_url(approval.id),
        )

    async def _settled_card(
        self, approval: Approval, shows: str, viewer: Principal
    ) -> tuple[message.Card, message.Outcome]:
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
        return await self.card(approval, viewer), outcome

    async def sweep(self) -> None:
        """One round of the background work: update what is stale, and forget signatures too old to replay."""
        await self.refresh()
        async with self.db.transaction() as session:
            await seen_requests.forget_before(session, utcnow() - timedelta(seconds=2 * WINDOW_SECONDS))

    def wake(self) -> None:
        """Sweep now rather than at the next round: something was decided in Slack. The person who pressed is
        answered first; their message is updated (which reads through the app) by the sweep."""
        self._woken.set()

    async def forever(self) -> None:
        """The sweep, every ``every`` seconds or when woken, for as long as the server runs (its lifespan)."""
        while True:
            self._woken.clear()
            try:
                await self.sweep()
            except Exception:  # the next round tries again; a failure here must not end the sweeping
                log.exception("the Slack approvals sweep failed")
            # Not asyncio.wait_for: before Python 3.12 it swallows a cancellation that meets the wake-up, and
            # the server's shutdown would wait for this loop forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.every):
                    await self._woken.wait()

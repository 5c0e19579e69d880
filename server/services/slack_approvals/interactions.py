"""Button presses and the Deny form from Slack: who pressed, and what that decides.

A request is admitted only if Slack signed it now (``signing``) and no replica has seen it before
(``store.seen_requests``). Its payload is then Slack's word, but the Slack account that pressed is not yet a
person of Companion's. It is the approver only if the message pressed is one Companion sent about this approval
(found by its conversation and ts), it was sent to this very Slack account, and the account that holds the
approver's e-mail address in Slack is still this one (``users.lookupByEmail``, asked again at each press). Anyone
else is told so, only them, and nothing is decided.

The decision is then made as that person, through the same use case as the console's (``decide_elsewhere``,
``via="slack"``): every rule of who may decide holds, and the approval runs once whatever else decides it. No
assistant's credential is involved: the assistant never sees Slack's requests, nor the signing secret.

Slack wants its answer within three seconds, and a ``trigger_id`` opens the Deny form only within three seconds of
the press. Nothing here reads through the app, which a card may take five seconds a read to do: Approve is honoured
only on a message that offered it, as kept when it was sent (``channel``); the Deny form shows the summary kept with
the approval; and the messages are updated afterwards, by the sweep this wakes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from server.services.approval_flow import DecisionRefused, decide_elsewhere
from server.services.slack_approvals import message
from server.services.slack_approvals.channel import CHANNEL, SlackChannel
from server.services.slack_approvals.signing import BadSignature, verify
from server.services.slack_approvals.web_api import SlackBot, SlackError, respond_ephemeral
from store import approval_notices, seen_requests
from store.directory import member_principal
from store.models import Approval, ApprovalNotice, ApprovalStatus, User, Workspace
from store.principal import Principal

log = logging.getLogger(__name__)

NOT_YOURS = (
    "Only the person this request was sent to can decide it here, from the Slack account with their e-mail "
    "address. Nothing was decided."
)
COUNTED = "Your word is counted. The request still waits for the other approvers it needs."
SLACK_OFF = "Slack approvals are off in this workspace. Open the request to decide it in the console."
NOT_OFFERED = (
    "This message does not show all of the request, so it cannot approve it. Nothing was decided: open the request "
    "to read all of it and approve it there."
)


@dataclass(frozen=True)
class Press:
    """A button pressed on a message: who pressed, on which message, which button, and where to answer them."""

    slack_user: str
    channel: str
    ts: str
    action: str
    approval_id: str
    trigger_id: str
    response_url: str


@dataclass(frozen=True)
class DenyForm:
    """The Deny form sent: who sent it, the message it was opened from (as Companion wrote it into the form) and
    the reason typed."""

    slack_user: str
    metadata: str
    reason: str


class Refused(Exception):
    """Said to the person who pressed, and only to them; nothing was decided."""


@dataclass(frozen=True)
class _Approver:
    principal: Principal
    bot: SlackBot
    approval: Approval
    notice: ApprovalNotice


class SlackInteractions:
    def __init__(self, channel: SlackChannel) -> None:
        self.channel = channel
        self.db = channel.db
        self.flow = channel.flow

    @property
    def configured(self) -> bool:
        return self.channel.configured

    async def admit(self, timestamp: str | None, sent: str | None, body: bytes) -> None:
        """Let a request in only if Slack signed it within the last minutes and it was not seen before.

        Raises BadSignature (its code ``replayed`` for a request seen before).
        """
        secret = self.channel.settings.slack_signing_secret
        if secret is None:
            raise BadSignature("not_configured", "This server takes no Slack interactions.")
        digest = verify(secret.get_secret_value().encode(), timestamp, sent, body)
        async with self.db.transaction() as session:
            if not await seen_requests.first_sight(session, digest):
                raise BadSignature("replayed", "This request was already handled.")

    async def press(self, press: Press) -> None:
        """A button: Approve decides, Deny opens the form asking why, Open (a link) decides nothing."""
        if press.action not in (message.APPROVE, message.DENY):
            return
        said: str | None = None
        try:
            approver = await self._approver(press.slack_user, press.approval_id, press.channel, press.ts)
            shown = approval_notices.shown_as(approver.approval)
            if shown != approval_notices.PENDING:
                raise Refused(f"Nothing was decided: this request is already {shown}.")
            if press.action == message.APPROVE:
                # Checked here, not only by leaving the button out: a message's buttons are the client's to send.
                if approver.notice.ref.get("approve") is not True:
                    raise Refused(NOT_OFFERED)
                said = await self._decide(approver, approve=True, reason=None)
            else:
                await self._ask_why(approver, press)
        except Refused as exc:
            said = str(exc)
        if said is not None:
            await respond_ephemeral(self.channel.http, self.channel.keeper, press.response_url, said)
        self.channel.wake()

    async def deny(self, form: DenyForm) -> str | None:
        """The Deny form: deny with its reason. What to show in the form instead, if it was not done."""
        try:
            opened = json.loads(form.metadata)
            approval_id, channel, ts = str(opened["approval"]), str(opened["channel"]), str(opened["ts"])
        except (ValueError, KeyError, TypeError):
            return NOT_YOURS
        try:
            approver = await self._approver(form.slack_user, approval_id, channel, ts)
            reason = form.reason.replace("\x00", "").strip()[: message.REASON_CHARS]
            return await self._decide(approver, approve=False, reason=reason or None)
        except Refused as exc:
            return str(exc)
        finally:
            self.channel.wake()

    async def _approver(self, slack_user: str, approval_id: str, channel: str, ts: str) -> _Approver:
        """The person who may decide this approval from this message, if the Slack account that pressed is theirs."""
        async with self.db.session() as session:
            notices = await approval_notices.of_approval(session, approval_id, CHANNEL)
            notice = next((n for n in notices if _is(n, channel, ts)), None)
            if notice is None or notice.ref.get("user") != slack_user:
                raise Refused(NOT_YOURS)
            approval = await session.get(Approval, approval_id)
            approver = await session.get(User, notice.user_id)
            if approval is None or approver is None:
                raise Refused(NOT_YOURS)
            workspace = await session.get(Workspace, approval.workspace_id)
            if workspace is None or not workspace.slack_approvals:
                raise Refused(SLACK_OFF)
            principal = await member_principal(session, approval.workspace_id, approver.id, acting_as="slack")
        bot = await self.channel.bot(approval.workspace_id)
        if principal is None or bot is None:
            raise Refused(NOT_YOURS)
        try:
            # Asked again at every press, not remembered: an address moved to another account moves the right.
            holder = await bot.user_id_of(approver.email)
        except SlackError as exc:
            log.warning("approval %s: the Slack account that pressed could not be checked: %s", approval_id, exc.error)
            raise Refused("Slack could not confirm who you are just now. Nothing was decided; try again.") from None
        if holder != slack_user:
            raise Refused(NOT_YOURS)
        return _Approver(principal, bot, approval, notice)

    async def _decide(self, approver: _Approver, *, approve: bool, reason: str | None) -> str | None:
        """Decide as the approver; what to tell them if their word was one of several the approval still waits
        for. Raises Refused when it decided nothing."""
        try:
            decided = await decide_elsewhere(
                self.flow,
                self.channel.registry.tools,
                approver.principal,
                approver.approval.id,
                approve=approve,
                via="slack",
                reason=reason,
            )
        except DecisionRefused as exc:
            if exc.code not in ("conflict", "expired"):
                raise Refused(f"Nothing was decided: {exc}") from None
            async with self.db.session() as session:
                now = await session.get(Approval, approver.approval.id, populate_existing=True)
            shown = approval_notices.shown_as(now) if now is not None else approval_notices.WITHDRAWN
            raise Refused(f"Nothing was decided: this request is already {shown}.") from None
        return COUNTED if decided.status is ApprovalStatus.PENDING else None

    async def _ask_why(self, approver: _Approver, press: Press) -> None:
        """Open the Deny form; nothing is decided until it is sent."""
        approval = approver.approval
        metadata = json.dumps({"approval": approval.id, "channel": press.channel, "ts": press.ts})
        try:
            await approver.bot.open_view(press.trigger_id, message.deny_form(self.channel.denial(approval), metadata))
        except SlackError as exc:
            log.warning("approval %s: the Deny form did not open: %s", approval.id, exc.error)
            raise Refused("The Deny form did not open in time. Nothing was decided; press Deny again.") from None


def _is(notice: ApprovalNotice, channel: str, ts: str) -> bool:
    return notice.ref.get("channel") == channel and notice.ref.get("ts") == ts

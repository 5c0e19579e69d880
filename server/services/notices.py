"""Telling approvers that an approval waits for them, on every channel they chose (e-mail, Slack, their devices).

The approval flow announces each new approval once, after it is committed. ``Notices`` hands it to every channel
in the background: a slow or failing channel never holds up the assistant's call, nor the other channels, and a
failure is logged without the message. Every channel gets the same ``Notice``: the summary the one renderer
made when the call was asked (``tools/summary.py``), so each shows exactly what will run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from approvals import group
from store.models import Approval

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    """What every channel says about one waiting approval."""

    approval_id: str
    workspace_id: str
    #: Who may decide it, so whom to tell: the person who asked, unless a rule names approvers.
    approvers: tuple[str, ...]
    asker_id: str
    summary: str
    app_name: str
    tool: str
    risk: str
    #: The assistant in words (a key's name or an OAuth client's), or "" when none was recorded.
    assistant: str
    expires_at: datetime
    #: Channels that tell every approver they can reach, whether or not the approver chose them: those an
    #: escalation names (``approvals.group.escalation``).
    insist: frozenset[str] = frozenset()


class Channel(Protocol):
    """One way of reaching approvers. ``name`` is how people choose it in their settings."""

    name: str

    async def waiting(self, notice: Notice) -> None:
        """Tell the notice's approvers who chose this channel; never raise for one approver's failure."""


def approvers_of(approval: Approval) -> tuple[str, ...]:
    """Who decides: the people a rule named (``approvers``), the admins where they may approve (once escalated,
    say), and a personal connection's owner; else the person whose call it is (``approvals.group``)."""
    return group.notified(approval.approvers, approval.user_id) or (approval.user_id,)


class Notices:
    def __init__(self, channels: list[Channel] | None = None) -> None:
        self.channels: list[Channel] = list(channels or [])
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, channel: Channel) -> None:
        self.channels.append(channel)

    def announce(self, approval: Approval, summary: str, app_name: str, *, insist: Iterable[str] = ()) -> None:
        """The approval flow's hook: tell every channel, each in its own background task; those named in
        ``insist`` tell each approver whether or not they chose it."""
        notice = Notice(
            approval_id=approval.id,
            workspace_id=approval.workspace_id,
            approvers=approvers_of(approval),
            asker_id=approval.user_id,
            summary=summary,
            app_name=app_name,
            tool=approval.tool,
            risk=approval.risk,
            assistant=approval.assistant,
            expires_at=approval.expires_at,
            insist=frozenset(insist),
        )
        loop = asyncio.get_running_loop()
        for channel in self.channels:
            task = loop.create_task(self._send(channel, notice))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, channel: Channel, notice: Notice) -> None:
        try:
            await channel.waiting(notice)
        except Exception as exc:  # one channel's failure must not reach the call, nor the other channels
            log.warning("approval %s: the %s notice failed: %s", notice.approval_id, channel.name, type(exc).__name__)

    async def drain(self) -> None:
        """Wait for the notices on their way (tests, shutdown)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

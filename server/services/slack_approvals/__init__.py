"""Slack approvals: a waiting approval reaches its approvers as a Slack direct message with Approve, Deny and Open,
through the workspace's Slack connection; the message is kept true once the approval is decided anywhere.

- ``channel``: the notices channel that sends the messages, and the sweep that updates them;
- ``interactions``: Slack's signed button presses and the Deny form, decided as the approver;
- ``message``: the Block Kit the messages are made of, everything the assistant chose in rich text, as it is;
- ``signing``: Slack's request signatures; ``web_api``: the bot's Web API calls.

The front end that takes Slack's requests is ``server.slack``; docs/slack-approvals.md says how to set it up.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.services.slack_approvals.channel import SlackChannel
from server.services.slack_approvals.interactions import SlackInteractions


@dataclass(frozen=True)
class SlackApprovals:
    """What the composition root builds once: the channel for ``Notices`` and its sweep, and what the Slack front
    end is handed."""

    channel: SlackChannel
    interactions: SlackInteractions

    @classmethod
    def of(cls, channel: SlackChannel) -> SlackApprovals:
        return cls(channel, SlackInteractions(channel))


__all__ = ["SlackApprovals", "SlackChannel", "SlackInteractions"]

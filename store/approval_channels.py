"""Where waiting approvals reach people: each person's choice of channels, and the workspace's policy on them.

A person chooses e-mail, a Slack direct message and their devices' notifications (``User.notify_approvals``,
``notify_slack``, ``notify_push``); each channel reads its own flag. An admin chooses whether the workspace's
Slack connection carries approvals at all, and how risky a call an e-mailed link may decide without signing in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeGuard

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.in_chat_policy import RISKS
from store.models import User, Workspace

LinkRisk = Literal["none", "read", "write", "send", "delete"]
# "none" first: a link alone then decides nothing, and every decision from an e-mail needs signing in.
LINK_RISKS: tuple[LinkRisk, ...] = ("none", *RISKS)


@dataclass(frozen=True)
class PersonalChannels:
    email: bool
    slack: bool
    push: bool


@dataclass(frozen=True)
class WorkspaceChannels:
    slack_approvals: bool
    email_link_max_risk: LinkRisk


def is_link_risk(value: str) -> TypeGuard[LinkRisk]:
    return value in LINK_RISKS


def link_may_decide(max_risk: str, risk: str) -> bool:
    """Whether an e-mailed link alone (no sign-in) may decide a call of ``risk`` under ``max_risk``.

    An unknown value on either side means no: a call whose risk is not one of the four needs signing in."""
    return risk in RISKS and is_link_risk(max_risk) and LINK_RISKS.index(risk) <= LINK_RISKS.index(max_risk)


async def personal_channels(session: AsyncSession, user_id: str) -> PersonalChannels:
    row = (
        await session.execute(
            select(User.notify_approvals, User.notify_slack, User.notify_push).where(User.id == user_id)
        )
    ).one()
    return PersonalChannels(email=bool(row[0]), slack=bool(row[1]), push=bool(row[2]))


async def set_personal_channels(session: AsyncSession, user_id: str, channels: PersonalChannels) -> None:
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(notify_approvals=channels.email, notify_slack=channels.slack, notify_push=channels.push)
    )


async def workspace_channels(session: AsyncSession, workspace_id: str) -> WorkspaceChannels:
    row = (
        await session.execute(
            select(Workspace.slack_approvals, Workspace.email_link_max_risk).where(Workspace.id == workspace_id)
        )
    ).one()
    # A value no release wrote falls back to the strictest: every e-mailed decision needs signing in.
    max_risk: LinkRisk = row.email_link_max_risk if is_link_risk(row.email_link_max_risk) else "none"
    return WorkspaceChannels(slack_approvals=bool(row.slack_approvals), email_link_max_risk=max_risk)


async def set_workspace_channels(session: AsyncSession, workspace_id: str, channels: WorkspaceChannels) -> None:
    await session.execute(
        update(Workspace)
        .where(Workspace.id == workspace_id)
        .values(slack_approvals=channels.slack_approvals, email_link_max_risk=channels.email_link_max_risk)
    )

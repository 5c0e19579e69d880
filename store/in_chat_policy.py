"""A workspace's policy on approvals answered inside an assistant's chat.

An answer given in the chat is only as trustworthy as the host that showed
the form, so it decides nothing unless the key's owner marked the key as used
by a person-facing host. An admin can forbid such keys in the workspace, or
cap the risk of what an in-chat answer may approve (SECURITY.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeGuard

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.invalidation import Topic, announce
from store.models import Workspace

Risk = Literal["read", "write", "send", "delete"]
RISKS: tuple[Risk, ...] = ("read", "write", "send", "delete")
# An in-chat answer through a person-facing key may remember its approval for at most this long.
IN_CHAT_REMEMBER_SECONDS = 3600


@dataclass(frozen=True)
class InChatPolicy:
    person_facing_keys: bool
    in_chat_max_risk: Risk


def _is_risk(value: str) -> TypeGuard[Risk]:
    return value in RISKS


def may_approve_in_chat(max_risk: str, risk: str) -> bool:
    """Whether an in-chat answer may approve a call of ``risk`` under a workspace's ``max_risk``."""
    return risk in RISKS and max_risk in RISKS and RISKS.index(risk) <= RISKS.index(max_risk)


async def policy_of(session: AsyncSession, workspace_id: str) -> InChatPolicy:
    row = (
        await session.execute(
            select(Workspace.person_facing_keys, Workspace.in_chat_max_risk).where(Workspace.id == workspace_id)
        )
    ).one()
    max_risk: Risk = row.in_chat_max_risk if _is_risk(row.in_chat_max_risk) else "read"
    return InChatPolicy(bool(row.person_facing_keys), max_risk)


async def set_policy(session: AsyncSession, workspace_id: str, policy: InChatPolicy) -> None:
    """Change the policy; every replica forgets the principals it resolved, so it applies to the next request."""
    await session.execute(
        update(Workspace)
        .where(Workspace.id == workspace_id)
        .values(person_facing_keys=policy.person_facing_keys, in_chat_max_risk=policy.in_chat_max_risk)
    )
    await announce(session, Topic.KEYS)

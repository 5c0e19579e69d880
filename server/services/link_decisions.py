"""Deciding an approval from the single-use link in its e-mail (``server.services.approval_mail`` sends it).

Opening a link (``open_link``) reads and writes nothing, not even that it was opened: mail scanners and
prefetchers follow links no one clicked. Only a decision (``decide_by_link``) spends the link, and it goes through
``decide_elsewhere`` as the link's approver, so every rule of who may decide an approval holds as it does in the
inbox; the link is spent in that decision's transaction, so the two commit together or not at all, and a link
posted twice at once decides once.

A link alone decides calls up to the workspace's ``email_link_max_risk``. A riskier call needs the approver
signed in as well, and someone signed in as another person decides nothing with it.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from server.services.approval_flow import ApprovalFlow, decide_elsewhere
from store import approval_links
from store.approval_channels import LinkRisk, link_may_decide, workspace_channels
from store.db import Database
from store.directory import member_principal
from store.models import Approval, ApprovalLink, User, Workspace
from store.principal import Principal
from tools.registry import RegisteredTool


class LinkRefused(Exception):
    """A link that cannot do what was asked. ``code``:

    - ``not_found``: no link has this secret, or it is another approval's;
    - ``expired``: the approval's time, and so the link's, is up;
    - ``used``: the link already decided once;
    - ``sign_in``: the call is riskier than a link alone may decide, and no one is signed in;
    - ``wrong_person``: the person signed in is not the link's approver, or is in another workspace;
    - ``not_a_member``: the link's approver has left the workspace.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class OpenedLink:
    """What the link's page shows: the approval, whose link it is, and whether the link alone may decide it."""

    link: ApprovalLink
    approval: Approval
    approver: User
    workspace_name: str
    max_risk: LinkRisk
    link_suffices: bool

    @property
    def used(self) -> bool:
        return self.link.used_at is not None


NOT_FOUND = "This link does not open an approval. Open the approval from the inbox instead."
EXPIRED = "This link has expired with its approval: no one decided in time, so the call did not run."
USED = "This link has been used: a link decides once. Open the approval in the inbox to see how it stands."


async def _link_for(session: AsyncSession, approval_id: str, secret: str) -> ApprovalLink:
    link = await approval_links.find(session, secret)
    if link is None or link.approval_id != approval_id:
        raise LinkRefused("not_found", NOT_FOUND)
    if approval_links.is_expired(link):
        raise LinkRefused("expired", EXPIRED)
    return link


async def open_link(db: Database, approval_id: str, secret: str) -> OpenedLink:
    """The approval a link opens, read in a session that commits nothing."""
    async with db.session() as session:
        link = await _link_for(session, approval_id, secret)
        approval = await session.get(Approval, approval_id)
        approver = await session.get(User, link.user_id)
        if approval is None or approver is None:
            raise LinkRefused("not_found", NOT_FOUND)
        workspace = await session.get(Workspace, approval.workspace_id)
        policy = await workspace_channels(session, approval.workspace_id)
    return OpenedLink(
        link=link,
        approval=approval,
        approver=approver,
        workspace_name=workspace.name if workspace else "",
        max_risk=policy.email_link_max_risk,
        link_suffices=link_may_decide(policy.email_link_max_risk, approval.risk),
    )


async def decide_by_link(
    flow: ApprovalFlow,
    tools: dict[str, RegisteredTool],
    approval_id: str,
    secret: str,
    *,
    approve: bool,
    reason: str | None,
    signed_in: Principal | None,
) -> Approval:
    """Approve or deny with an e-mailed link, as its approver; ``signed_in`` is whoever the browser is signed in as.

    Raises ``LinkRefused``, or ``DecisionRefused`` when the approval itself refuses (decided already, expired,
    not this person's to decide); either way the link stays unspent.
    """
    async with flow.db.transaction() as session:
        link = await _link_for(session, approval_id, secret)
        if link.used_at is not None:
            raise LinkRefused("used", USED)
        approval = await session.get(Approval, approval_id)
        if approval is None:
            raise LinkRefused("not_found", NOT_FOUND)
        policy = await workspace_channels(session, approval.workspace_id)
        if link_may_decide(policy.email_link_max_risk, approval.risk):
            actor = await member_principal(session, approval.workspace_id, link.user_id, acting_as=f"email_{link.id}")
            if actor is None:
                raise LinkRefused("not_a_member", "This link's approver is no longer a member of the workspace.")
        elif signed_in is None:
            raise LinkRefused(
                "sign_in", "Sign in to decide this approval: a link alone does not decide calls this risky."
            )
        elif signed_in.user_id != link.user_id or signed_in.workspace_id != approval.workspace_id:
            raise LinkRefused(
                "wrong_person",
                "This link is for someone else, or for another workspace than the one you are signed in to. "
                "Sign out, or switch workspace, and open the link again.",
            )
        else:
            actor = signed_in
        if not await approval_links.use(session, link.id):
            raise LinkRefused("used", USED)
        return await decide_elsewhere(
            _within(flow, session), tools, actor, approval_id, approve=approve, via="email", reason=reason
        )


class _OneTransaction(Database):
    """A database whose sessions and transactions are all one open transaction, the caller's.

    ``decide_elsewhere`` opens its own transaction on ``flow.db``; handed this instead, its work joins the
    transaction that spends the link, and commits (or rolls back) with it.
    """

    def __init__(self, outer: Database, session: AsyncSession) -> None:
        self.url, self.engine, self.sessions = outer.url, outer.engine, outer.sessions
        self._session = session

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        yield self._session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        yield self._session


def _within(flow: ApprovalFlow, session: AsyncSession) -> ApprovalFlow:
    joined = copy.copy(flow)
    joined.db = _OneTransaction(flow.db, session)
    return joined

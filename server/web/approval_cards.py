"""An approval as its card shows it to one person: what will happen (``approval_view``), the whole story of the
call (``server.services.cards``), and what this person may do about it now (``Turn``).

The inbox, the approval page and the page an e-mailed link opens show this one card, so each tells the same
story and offers only what deciding would accept: someone who has voted, or who may not vote, is told where
things stand or why, never offered a button that would answer 409 or 403.

A list of cards (the inbox, its history) shows each card ``listed``: long text as its preview, with a link to the
approval's page, which alone holds the whole of it and the full arguments. A list's size and the work to make it
so stay the same whatever an assistant wrote, and a listed card that shows a preview offers "Open to approve"
instead of Approve: a person approves only where every value that would run is in front of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import anyio

from approvals import group, lifecycle
from server.services.approval_flow import approval_view, visible_to
from server.services.cards import ago
from server.services.wiring import ConsoleServices
from store.models import Approval, ApprovalStatus, utcnow
from store.principal import Principal


@dataclass(frozen=True)
class Turn:
    """What the viewer may do on a waiting card, and what it says to them instead of a button it leaves out."""

    may_approve: bool = True
    may_deny: bool = True
    # Where their vote is in, or why they cannot decide (or cannot approve).
    said: str | None = None
    voted: bool = False

    @property
    def may_decide(self) -> bool:
        return self.may_approve or self.may_deny


def turn_of(approval: Approval, viewer: Principal) -> Turn:
    """What ``viewer`` may do on ``approval``, as deciding it would judge (``lifecycle.vote``)."""
    if approval.status is not ApprovalStatus.PENDING or lifecycle.is_expired(approval):
        return Turn(False, False)
    if not visible_to(approval, viewer):
        return Turn(False, False, "This approval is not yours to decide.")
    approvers = approval.approvers
    if approvers is None:
        return Turn()
    asker, me = approval.user_id, viewer.user_id
    votes = approvers.get("votes", [])
    mine = next((vote for vote in votes if vote.get("user_id") == me), None)
    if mine is not None:
        return Turn(False, False, _voted_words(approval, approvers, bool(mine.get("approve"))), voted=True)
    if not group.in_group(approvers, asker_id=asker, actor_id=me, actor_is_admin=viewer.is_admin):
        whom = "You asked for this call, but" if me == asker else "You may see this call, but"
        return Turn(False, False, f"{whom} an admin rule names who approves it, and you are not one of them.")
    if group.self_approval_refused(approvers, no_self_approval=approval.no_self_approval, asker_id=asker, actor_id=me):
        return Turn(
            False,
            True,
            "You asked for this call, and an admin rule says someone else must approve it. You may still deny it.",
        )
    return Turn()


def _voted_words(approval: Approval, approvers: dict[str, Any], approved: bool) -> str:
    """ "You approved this · 1 of 2 approvals so far; waiting for carol@acme.test." """
    votes = approvers.get("votes", [])
    standing = group.tally(
        approvers,
        [(vote["user_id"], bool(vote["approve"])) for vote in votes],
        asker_id=approval.user_id,
        no_self_approval=approval.no_self_approval,
    )
    said = f"You {'approved' if approved else 'denied'} this"
    if standing.needed:
        plural = "s" if standing.needed != 1 else ""
        said += f" · {standing.given} of {standing.needed} approval{plural} so far"
    waiting = _waiting_for(approval, approvers, standing)
    return f"{said}; waiting for {waiting}." if waiting else f"{said}."


def _waiting_for(approval: Approval, approvers: dict[str, Any], standing: group.Tally) -> str:
    """Whose approvals are still wanted: "carol@acme.test", "one more from carol@… or a workspace admin"."""
    voted = {vote.get("user_id") for vote in approvers.get("votes", [])}
    names = approvers.get("names", {})
    refused = approval.user_id if approval.no_self_approval else None
    people = [user_id for user_id in approvers.get("people", []) if user_id not in voted and user_id != refused]
    who = [names.get(user_id) or "a named approver" for user_id in people]
    if approvers.get("admins"):
        who.append("a workspace admin")
    left = max(standing.needed - standing.given, 0)
    parts = []
    if left and who:
        if left >= len(who) and not approvers.get("admins"):
            parts.append(_joined(who, "and"))
        else:
            more = "one more" if left == 1 else f"{left} more"
            parts.append(f"{more} from {_joined(who, 'or')}")
    if standing.owner_needed and not standing.owner_given:
        parts.append("the owner's approval")
    return " and ".join(parts)


def _joined(items: list[str], word: str) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"


def until(moment: datetime) -> str:
    """How long until ``moment``, as a card says it: "40 s", "12 min", "3 h", or "expired"."""
    seconds = int((moment - utcnow()).total_seconds())
    if seconds <= 0:
        return "expired"
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds / 3600)} h"


async def card_views(
    services: ConsoleServices,
    viewer: Principal,
    approvals: Sequence[Approval],
    *,
    earlier: bool = True,
    listed: bool = False,
) -> list[dict[str, Any]]:
    """Each approval as its card shows it to ``viewer``; ``earlier`` False leaves out what the same assistant
    asked before (the link page shows it to whoever holds the link, not to a signed-in person); ``listed`` makes
    the cards for a list."""
    # Unsealing and rendering what the assistants asked is work in proportion to what they sent (megabytes, at
    # worst, for each of a list's calls): it runs beside the event loop, which goes on serving everyone else.
    views = await anyio.to_thread.run_sync(
        lambda: [approval_view(services.flow, services.registry.tools, approval) for approval in approvals]
    )
    opened = {approval.id: view["arguments"] for approval, view in zip(approvals, views, strict=True)}
    stories = await services.cards.cards(viewer, approvals, full=not listed, opened=opened)
    cards = []
    for approval, view in zip(approvals, views, strict=True):
        story = stories[approval.id]
        view["story"] = story if earlier else replace(story, earlier=())
        view["requester"] = "you" if approval.user_id == viewer.user_id else None
        view["asked_by"] = story.asked_by
        view["asked_ago"] = ago(approval.created_at)
        view["expires_in"] = until(approval.expires_at)
        view["turn"] = turn_of(approval, viewer)
        view["listed"] = listed
        cards.append(view)
    return cards

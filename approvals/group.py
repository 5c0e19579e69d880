"""Approvals that need several people: who may vote, and when the votes decide.

An admin ask rule can name the approvers of a call (people, the workspace's
admins, or both), ask for N approvals instead of one, refuse the approval of
the person who asked, and add the admins after a while (approvals.rules,
``ApproverDemand``). When a call asks, that demand becomes the approval's
``approvers``, a plain JSON object, so a view, a notice or a vote reads it
without another query:

    {"people": [user ids], "names": {user id: e-mail}, "admins": bool,
     "admin_ids": [user ids], "count": n, "owner": bool,
     "votes": [{"user_id", "email", "approve", "at"}],
     "escalation": {"to": "admins" or null, "by": [channel names]}}

``admins`` is decided when someone votes (whoever is an admin then);
``admin_ids`` is who was an admin when the call asked or was escalated, so
notices know whom to tell. ``owner`` is set for a call on a personal
connection, which answers to its owner: the owner's approval is needed as well
as the group's, and never counts towards ``count``. ``votes`` copies the
approval_votes rows for views; those rows decide. ``escalation`` says what
happens at the approval's ``escalate_at``, in the rule's words: the admins are
added (``to``), and the approvers are told again by the channels ``by`` names,
whether or not they chose them (an approval from before it was recorded adds the
admins, as all did then). It never says ``"admins": true``: that text in the
JSON is how a query finds the approvals admins may decide now
(``server.services.approval_flow.visible_clause``).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from approvals.rules import ApproverDemand


def initial(
    demand: ApproverDemand,
    *,
    asker_id: str,
    people: dict[str, str],
    admin_ids: Iterable[str],
    admin_may_approve: bool,
) -> dict[str, Any]:
    """An approval's ``approvers`` when its call asks. ``people`` maps the members the rule named (by e-mail) to
    their e-mail; a rule that names no one leaves the person who asked as the approver (unless it refuses
    self-approval), with the admins where a rule lets them approve."""
    if demand.names_approvers:
        named = {user_id: email for user_id, email in people.items() if not (demand.owner and user_id == asker_id)}
        count = demand.count
    else:
        # The owner of a personal connection approves as its owner; with no one named, no one else needs to.
        named = {} if demand.no_self_approval or demand.owner else {asker_id: ""}
        count = 0 if demand.owner else 1
    admins = demand.admins or admin_may_approve
    return {
        "people": list(named),
        "names": {user_id: email for user_id, email in named.items() if email},
        "admins": admins,
        "admin_ids": sorted(admin_ids) if admins else [],
        "count": count,
        "owner": demand.owner,
        "votes": [],
        "escalation": {"to": "admins" if demand.escalate_to_admins else None, "by": list(demand.escalate_by)},
    }


def escalation(approvers: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
    """What escalating does: whether the admins are added, and the channels the approvers are then told by."""
    said = approvers.get("escalation")
    if not isinstance(said, dict):
        return True, ()
    return said.get("to") == "admins", tuple(str(channel) for channel in said.get("by", []))


def escalated(approvers: dict[str, Any], admin_ids: Iterable[str]) -> dict[str, Any]:
    """The approvers once the approval escalates: the workspace's admins added, where its rule says so."""
    if not escalation(approvers)[0]:
        return approvers
    return {**approvers, "admins": True, "admin_ids": sorted({*approvers.get("admin_ids", []), *admin_ids})}


def in_group(approvers: dict[str, Any], *, asker_id: str, actor_id: str, actor_is_admin: bool) -> bool:
    """Whether the actor is one of the approvers (an admin counts if admins may approve, as they are now)."""
    return (
        actor_id in approvers.get("people", [])
        or (bool(approvers.get("admins")) and actor_is_admin)
        or (bool(approvers.get("owner")) and actor_id == asker_id)
    )


def self_approval_refused(
    approvers: dict[str, Any] | None, *, no_self_approval: bool, asker_id: str, actor_id: str
) -> bool:
    """Whether this actor approving would be the person who asked approving their own call, which a rule refuses.

    On a personal connection the owner's approval is wanted all the same: it is their consent, not one of the
    group's approvals."""
    owner = bool(approvers and approvers.get("owner"))
    return no_self_approval and actor_id == asker_id and not owner


def waits_for(
    approvers: dict[str, Any], *, asker_id: str, actor_id: str, actor_is_admin: bool, no_self_approval: bool
) -> bool:
    """Whether the approval waits for this actor's vote: they are an approver, have not voted, and may approve."""
    return (
        in_group(approvers, asker_id=asker_id, actor_id=actor_id, actor_is_admin=actor_is_admin)
        and not any(vote.get("user_id") == actor_id for vote in approvers.get("votes", []))
        and not self_approval_refused(
            approvers, no_self_approval=no_self_approval, asker_id=asker_id, actor_id=actor_id
        )
    )


@dataclass(frozen=True)
class Tally:
    """Where the votes stand: approvals counted towards the number needed, and whether the owner's is in."""

    given: int
    needed: int
    owner_needed: bool
    owner_given: bool
    denied: bool

    @property
    def approved(self) -> bool:
        return not self.denied and self.given >= self.needed and (self.owner_given or not self.owner_needed)

    @property
    def words(self) -> str:
        """ "1 of 2 approvals", and the owner's where it is still needed."""
        owner_waits = self.owner_needed and not self.owner_given
        if not self.needed:
            return "the owner's approval" if owner_waits else "approved by the owner"
        words = f"{self.given} of {self.needed} approval{'s' if self.needed != 1 else ''}"
        return words + ", and the owner's" if owner_waits else words


def tally(
    approvers: dict[str, Any], votes: Iterable[tuple[str, bool]], *, asker_id: str, no_self_approval: bool
) -> Tally:
    """Count the votes: one deny decides; the asker's approval counts towards the group's only where it may."""
    owner = bool(approvers.get("owner"))
    given = 0
    owner_given = denied = False
    for user_id, approve in votes:
        if not approve:
            denied = True
        elif user_id == asker_id and owner:
            owner_given = True
        elif user_id != asker_id or not no_self_approval:
            given += 1
    return Tally(given, int(approvers.get("count", 1)), owner, owner_given, denied)


def notified(approvers: dict[str, Any] | None, asker_id: str) -> tuple[str, ...]:
    """Whom to tell that the approval waits: the named people, the admins as last resolved, and the owner."""
    if approvers is None:
        return (asker_id,)
    owner = [asker_id] if approvers.get("owner") else []
    return tuple(dict.fromkeys([*owner, *approvers.get("people", []), *approvers.get("admin_ids", [])]))

"""Moves an approval through its states, each step one conditional UPDATE and one audit row.

    pending → approved | denied | expired | cancelled
    approved → executing → succeeded | failed

A person may change the arguments before approving (``edit``: pending →
approved, with the assistant's arguments kept sealed beside the new ones); an
approval that needs several approvers collects votes while pending (``vote``)
and moves when one denies or enough approve; one nobody decided in time gets
the workspace's admins as approvers (``escalate_due``).

An approval is bound to one exact call: the workspace, the user and key that
asked, the connection, the tool and the SHA-256 of the canonical arguments.
Every transition names the state it leaves in its WHERE clause, so when two
deciders or two executors race (in one process or across replicas) exactly
one UPDATE matches and the other learns it lost.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BindParameter, Select, bindparam, delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from approvals import group
from approvals.audit import AuditRecord, Event, Outcome, append_in
from store import invalidation
from store.assistant_tokens import is_grant_id
from store.crypto import SecretBox
from store.db import dialect_name, rows_matched
from store.errors import CompanionError
from store.invalidation import Topic
from store.models import (
    ApiKey,
    Approval,
    ApprovalStatus,
    ApprovalVote,
    AssistantGrant,
    Membership,
    Role,
    new_id,
    utcnow,
)
from store.sealing import (
    approval_arguments_context,
    approval_original_arguments_context,
    approval_result_context,
    approval_summary_context,
    audit_arguments_context,
)
from store.wakeups import announce

SETTLED = (ApprovalStatus.SUCCEEDED, ApprovalStatus.FAILED, ApprovalStatus.DENIED)
UNRUN = (ApprovalStatus.PENDING, ApprovalStatus.APPROVED)  # what an expiry still applies to

_NOW: BindParameter[datetime] = bindparam("now")
"""The time at which a statement built once in this module runs, given with each run."""


class ApprovalError(CompanionError):
    """A transition that cannot happen; ``code`` says why (not_found, forbidden, conflict, expired)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


@dataclass(frozen=True)
class Binding:
    """The exact call an approval covers."""

    workspace_id: str
    user_id: str
    api_key_id: str | None
    connection_id: str
    app: str
    tool: str
    risk: str
    args_digest: str
    # The account the connection acts as (a mailbox): a call asked as one is another call as any other.
    account: str | None = None
    # The assistant that asks, in words, for people to read: the key binds the call, its name does not.
    assistant: str = ""


arguments_context = approval_arguments_context


def _record(
    approval: Approval,
    event: Event,
    outcome: str,
    *,
    actor: str | None,
    reasons: tuple[str, ...] | None = None,
    **extra: Any,
) -> AuditRecord:
    return AuditRecord(
        event=event,
        workspace_id=approval.workspace_id,
        user_id=approval.user_id,
        actor_id=actor,
        api_key_id=approval.api_key_id,
        connection_id=approval.connection_id,
        approval_id=approval.id,
        app=approval.app,
        tool=approval.tool,
        risk=approval.risk,
        args_digest=approval.args_digest,
        decision="ask",
        outcome=outcome,
        reasons=reasons if reasons is not None else tuple(approval.reasons or ()),
        rule_ids=tuple(approval.rule_ids or ()),
        assistant=approval.assistant or None,
        **extra,
    )


_REUSABLE = (
    select(Approval)
    .where(
        Approval.workspace_id == bindparam("workspace_id"),
        Approval.user_id == bindparam("user_id"),
        Approval.tool == bindparam("tool"),
        # An approval a person changed before approving still answers the call the assistant asked: its retry
        # runs the changed call, once; a call with the changed arguments finds it too, and never runs it again.
        or_(Approval.args_digest == bindparam("args_digest"), Approval.original_digest == bindparam("args_digest")),
        Approval.connection_id == bindparam("connection_id"),
        # A binding without a key matches approvals without one, as ``== None`` (IS NULL) did when built per call.
        Approval.api_key_id.is_not_distinct_from(bindparam("api_key_id")),
        Approval.account.is_not_distinct_from(bindparam("account")),
        or_(
            Approval.status.in_(UNRUN) & (Approval.expires_at > _NOW),
            # Running, or run by a process that died: a repeat never runs it a second time on its own.
            Approval.status.in_([ApprovalStatus.EXECUTING, ApprovalStatus.OUTCOME_UNKNOWN]),
            Approval.status.in_(SETTLED)
            & (
                or_(Approval.finished_at > bindparam("settled_since"), Approval.decided_at > bindparam("settled_since"))
            ),
        ),
    )
    .order_by(Approval.created_at.desc())
    .limit(1)
)
"""Built once, as every call that asks runs it: building it cost about a third of a millisecond a call."""


async def find_reusable(session: AsyncSession, binding: Binding, *, window: timedelta) -> Approval | None:
    """The approval a repeat of this call belongs to, if any.

    An open approval (pending, approved, executing) that has not expired is
    the same request again. A settled one (succeeded, failed, denied) answers
    repeats for ``window`` after it settled, so a retry gets the stored
    outcome instead of a second run or a second prompt.
    """
    now = utcnow()
    return await session.scalar(
        _REUSABLE,
        {
            "workspace_id": binding.workspace_id,
            "user_id": binding.user_id,
            "tool": binding.tool,
            "args_digest": binding.args_digest,
            "connection_id": binding.connection_id,
            "api_key_id": binding.api_key_id,
            "account": binding.account,
            "now": now,
            "settled_since": now - window,
        },
    )


async def request(
    session: AsyncSession,
    box: SecretBox,
    binding: Binding,
    arguments: dict[str, Any],
    *,
    ttl: timedelta,
    reasons: tuple[str, ...],
    rule_ids: tuple[str, ...],
    require_out_of_band: bool,
    admin_may_approve: bool,
    channel: str,
    sender: str = "",
    summary: str | None = None,
    approvers: dict[str, Any] | None = None,
    no_self_approval: bool = False,
    escalate_after: timedelta | None = None,
) -> Approval:
    # The id is made here, not by the INSERT, so the arguments are sealed to it and written in the same statement.
    approval_id = new_id("apr")
    # Left unset rather than None when no rule names approvers: None would be stored as JSON null, not SQL NULL.
    extra: dict[str, Any] = {"approvers": approvers} if approvers is not None else {}
    approval = Approval(
        **extra,
        no_self_approval=no_self_approval,
        escalate_at=utcnow() + escalate_after if escalate_after is not None else None,
        id=approval_id,
        workspace_id=binding.workspace_id,
        user_id=binding.user_id,
        api_key_id=binding.api_key_id,
        assistant=binding.assistant,
        connection_id=binding.connection_id,
        app=binding.app,
        tool=binding.tool,
        risk=binding.risk,
        args_digest=binding.args_digest,
        account=binding.account,
        sealed_arguments=box.seal_json(arguments, context=arguments_context(approval_id)),
        sender=sender,
        sealed_summary=box.seal_json(summary, context=approval_summary_context(approval_id)) if summary else None,
        reasons=list(reasons),
        rule_ids=list(rule_ids),
        require_out_of_band=require_out_of_band,
        admin_may_approve=admin_may_approve,
        channel=channel,
        expires_at=utcnow() + ttl,
    )
    session.add(approval)
    await session.flush()
    if binding.api_key_id is not None:
        # Every replica forgets the key's principal, so the key's next allowed call looks for this approval. An
        # assistant signed in with OAuth asks through its grant, which stands where a key stands.
        asker = AssistantGrant if is_grant_id(binding.api_key_id) else ApiKey
        await session.execute(
            update(asker).where(asker.id == binding.api_key_id).values(last_asked_at=approval.created_at)
        )
        await invalidation.announce(session, Topic.KEYS)
    append_in(session, _record(approval, Event.REQUESTED, Outcome.PENDING, actor=None))
    return approval


def arguments_of(box: SecretBox, approval: Approval) -> dict[str, Any]:
    """The arguments the approval runs: the assistant's, or what a person changed them to before approving."""
    value = box.open_json(approval.sealed_arguments, context=arguments_context(approval.id))
    if not isinstance(value, dict):
        raise ValueError("sealed arguments are not an object")
    return value


def original_arguments_of(box: SecretBox, approval: Approval) -> dict[str, Any] | None:
    """What the assistant asked, where a person changed it before approving; None if no one did."""
    if approval.sealed_original_arguments is None:
        return None
    value = box.open_json(approval.sealed_original_arguments, context=approval_original_arguments_context(approval.id))
    if not isinstance(value, dict):
        raise ValueError("sealed original arguments are not an object")
    return value


async def reload(session: AsyncSession, approval_id: str) -> Approval:
    """The approval as the database has it now, attached to ``session``."""
    current = await session.get(Approval, approval_id, populate_existing=True)
    if current is None:
        raise ApprovalError("not_found", f"No approval {approval_id}")
    return current


async def _move(session: AsyncSession, where: list[ColumnElement[bool]], values: dict[str, Any]) -> Approval | None:
    """The approval as a conditional UPDATE left it (read back in the same statement), or None if none matched."""
    return await session.scalar(
        update(Approval).where(*where).values(**values).returning(Approval),
        execution_options={"populate_existing": True},
    )


async def get(session: AsyncSession, workspace_id: str, approval_id: str) -> Approval:
    approval = await session.scalar(
        select(Approval).where(Approval.id == approval_id, Approval.workspace_id == workspace_id)
    )
    if approval is None:
        raise ApprovalError("not_found", f"No approval {approval_id} in this workspace")
    return approval


@dataclass(frozen=True, eq=False)
class _Move:
    """A change an approval undergoes on its own once its time is up."""

    statuses: tuple[ApprovalStatus, ...]
    due: ColumnElement[bool]  # in terms of ``_NOW``
    values: dict[str, Any]
    record_of: Callable[[Approval], AuditRecord]


LAPSED_ERROR = "The server running this call stopped before it finished; it may or may not have happened."

_LAPSED = _Move(
    (ApprovalStatus.EXECUTING,),
    (Approval.status == ApprovalStatus.EXECUTING) & (Approval.lease_until < _NOW),
    {"status": ApprovalStatus.OUTCOME_UNKNOWN, "lease_until": None},
    lambda approval: _record(approval, Event.OUTCOME_UNKNOWN, "outcome_unknown", actor=None, error=LAPSED_ERROR),
)
"""executing → outcome_unknown where the running process stopped renewing its lease (it died)."""

_EXPIRED = _Move(
    UNRUN,
    Approval.status.in_(UNRUN) & (Approval.expires_at <= _NOW),
    {"status": ApprovalStatus.EXPIRED},
    lambda approval: _record(approval, Event.EXPIRED, "expired", actor=None),
)
"""pending or approved-but-unrun → expired past the expiry."""


async def expire_due(session: AsyncSession, *, workspace_id: str | None = None) -> int:
    """Mark pending and approved-but-unrun approvals past their expiry as expired, and lapsed runs as unknown.

    Every approval step starts here, so one query finds both kinds.
    """
    return await _settle_due(session, (_LAPSED, _EXPIRED), workspace_id=workspace_id)


@functools.cache
def _due_query(moves: tuple[_Move, ...], in_workspace: bool) -> Select[Approval]:
    # Built once per kind: every approval step runs it, and building it cost more than running it finds nothing.
    query = select(Approval).where(or_(*(move.due for move in moves)))
    return query.where(Approval.workspace_id == bindparam("workspace_id")) if in_workspace else query


async def _settle_due(session: AsyncSession, moves: tuple[_Move, ...], *, workspace_id: str | None) -> int:
    """Make each move on the approvals it is due for, announcing and auditing each.

    The move's ``due`` and the row's status are checked again in each UPDATE,
    so a decision or a finish that lands meanwhile wins, and nothing moves twice.
    """
    now = utcnow()
    query = _due_query(moves, bool(workspace_id))
    params = {"now": now, "workspace_id": workspace_id} if workspace_id else {"now": now}
    settled = 0
    for approval in list(await session.scalars(query, params)):
        move = next(move for move in moves if approval.status in move.statuses)
        moved = await session.execute(
            update(Approval)
            .where(Approval.id == approval.id, Approval.status == approval.status, move.due)
            .values(**move.values),
            {"now": now},
        )
        if rows_matched(moved):
            settled += 1
            await announce(session, approval.id)
            append_in(session, move.record_of(approval))
    return settled


async def resolve_unknown(
    session: AsyncSession, approval: Approval, *, run_again: bool, actor_id: str, via: str, ttl: timedelta
) -> Approval:
    """A person settles an outcome_unknown call: it did not happen (approved again, to run once more) or it did.

    A call a rule gave its own approvers goes back to them instead: one person saying it did not happen is not
    the group's approval of another run, so it waits again, its votes cleared, for as many as it needed."""
    now = utcnow()
    values: dict[str, Any] = {"decided_at": now, "decided_by": actor_id, "decided_via": via}
    regroup = run_again and approval.approvers is not None
    if regroup:
        values.update(
            status=ApprovalStatus.PENDING, expires_at=now + ttl, started_at=None, decided_at=None,
            decided_by=None, decided_via=None, approvers={**(approval.approvers or {}), "votes": []},
        )  # fmt: skip
    elif run_again:
        values.update(status=ApprovalStatus.APPROVED, expires_at=now + ttl, started_at=None)
    else:
        values.update(status=ApprovalStatus.SUCCEEDED, finished_at=now, error=None)
    unknown = [Approval.id == approval.id, Approval.status == ApprovalStatus.OUTCOME_UNKNOWN]
    moved = await _move(session, unknown, values)
    if moved is None:
        approval = await reload(session, approval.id)
        raise ApprovalError("conflict", f"Approval {approval.id} is {approval.status.value}, not outcome_unknown")
    approval = moved
    if regroup:
        await session.execute(delete(ApprovalVote).where(ApprovalVote.approval_id == approval.id))
    await announce(session, approval.id)
    event = Event.REQUESTED if regroup else Event.APPROVED if run_again else Event.EXECUTED
    append_in(session, _record(approval, event, approval.status.value, actor=actor_id))
    return approval


async def decide(
    session: AsyncSession,
    approval: Approval,
    *,
    approve: bool,
    actor_id: str | None,
    via: str,
    reason: str | None = None,
    nonce: str | None = None,
) -> Approval:
    """pending → approved | denied, if it is still pending and unexpired (and, in chat, the nonce still fresh).

    ``actor_id`` is None where no person decided: a rule that now allows the call approved it.
    """
    now = utcnow()
    conditions = [Approval.id == approval.id, Approval.status == ApprovalStatus.PENDING, Approval.expires_at > now]
    if nonce is not None:
        # The confirmation a client sends back must be for the prompt the server issued, once.
        conditions.append(Approval.nonce == nonce)
    status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
    decided = {"status": status, "decided_at": now, "decided_by": actor_id, "decided_via": via, "reason": reason}
    moved = await _move(session, conditions, {**decided, "nonce": None})
    if moved is None:
        approval = await reload(session, approval.id)
        if approval.status is ApprovalStatus.PENDING and approval.expires_at <= now:
            raise ApprovalError("expired", f"Approval {approval.id} expired at {approval.expires_at.isoformat()}")
        if nonce is not None and approval.status is ApprovalStatus.PENDING:
            raise ApprovalError("conflict", "This confirmation was already used or was not issued for this request")
        raise ApprovalError("conflict", f"Approval {approval.id} is already {approval.status.value}")
    approval = moved
    await announce(session, approval.id)
    event = Event.APPROVED if approve else Event.DENIED
    append_in(session, _record(approval, event, status.value, actor=actor_id, error=reason if not approve else None))
    return approval


async def _refused_move(session: AsyncSession, approval_id: str, now: datetime) -> ApprovalError:
    """Why a move of a pending approval matched nothing: it expired, or it is no longer pending."""
    approval = await reload(session, approval_id)
    if approval.status is ApprovalStatus.PENDING and approval.expires_at <= now:
        return ApprovalError("expired", f"Approval {approval.id} expired at {approval.expires_at.isoformat()}")
    if approval.status is ApprovalStatus.PENDING:
        return ApprovalError("conflict", f"Approval {approval.id} changed while you decided; look at it again")
    return ApprovalError("conflict", f"Approval {approval.id} is already {approval.status.value}")


async def edit(
    session: AsyncSession,
    box: SecretBox,
    approval: Approval,
    *,
    arguments: dict[str, Any],
    digest: str,
    summary: str,
    changed: tuple[str, ...],
    actor_id: str,
    via: str,
) -> Approval:
    """pending → approved with changes: the person's arguments, digest and summary replace the assistant's, which
    are kept sealed beside them (with their digest, which still finds the approval when the assistant retries).

    The UPDATE names the digest the person saw, so an approval that changed meanwhile is not overwritten.
    """
    now = utcnow()
    original = arguments_of(box, approval)
    values = {
        "status": ApprovalStatus.APPROVED,
        "decided_at": now,
        "decided_by": actor_id,
        "decided_via": via,
        "reason": None,
        "nonce": None,
        "sealed_arguments": box.seal_json(arguments, context=arguments_context(approval.id)),
        "args_digest": digest,
        "sealed_summary": box.seal_json(summary, context=approval_summary_context(approval.id)),
        "sealed_original_arguments": box.seal_json(original, context=approval_original_arguments_context(approval.id)),
        "original_digest": approval.args_digest,
        "edited_by": actor_id,
    }
    pending = [
        Approval.id == approval.id,
        Approval.status == ApprovalStatus.PENDING,
        Approval.expires_at > now,
        Approval.args_digest == approval.args_digest,
        Approval.original_digest.is_(None),
    ]
    moved = await _move(session, pending, values)
    if moved is None:
        raise await _refused_move(session, approval.id, now)
    await announce(session, moved.id)
    both = {"original": original, "edited": arguments}
    append_in(
        session,
        _record(
            moved,
            Event.EDITED,
            ApprovalStatus.APPROVED.value,
            actor=actor_id,
            # Digests and field names only: the values stay sealed, outside the hash.
            reasons=(f"original arguments {approval.args_digest}", f"changed: {', '.join(changed)}"),
            sealed_arguments=box.seal_json(both, context=audit_arguments_context(digest)),
        ),
        _record(moved, Event.APPROVED, ApprovalStatus.APPROVED.value, actor=actor_id),
    )
    return moved


async def vote(
    session: AsyncSession,
    approval: Approval,
    *,
    actor_id: str,
    actor_email: str,
    actor_is_admin: bool,
    approve: bool,
    via: str,
    reason: str | None = None,
) -> Approval:
    """One approver's vote on a pending approval that names its approvers; it decides the approval when it is a
    deny, or the last approval needed.

    The approval's row is taken first (a row lock on PostgreSQL, the write lock on SQLite), so voters deciding
    at once count each other's votes, and whether the voter may vote is read from the row as it is then (an
    escalation may just have added the admins). One vote per person: the table's key refuses a second.
    """
    now = utcnow()
    held = await session.execute(
        update(Approval)
        .where(Approval.id == approval.id, Approval.status == ApprovalStatus.PENDING, Approval.expires_at > now)
        .values(status=Approval.status)
        .execution_options(synchronize_session=False)
    )
    if not rows_matched(held):
        raise await _refused_move(session, approval.id, now)
    approval = await reload(session, approval.id)
    approvers = dict(approval.approvers or {})
    if not group.in_group(approvers, asker_id=approval.user_id, actor_id=actor_id, actor_is_admin=actor_is_admin):
        raise ApprovalError("forbidden", "Only the approvers an admin rule names can decide this approval")
    if approve and group.self_approval_refused(
        approvers, no_self_approval=approval.no_self_approval, asker_id=approval.user_id, actor_id=actor_id
    ):
        raise ApprovalError("forbidden", "You asked for this call, and an admin rule says someone else must approve it")
    if await session.get(ApprovalVote, (approval.id, actor_id)) is not None:
        raise ApprovalError("conflict", "You have already decided this approval; each approver decides once")
    session.add(ApprovalVote(approval_id=approval.id, user_id=actor_id, approve=approve, reason=reason, via=via))
    await session.flush()
    rows = (
        await session.execute(
            select(ApprovalVote.user_id, ApprovalVote.approve, ApprovalVote.at)
            .where(ApprovalVote.approval_id == approval.id)
            .order_by(ApprovalVote.at, ApprovalVote.user_id)
        )
    ).all()
    emails = {**approvers.get("names", {}), actor_id: actor_email}
    approvers["votes"] = [
        {"user_id": user_id, "email": emails.get(user_id, ""), "approve": approved, "at": at.isoformat()}
        for user_id, approved, at in rows
    ]
    await session.execute(
        update(Approval)
        .where(Approval.id == approval.id)
        .values(approvers={**approvers, "names": emails})
        .execution_options(synchronize_session=False)
    )
    standing = group.tally(
        approvers,
        [(user_id, approved) for user_id, approved, _ in rows],
        asker_id=approval.user_id,
        no_self_approval=approval.no_self_approval,
    )
    approval = await reload(session, approval.id)
    append_in(
        session,
        _record(
            approval,
            Event.VOTED,
            "approve" if approve else "deny",
            actor=actor_id,
            reasons=(standing.words,),
            error=reason if not approve else None,
        ),
    )
    if standing.denied or standing.approved:
        return await decide(session, approval, approve=standing.approved, actor_id=actor_id, via=via, reason=reason)
    await announce(session, approval.id)
    return approval


async def admins_of(session: AsyncSession, workspace_id: str) -> list[str]:
    """The workspace's admins and owners now: whom an approval that admins may approve is announced to."""
    rows = await session.scalars(
        select(Membership.user_id).where(
            Membership.workspace_id == workspace_id, Membership.role.in_([Role.OWNER, Role.ADMIN])
        )
    )
    return sorted(rows)


async def escalate_due(session: AsyncSession) -> list[Approval]:
    """Escalate every pending approval whose escalation time has passed: add the workspace's admins to its
    approvers, where its rule says so (``group.escalation``); the caller tells the approvers.

    Each is one UPDATE conditional on ``escalated_at IS NULL``, so when several replicas sweep at once each
    approval is escalated (audited, announced) exactly once. Returns those this call escalated.
    """
    escalated = []
    for approval_id in await due_for_escalation(session):
        moved = await escalate(session, approval_id)
        if moved is not None:
            escalated.append(moved)
    return escalated


async def due_for_escalation(session: AsyncSession) -> list[str]:
    now = utcnow()
    due = await session.scalars(
        select(Approval.id).where(
            Approval.status == ApprovalStatus.PENDING,
            Approval.escalate_at <= now,
            Approval.escalated_at.is_(None),
            Approval.expires_at > now,
        )
    )
    return list(due)


async def escalate(session: AsyncSession, approval_id: str) -> Approval | None:
    """Escalate one approval if it is still due; None if it was not (decided, escalated elsewhere).

    The row is taken first, as a vote takes it, and read only then: a vote that landed since the approval was
    found due stays in what the escalation writes back."""
    now = utcnow()
    held = await session.execute(
        update(Approval)
        .where(Approval.id == approval_id, Approval.status == ApprovalStatus.PENDING)
        .values(status=Approval.status)
        .execution_options(synchronize_session=False)
    )
    if not rows_matched(held):
        return None
    approval = await reload(session, approval_id)
    approvers = approval.approvers or {"people": [approval.user_id], "count": 1, "votes": []}
    admins = await admins_of(session, approval.workspace_id)
    moved = await _move(
        session,
        [
            Approval.id == approval.id,
            Approval.status == ApprovalStatus.PENDING,
            Approval.escalated_at.is_(None),
            Approval.escalate_at <= now,
        ],
        {"escalated_at": now, "approvers": group.escalated(approvers, admins)},
    )
    if moved is None:
        return None
    await announce(session, moved.id)
    to_admins, by = group.escalation(approvers)
    done = (*(["added: admins"] if to_admins else []), *(f"told by: {channel}" for channel in by))
    append_in(session, _record(moved, Event.ESCALATED, Outcome.PENDING, actor=None, reasons=done))
    return moved


async def cancel(session: AsyncSession, approval: Approval, *, actor_id: str) -> Approval:
    moved = await _move(
        session,
        [Approval.id == approval.id, Approval.status == ApprovalStatus.PENDING],
        {"status": ApprovalStatus.CANCELLED, "decided_at": utcnow(), "decided_by": actor_id, "decided_via": "api"},
    )
    if moved is None:
        approval = await reload(session, approval.id)
        raise ApprovalError("conflict", f"Approval {approval.id} is already {approval.status.value}")
    approval = moved
    await announce(session, approval.id)
    append_in(session, _record(approval, Event.CANCELLED, "cancelled", actor=actor_id))
    return approval


async def one_request_of_key_at_a_time(session: AsyncSession, api_key_id: str | None) -> None:
    """Hold, until the transaction ends, the lock under which a key's new approvals are counted.

    On PostgreSQL an advisory lock per key; SQLite takes its one write lock with the request's INSERT,
    before the count, so the count there includes every approval committed before.
    """
    if dialect_name(session) == "postgresql":
        await session.execute(
            text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"pending:{api_key_id}"}
        )


async def pending_of_key(session: AsyncSession, workspace_id: str, api_key_id: str | None) -> int:
    """How many unexpired approvals a key has waiting for a person (found through ix_approvals_status)."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Approval)
            .where(
                Approval.workspace_id == workspace_id,
                Approval.status == ApprovalStatus.PENDING,
                Approval.api_key_id.is_not_distinct_from(api_key_id),
                Approval.expires_at > utcnow(),
            )
        )
        or 0
    )


async def issue_nonce(session: AsyncSession, approval: Approval) -> str:
    """A fresh one-time token for an in-chat confirmation prompt; a later prompt replaces it."""
    nonce = secrets.token_urlsafe(24)
    await session.execute(
        update(Approval)
        .where(Approval.id == approval.id, Approval.status == ApprovalStatus.PENDING)
        .values(nonce=nonce, channel="elicitation")
    )
    return nonce


async def remember(session: AsyncSession, approval: Approval, rule_id: str) -> None:
    await session.execute(update(Approval).where(Approval.id == approval.id).values(remember_rule_id=rule_id))


_CLAIM = (
    update(Approval)
    .where(
        Approval.id == bindparam("approval_id"), Approval.status == ApprovalStatus.APPROVED, Approval.expires_at > _NOW
    )
    .values(status=ApprovalStatus.EXECUTING, started_at=_NOW, lease_until=bindparam("lease_ends"))
    # The caller has the row it claimed and needs nothing of it changed in memory; the run's finish reads it back.
    .execution_options(synchronize_session=False)
)


async def claim(session: AsyncSession, approval_id: str, *, lease: timedelta) -> bool:
    """approved → executing, held for ``lease`` unless renewed. True for exactly one caller, and only before expiry."""
    now = utcnow()
    moved = await session.execute(_CLAIM, {"approval_id": approval_id, "now": now, "lease_ends": now + lease})
    return bool(rows_matched(moved))


async def renew(session: AsyncSession, approval_id: str, *, lease: timedelta) -> None:
    await session.execute(
        update(Approval)
        .where(Approval.id == approval_id, Approval.status == ApprovalStatus.EXECUTING)
        .values(lease_until=utcnow() + lease)
    )


async def finish(
    session: AsyncSession,
    box: SecretBox,
    approval: Approval,
    *,
    ok: bool,
    result: dict[str, Any] | None,
    error: str | None,
    duration_ms: float,
) -> Approval:
    """executing → succeeded | failed, keeping the result sealed for repeats of the call; the approval after.

    A run that outlived its lease and was marked outcome_unknown meanwhile is
    still recorded: its outcome is known after all.
    """
    status = ApprovalStatus.SUCCEEDED if ok else ApprovalStatus.FAILED
    sealed = box.seal_json(result, context=approval_result_context(approval.id)) if result is not None else None
    finished = await _move(
        session,
        [Approval.id == approval.id, Approval.status.in_([ApprovalStatus.EXECUTING, ApprovalStatus.OUTCOME_UNKNOWN])],
        {"status": status, "finished_at": utcnow(), "sealed_result": sealed, "error": error, "lease_until": None},
    )
    await announce(session, approval.id)
    append_in(
        session,
        _record(approval, Event.EXECUTED, status.value, actor=None, error=error, duration_ms=duration_ms),
    )
    # None if a person settled the call meanwhile (its lease had lapsed): then it is as they left it.
    return finished if finished is not None else await reload(session, approval.id)


def summary_of(box: SecretBox, approval: Approval) -> str | None:
    """The summary rendered when the call was asked, as every channel shows it; None for older approvals."""
    if approval.sealed_summary is None:
        return None
    value = box.open_json(approval.sealed_summary, context=approval_summary_context(approval.id))
    return value if isinstance(value, str) else None


def result_of(box: SecretBox, approval: Approval) -> dict[str, Any] | None:
    if approval.sealed_result is None:
        return None
    value = box.open_json(approval.sealed_result, context=approval_result_context(approval.id))
    return value if isinstance(value, dict) else None


def is_expired(approval: Approval, now: datetime | None = None) -> bool:
    return approval.status in UNRUN and approval.expires_at <= (now or utcnow())

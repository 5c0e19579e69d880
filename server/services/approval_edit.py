"""Edit before approving: a person changes the arguments of a waiting call and approves the changed call.

The assistant asked for one call; the approver fixes a typo in the subject, drops
a recipient, and approves what they corrected. The changed arguments take the
path a call's arguments take (canonical form, the tool's schema, names resolved
at the provider: the gateway's ``prepare``), get their own digest, and are
summarised by the one renderer (``tools.summary``). The rules decide on them as
on the assistant's call: an edit that a rule would deny, or that would need
other approvers than this person, is refused. The approval is then settled in
one step as approved with changes (``lifecycle.edit``), keeping the assistant's
arguments sealed beside the new ones; the audit has both.

Only a person edits: a console session or a user key, never an agent key nor an
assistant's token, whatever its scopes (SECURITY.md). The assistant's retry with
its own arguments finds the approval by their digest and runs the changed call,
once, and its result says what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select

from approvals import group, lifecycle
from approvals.digest import arguments_digest
from approvals.lifecycle import ApprovalError
from approvals.rules import CallFacts, Decision, Effect
from server.services.approval_changes import changed_fields
from server.services.approval_flow import (
    ApprovalFlow,
    DecisionRefused,
    decide_elsewhere,
    visible_to,
)
from server.services.tool_gateway import call_facts
from store.connections import ConnectionView
from store.models import (
    Approval,
    ApprovalStatus,
    Connection,
    ConnectionStatus,
    KeyKind,
    Membership,
    Workspace,
)
from store.principal import Principal
from tools.errors import InvalidArguments, ToolError
from tools.registry import RegisteredTool
from tools.summary import render

ONLY_A_PERSON = "Only a person changes a call before approving it: use the console or a user key."


@dataclass(frozen=True)
class _Editing:
    """What an edit is checked against, read in one transaction."""

    approval: Approval
    tool: RegisteredTool
    connection: ConnectionView
    asker_role: str
    timezone: str


def may_edit(approval: Approval, actor: Principal) -> bool:
    """Whether this person may change this pending call and approve it alone: they may approve it, and their one
    approval would decide it (an approval that needs several people cannot be edited by one of them)."""
    if actor.is_assistant_token or actor.key_kind is not KeyKind.USER or not visible_to(approval, actor):
        return False
    approvers = approval.approvers
    if approvers is None:
        return True
    if approvers.get("votes"):
        return False
    if not group.in_group(approvers, asker_id=approval.user_id, actor_id=actor.user_id, actor_is_admin=actor.is_admin):
        return False
    if group.self_approval_refused(
        approvers, no_self_approval=approval.no_self_approval, asker_id=approval.user_id, actor_id=actor.user_id
    ):
        return False
    alone = [(actor.user_id, True)]
    return group.tally(approvers, alone, asker_id=approval.user_id, no_self_approval=approval.no_self_approval).approved


async def edit_elsewhere(
    flow: ApprovalFlow,
    tools: dict[str, RegisteredTool],
    actor: Principal,
    approval_id: str,
    arguments: Any,
    *,
    via: str,
) -> Approval:
    """Approve the pending call with these arguments instead of the assistant's.

    Raises DecisionRefused: ``invalid`` (with ``fields``) for arguments the tool does not take, ``forbidden``
    where the person may not approve the changed call alone, or a rule denies it, and as ``decide_elsewhere``
    does otherwise. Arguments equal to the assistant's approve the call as asked.
    """
    if actor.is_assistant_token or actor.key_kind is not KeyKind.USER:
        raise DecisionRefused("forbidden", ONLY_A_PERSON)
    if not isinstance(arguments, dict):
        raise DecisionRefused("invalid", "arguments: an object is required", fields={"arguments": "must be an object"})
    if flow.prepare is None:
        raise RuntimeError("the approval flow has no prepare step: build it with the tool gateway")
    editing = await _editing(flow, tools, actor, approval_id)
    try:
        prepared = await flow.prepare(actor, editing.tool, editing.connection, arguments)
    except InvalidArguments as exc:
        raise DecisionRefused("invalid", str(exc), fields=exc.fields) from None
    except ToolError as exc:
        raise DecisionRefused("invalid", str(exc)) from None
    approval = editing.approval
    digest = arguments_digest(prepared)
    if digest == approval.args_digest:
        return await decide_elsewhere(flow, tools, actor, approval_id, approve=True, via=via)
    decision = (await flow.rulebook.index_for(approval.workspace_id)).decide(_facts(editing, prepared))
    _refuse_what_the_rules_would_not_let_them_approve(decision, editing, actor)
    summary = render(editing.tool, prepared, editing.connection)
    original = lifecycle.arguments_of(flow.box, approval)
    try:
        async with flow.db.transaction() as session:
            return await lifecycle.edit(
                session,
                flow.box,
                approval,
                arguments=prepared,
                digest=digest,
                summary=summary,
                changed=changed_fields(original, prepared),
                actor_id=actor.user_id,
                via=via,
            )
    except ApprovalError as exc:
        raise DecisionRefused(exc.code, str(exc)) from None


async def _editing(
    flow: ApprovalFlow, tools: dict[str, RegisteredTool], actor: Principal, approval_id: str
) -> _Editing:
    async with flow.db.transaction() as session:
        await lifecycle.expire_due(session, workspace_id=actor.workspace_id)
        try:
            approval = await lifecycle.get(session, actor.workspace_id, approval_id)
        except ApprovalError as exc:
            raise DecisionRefused(exc.code, str(exc)) from None
        if not visible_to(approval, actor):
            raise DecisionRefused("not_found", f"No approval {approval_id} in this workspace")
        if approval.status is not ApprovalStatus.PENDING or lifecycle.is_expired(approval):
            state = "expired" if lifecycle.is_expired(approval) else approval.status.value
            raise DecisionRefused(
                "expired" if state == "expired" else "conflict", f"Approval {approval.id} is already {state}"
            )
        if not may_edit(approval, actor):
            raise DecisionRefused("forbidden", _why_not(approval, actor))
        row = await session.get(Connection, approval.connection_id)
        asker = await session.scalar(
            select(Membership.role).where(
                Membership.workspace_id == approval.workspace_id, Membership.user_id == approval.user_id
            )
        )
        timezone = await session.scalar(select(Workspace.timezone).where(Workspace.id == approval.workspace_id))
    tool = tools.get(approval.tool)
    if tool is None or row is None or row.status is ConnectionStatus.DISCONNECTED or asker is None:
        raise DecisionRefused("conflict", f"The tool, connection or person of {approval.id} is gone; deny it.")
    connection = ConnectionView.of(row)
    if connection.account != approval.account:
        # The call runs only as the account it was asked as; an edit cannot move it to another mailbox.
        raise DecisionRefused(
            "conflict", "The connection acts as another account than when this call was asked; deny it instead."
        )
    return _Editing(approval, tool, connection, asker.value, timezone or "UTC")


def _why_not(approval: Approval, actor: Principal) -> str:
    approvers = approval.approvers or {}
    if group.self_approval_refused(
        approvers, no_self_approval=approval.no_self_approval, asker_id=approval.user_id, actor_id=actor.user_id
    ):
        return "You asked for this call, and an admin rule says someone else must approve it."
    if approvers.get("votes") or int(approvers.get("count", 1)) > 1 or approvers.get("owner"):
        return (
            "This call needs the approval of several people, so one of them cannot change it alone. "
            "Approve it as asked, or deny it and say what should change."
        )
    return "Only the approvers an admin rule names can decide this approval."


def _facts(editing: _Editing, arguments: dict[str, Any]) -> CallFacts:
    """The changed call as the rules see a call: the person who asked, through the same connection."""
    return call_facts(
        editing.tool,
        editing.connection,
        arguments,
        workspace_id=editing.approval.workspace_id,
        user_id=editing.approval.user_id,
        role=editing.asker_role,
        timezone=editing.timezone,
    )


def _refuse_what_the_rules_would_not_let_them_approve(decision: Decision, editing: _Editing, actor: Principal) -> None:
    """The changed call must be one the rules let this person approve alone, as if the assistant had asked it:
    not denied, and not one that needs other approvers (a larger amount that needs two, say)."""
    if decision.effect is Effect.DENY:
        raise DecisionRefused(
            "forbidden", f"A rule does not allow the changed call ({decision.reasons[0]}), so it cannot be approved."
        )
    approval = editing.approval
    personal = editing.connection.scope.value == "personal"
    admins_may = decision.admin_may_approve and not personal
    demand = decision.approvers
    if demand is None:
        if actor.user_id == approval.user_id or (actor.is_admin and admins_may):
            return
    else:
        # As the gateway does for a personal connection's call: its owner approves beside whoever is named.
        demand = replace(demand, owner=True) if personal else demand
        named = {actor.user_id: actor.email} if actor.email.lower() in demand.people else {}
        approvers = group.initial(
            demand, asker_id=approval.user_id, people=named, admin_ids=(), admin_may_approve=admins_may
        )
        alone = [(actor.user_id, True)]
        if (
            group.in_group(approvers, asker_id=approval.user_id, actor_id=actor.user_id, actor_is_admin=actor.is_admin)
            and not group.self_approval_refused(
                approvers, no_self_approval=demand.no_self_approval, asker_id=approval.user_id, actor_id=actor.user_id
            )
            and group.tally(
                approvers, alone, asker_id=approval.user_id, no_self_approval=demand.no_self_approval
            ).approved
        ):
            return
    raise DecisionRefused(
        "forbidden",
        "The changed call needs other approvers than you under the workspace's rules; deny this one, say what "
        "should change, and let the assistant ask again.",
    )

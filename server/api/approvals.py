"""Approvals over the API: list, read, approve, deny, edit before approving, decide several at once, and settle an
unknown outcome, for the person who decides.

Decisions are a person's: every operation takes a user key (``decider_of``), so an assistant's agent key can
neither approve its own calls nor read what waits (SECURITY.md). An assistant's OAuth token may, only with the
``approvals`` scope, which a workspace admin grants to that assistant by name. The decisions themselves are the approval
flow's (``server.services.approval_flow``), which the inbox, the approval page and the CLI use too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from starlette.requests import Request

from approvals import lifecycle
from server.api.auth import decider_of
from server.api.errors import ApiError
from server.api.router import ApiRouter
from server.api.services import services_of
from server.services.approval_batch import MAX_BATCH, decide_many
from server.services.approval_edit import ONLY_A_PERSON, edit_elsewhere
from server.services.approval_flow import (
    DecisionRefused,
    approval_view,
    approvals_for,
    cancel_request,
    decide_elsewhere,
    resolve_elsewhere,
    visible_to,
)
from store.models import Approval, ApprovalStatus, KeyKind
from store.principal import Principal

api = ApiRouter("Approvals")

STATUS = {"not_found": 404, "forbidden": 403, "conflict": 409, "expired": 409, "invalid": 422}


class ApprovalFilters(BaseModel):
    status: ApprovalStatus | None = Field(default=None, description="Only approvals in this state; default: all")

    @field_validator("status", mode="before")
    @classmethod
    def _known(cls, value: Any) -> Any:
        if value is not None and value not in {s.value for s in ApprovalStatus}:
            raise ValueError("unknown status")
        return value


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    remember: Literal["no", "1h", "30d"] = Field(
        default="no",
        description="Also create a personal rule that approves such calls for this long (remember_scope says "
        "which calls, in plain words)",
    )


class DenyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500, description="Shown to the assistant and in the audit")


class EditBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, Any] = Field(
        description="The whole set of arguments to run instead of the assistant's, checked as a call's are"
    )


class BatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=MAX_BATCH, description="The approvals to decide")
    approve: bool = Field(description="true approves each, false denies each")
    reason: str | None = Field(default=None, max_length=500, description="Shown to the assistant and in the audit")


class BatchItemOut(BaseModel):
    id: str
    result: Literal["decided", "refused"]
    status: str | None = Field(description="The approval's state after this request, where it could be read")
    code: str | None = Field(description="Why it was refused: not_found, forbidden, conflict, expired")
    message: str


class BatchOut(BaseModel):
    data: list[BatchItemOut]


class ChangeOut(BaseModel):
    field: str
    from_: Any = Field(alias="from", description="What the assistant asked; null where it set nothing")
    to: Any = Field(description="What runs instead; null where the person removed it")


class VoteOut(BaseModel):
    email: str
    approve: bool
    at: datetime


class ApproversOut(BaseModel):
    """Who must approve, where an admin rule names approvers."""

    words: str = Field(description='Where it stands, e.g. "1 of 2 approvals"')
    given: int
    needed: int
    owner_needed: bool = Field(description="A personal connection's owner must still approve as well")
    people: list[str] = Field(description="The people named, by e-mail")
    admins: bool = Field(description="Whether the workspace's admins may approve (after an escalation, say)")
    no_self_approval: bool
    votes: list[VoteOut]
    escalate_at: datetime | None
    escalated_at: datetime | None
    escalate_to: Literal["admins"] | None = Field(description="Added as approvers at escalate_at")
    escalate_by: list[str] = Field(description="The channels the approvers are told by at escalate_at")


class ApprovalOut(BaseModel):
    """One call waiting for (or past) a person's decision, bound to its exact arguments."""

    id: str
    status: ApprovalStatus
    app: str
    app_name: str
    tool: str
    risk: str
    summary: str = Field(description="What will happen, in plain words: every recipient in full")
    sender: str = Field(description="The connection the call acts through")
    remember_scope: str | None = Field(description="What approving with remember would approve later")
    full_arguments: str = Field(description="Every argument as indented ASCII JSON, nothing hidden")
    arguments: dict[str, Any]
    reasons: list[str]
    rule_ids: list[str]
    require_out_of_band: bool
    user_id: str = Field(description="Who asked")
    assistant: str = Field(
        description="The assistant that asked for them, by name: its key's name, or what its OAuth client calls "
        "itself; empty when unknown"
    )
    connection_id: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decided_via: str | None
    reason: str | None
    remember_rule_id: str | None
    result: dict[str, Any] | None = Field(description="The call's result, once it ran")
    error: str | None
    approve_url: str = Field(description="The approval page")
    changed: bool = Field(description="Approved with changes: a person changed the arguments before approving")
    changes: list[ChangeOut] = Field(description="Each argument the person changed")
    original_arguments: dict[str, Any] | None = Field(description="What the assistant asked, where it was changed")
    edited_by: str | None
    approvers: ApproversOut | None = Field(description="Who must approve, where an admin rule names approvers")


class ApprovalList(BaseModel):
    data: list[ApprovalOut]


def _view(request: Request, approval: Approval) -> dict[str, Any]:
    services = services_of(request)
    view: dict[str, Any] = approval_view(services.flow, services.registry.tools, approval)
    return view


def _refused(exc: DecisionRefused) -> ApiError:
    details = {"fields": exc.fields} if exc.fields else None
    return ApiError(STATUS[exc.code], str(exc), code=exc.code if exc.code == "expired" else None, details=details)


@api.get("/approvals", caller=decider_of, query=ApprovalFilters, response=ApprovalList, summary="List approvals")
async def list_approvals(request: Request, actor: Principal, query: ApprovalFilters) -> ApprovalList:
    """Your calls' approvals, and those an admin rule lets admins decide; newest first, at most 200."""
    flow = services_of(request).flow
    rows = await approvals_for(flow, actor, query.status)
    return ApprovalList.model_validate({"data": [_view(request, a) for a in rows]})


@api.get("/approvals/{approval_id}", caller=decider_of, response=ApprovalOut, errors=(404,), summary="Get an approval")
async def get_approval(request: Request, actor: Principal) -> dict[str, Any]:
    approval_id = request.path_params["approval_id"]
    async with services_of(request).db.transaction() as session:
        # A run whose process died shows as outcome_unknown from the first read after its lease lapsed.
        await lifecycle.expire_due(session, workspace_id=actor.workspace_id)
        approval = await session.scalar(
            select(Approval).where(Approval.id == approval_id, Approval.workspace_id == actor.workspace_id)
        )
    if approval is None or not visible_to(approval, actor):
        raise ApiError(404, f"No approval {approval_id} in this workspace")
    return _view(request, approval)


async def _decide(
    request: Request, actor: Principal, *, approve: bool, reason: str | None, remember: str | None
) -> dict[str, Any]:
    services = services_of(request)
    try:
        approval = await decide_elsewhere(
            services.flow,
            services.registry.tools,
            actor,
            request.path_params["approval_id"],
            approve=approve,
            via="api",
            reason=reason,
            remember=remember,
        )
    except DecisionRefused as exc:
        raise _refused(exc) from None
    return _view(request, approval)


@api.post(
    "/approvals/{approval_id}/approve", caller=decider_of, body=ApproveBody, response=ApprovalOut,
    errors=(404, 409), summary="Approve a call",
)  # fmt: skip
async def approve_call(request: Request, actor: Principal, body: ApproveBody) -> dict[str, Any]:
    """Approve the pending call; the assistant's waiting call (or its next try) then runs it, once.

    409 once it is decided, expired (code ``expired``) or withdrawn.
    """
    return await _decide(request, actor, approve=True, reason=None, remember=body.remember)


@api.post(
    "/approvals/{approval_id}/deny", caller=decider_of, body=DenyBody, response=ApprovalOut, errors=(404, 409),
    summary="Deny a call",
)  # fmt: skip
async def deny_call(request: Request, actor: Principal, body: DenyBody) -> dict[str, Any]:
    return await _decide(request, actor, approve=False, reason=body.reason, remember=None)


@api.post(
    "/approvals/{approval_id}/cancel", caller=decider_of, response=ApprovalOut, errors=(404, 409),
    summary="Withdraw your own request",
)  # fmt: skip
async def cancel_approval(request: Request, actor: Principal) -> dict[str, Any]:
    try:
        approval = await cancel_request(services_of(request).flow, actor, request.path_params["approval_id"])
    except DecisionRefused as exc:
        raise ApiError(STATUS[exc.code], str(exc)) from None
    return _view(request, approval)


async def _resolve(request: Request, actor: Principal, *, run_again: bool) -> dict[str, Any]:
    flow = services_of(request).flow
    try:
        approval = await resolve_elsewhere(
            flow, actor, request.path_params["approval_id"], run_again=run_again, via="api"
        )
    except DecisionRefused as exc:
        raise ApiError(STATUS[exc.code], str(exc)) from None
    return _view(request, approval)


@api.post(
    "/approvals/{approval_id}/run-again", caller=decider_of, response=ApprovalOut, errors=(404, 409),
    summary="Settle an unknown outcome: it did not happen",
)  # fmt: skip
async def settle_as_not_happened(request: Request, actor: Principal) -> dict[str, Any]:
    """outcome_unknown → approved: it did not happen, so it may run once more on the assistant's next try."""
    return await _resolve(request, actor, run_again=True)


@api.post(
    "/approvals/{approval_id}/happened", caller=decider_of, response=ApprovalOut, errors=(404, 409),
    summary="Settle an unknown outcome: it happened",
)  # fmt: skip
async def settle_as_happened(request: Request, actor: Principal) -> dict[str, Any]:
    """outcome_unknown → succeeded: it did happen, so it is never run again."""
    return await _resolve(request, actor, run_again=False)


@api.post(
    "/approvals/{approval_id}/edit", caller=decider_of, body=EditBody, response=ApprovalOut,
    errors=(404, 409, 422), summary="Change the arguments, then approve",
)  # fmt: skip
async def edit_call(request: Request, actor: Principal, body: EditBody) -> dict[str, Any]:
    """Approve the pending call with changed arguments ("approved with changes").

    The arguments are checked as a call's are (422 naming each bad field), and the rules decide on them: 403
    where a rule denies the changed call or it needs other approvers. The assistant's retry with its own
    arguments runs the changed call once, and its result says what changed. Only a person edits: a user key,
    never an agent key nor an assistant's token (403).
    """
    if actor.is_assistant_token or actor.key_kind is not KeyKind.USER:
        raise ApiError(403, ONLY_A_PERSON)
    services = services_of(request)
    try:
        approval = await edit_elsewhere(
            services.flow, services.registry.tools, actor, request.path_params["approval_id"], body.arguments, via="api"
        )
    except DecisionRefused as exc:
        raise _refused(exc) from None
    return _view(request, approval)


@api.post(
    "/approvals/batch", caller=decider_of, body=BatchBody, response=BatchOut, summary="Approve or deny several calls",
)  # fmt: skip
async def decide_batch(request: Request, actor: Principal, body: BatchBody) -> BatchOut:
    """Approve or deny each listed approval with one reason, each as its own decision (each call still runs
    once); the answer says, per id, whether it was decided or why it was refused."""
    services = services_of(request)
    answers = await decide_many(
        services.flow, services.registry.tools, actor, body.ids, approve=body.approve, reason=body.reason, via="api"
    )
    return BatchOut.model_validate({"data": [answer.as_dict() for answer in answers]})

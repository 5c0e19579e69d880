"""Approvals over the API: list, read, approve and deny, and settle an unknown outcome, for the person who decides."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from approvals import lifecycle
from server.api.auth import person_of
from server.api.errors import ApiError, body_of
from server.approval_flow import (
    DecisionRefused,
    approval_view,
    approvals_for,
    cancel_request,
    decide_elsewhere,
    resolve_elsewhere,
    visible_to,
)
from store.models import Approval, ApprovalStatus

STATUS = {"not_found": 404, "forbidden": 403, "conflict": 409, "expired": 409, "invalid": 422}


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    remember: Literal["no", "1h", "30d"] = "no"


class DenyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=500)


async def list_approvals(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = request.app.state.companion
    status = request.query_params.get("status")
    if status is not None and status not in {s.value for s in ApprovalStatus}:
        raise ApiError(422, "Invalid request: status: unknown status", details={"fields": {"status": "unknown status"}})
    rows = await approvals_for(companion.gateway.flow, actor, ApprovalStatus(status) if status else None)
    views = [approval_view(companion.gateway.flow, companion.registry.tools, a) for a in rows]
    return JSONResponse({"data": views})


async def _visible(request: Request) -> Approval:
    actor = person_of(request)
    companion = request.app.state.companion
    async with companion.db.transaction() as session:
        # A run whose process died shows as outcome_unknown from the first read after its lease lapsed.
        await lifecycle.expire_due(session, workspace_id=actor.workspace_id)
        approval = await session.scalar(
            select(Approval).where(
                Approval.id == request.path_params["approval_id"], Approval.workspace_id == actor.workspace_id
            )
        )
    if approval is None or not visible_to(approval, actor):
        raise ApiError(404, f"No approval {request.path_params['approval_id']} in this workspace")
    return approval


async def get_approval(request: Request) -> JSONResponse:
    approval = await _visible(request)
    companion = request.app.state.companion
    return JSONResponse(approval_view(companion.gateway.flow, companion.registry.tools, approval))


async def _decide(request: Request, *, approve: bool) -> JSONResponse:
    actor = person_of(request)
    companion = request.app.state.companion
    body = await body_of(request, ApproveBody if approve else DenyBody)
    try:
        approval = await decide_elsewhere(
            companion.gateway.flow,
            companion.registry.tools,
            actor,
            request.path_params["approval_id"],
            approve=approve,
            via="api",
            reason=getattr(body, "reason", None),
            remember=getattr(body, "remember", None),
        )
    except DecisionRefused as exc:
        raise ApiError(STATUS[exc.code], str(exc), code=exc.code if exc.code == "expired" else None) from None
    return JSONResponse(approval_view(companion.gateway.flow, companion.registry.tools, approval))


async def cancel(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = request.app.state.companion
    try:
        approval = await cancel_request(companion.gateway.flow, actor, request.path_params["approval_id"])
    except DecisionRefused as exc:
        raise ApiError(STATUS[exc.code], str(exc)) from None
    return JSONResponse(approval_view(companion.gateway.flow, companion.registry.tools, approval))


async def _resolve(request: Request, *, run_again: bool) -> JSONResponse:
    actor = person_of(request)
    companion = request.app.state.companion
    try:
        approval = await resolve_elsewhere(
            companion.gateway.flow, actor, request.path_params["approval_id"], run_again=run_again, via="api"
        )
    except DecisionRefused as exc:
        raise ApiError(STATUS[exc.code], str(exc)) from None
    return JSONResponse(approval_view(companion.gateway.flow, companion.registry.tools, approval))


async def run_again(request: Request) -> JSONResponse:
    """outcome_unknown → approved: it did not happen, so it may run once more on the assistant's next try."""
    return await _resolve(request, run_again=True)


async def happened(request: Request) -> JSONResponse:
    """outcome_unknown → succeeded: it did happen, so it is never run again."""
    return await _resolve(request, run_again=False)


async def approve(request: Request) -> JSONResponse:
    return await _decide(request, approve=True)


async def deny(request: Request) -> JSONResponse:
    return await _decide(request, approve=False)


routes = [
    Route("/approvals", list_approvals, methods=["GET"]),
    Route("/approvals/{approval_id}", get_approval, methods=["GET"]),
    Route("/approvals/{approval_id}/approve", approve, methods=["POST"]),
    Route("/approvals/{approval_id}/deny", deny, methods=["POST"]),
    Route("/approvals/{approval_id}/cancel", cancel, methods=["POST"]),
    Route("/approvals/{approval_id}/run-again", run_again, methods=["POST"]),
    Route("/approvals/{approval_id}/happened", happened, methods=["POST"]),
]

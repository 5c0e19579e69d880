"""The approvals inbox: what waits for the viewer, what they decided, and one approval in full.

New approvals reach an open inbox without a reload: ``/inbox/events`` is a
server-sent event stream that says when the viewer's pending set changes, and
the page then fetches the list again (``inbox.js``; it polls where
EventSource is missing or fails).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from approvals import lifecycle
from server.browser_session import Viewer, flash, viewer_of
from server.services.approval_flow import (
    LISTED,
    DecisionRefused,
    approvals_for,
    decide_elsewhere,
    resolve_elsewhere,
    visible_clause,
    visible_to,
)
from server.services.waiting import WAITING, waiting_clause
from server.web.approval_cards import card_views
from server.web.pages import Refused, form_of, is_htmx, page, redirect, render, safe_next, services_of
from store.db import Database
from store.models import Approval, ApprovalStatus
from store.principal import Principal

HISTORY_PAGE = 25
POLL_SECONDS = 1.0
# An event stream ends after a while; the browser's EventSource reconnects by itself.
STREAM_SECONDS = 300.0
RECHECK_TICKS = 10


async def _pending_ids(db: Database, actor: Principal) -> tuple[str, ...]:
    """The viewer's live pending approvals, read-only, so an open stream costs one small query a tick."""
    async with db.session() as session:
        rows = await session.scalars(
            select(Approval.id).where(waiting_clause(actor)).order_by(Approval.created_at.desc()).limit(LISTED)
        )
        return tuple(rows)


async def _cards(request: Request, viewer: Viewer, approvals: list[Approval], *, listed: bool) -> list[dict[str, Any]]:
    return await card_views(services_of(request), viewer.principal, approvals, listed=listed)


async def _pending(request: Request, viewer: Viewer) -> list[dict[str, Any]]:
    services = services_of(request)
    approvals = await approvals_for(services.flow, viewer.principal, WAITING)
    return await _cards(request, viewer, approvals, listed=True)


@page
async def inbox(request: Request, viewer: Viewer) -> Response:
    return render(request, "inbox.html", viewer, tab="pending", cards=await _pending(request, viewer), listed=LISTED)


@page
async def pending_list(request: Request, viewer: Viewer) -> Response:
    """The pending list alone, which the inbox swaps in when the stream says it changed."""
    return render(request, "_inbox_pending.html", viewer, cards=await _pending(request, viewer), listed=LISTED)


@page
async def events(request: Request, viewer: Viewer) -> Response:
    services = services_of(request)
    actor = viewer.principal
    try:
        asked = float(request.query_params.get("for") or STREAM_SECONDS)
    except ValueError:
        asked = STREAM_SECONDS
    limit = min(asked, STREAM_SECONDS) if asked > 0 else STREAM_SECONDS

    async def stream() -> AsyncIterator[str]:
        deadline = time.monotonic() + limit
        last: tuple[str, ...] | None = None
        yield "retry: 3000\n\n"
        for tick in itertools.count(1):
            if time.monotonic() >= deadline:
                return
            # Signing out, a password change or leaving the workspace ends an open stream too.
            if tick % RECHECK_TICKS == 0 and await viewer_of(request) is None:
                return
            current = await _pending_ids(services.db, actor)
            if current != last:
                yield f"event: approvals\ndata: {len(current)}\n\n"
                last = current
            await asyncio.sleep(POLL_SECONDS)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


@page
async def history(request: Request, viewer: Viewer) -> Response:
    services = services_of(request)
    try:
        number = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        number = 1
    decided = visible_clause(viewer.principal) & Approval.status.not_in(WAITING)
    async with services.db.transaction() as session:
        await lifecycle.expire_due(session, workspace_id=viewer.principal.workspace_id)
        total = int(await session.scalar(select(func.count()).select_from(Approval).where(decided)) or 0)
        approvals = list(
            await session.scalars(
                select(Approval)
                .where(decided)
                .order_by(func.coalesce(Approval.decided_at, Approval.expires_at).desc(), Approval.id)
                .offset((number - 1) * HISTORY_PAGE)
                .limit(HISTORY_PAGE)
            )
        )
    return render(
        request,
        "inbox.html",
        viewer,
        tab="history",
        cards=await _cards(request, viewer, approvals, listed=True),
        page=number,
        has_more=number * HISTORY_PAGE < total,
        total=total,
    )


async def _approval(request: Request, viewer: Viewer) -> Approval:
    services = services_of(request)
    async with services.db.transaction() as session:
        await lifecycle.expire_due(session, workspace_id=viewer.principal.workspace_id)
        approval = await session.get(Approval, request.path_params["approval_id"])
    if (
        approval is None
        or approval.workspace_id != viewer.principal.workspace_id
        or not visible_to(approval, viewer.principal)
    ):
        raise Refused(404, "There is no such approval that you can see.", "Not found")
    return approval


@page
async def approval_page(request: Request, viewer: Viewer) -> Response:
    approval = await _approval(request, viewer)
    (card,) = await _cards(request, viewer, [approval], listed=False)
    return render(request, "approval.html", viewer, card=card)


DONE = {
    "approve": "Approved. The assistant's call runs when it asks again.",
    "deny": "Denied.",
    "run-again": "Approved to run once more, when the assistant asks again.",
    "happened": "Recorded as done. It will not run again.",
}
VOTED = "Your approval is counted. The call runs once the other approvals it needs are in."


@page
async def decide(request: Request, viewer: Viewer) -> Response:
    action = request.path_params["action"]
    if action not in DONE:
        raise Refused(404, "There is no such action.", "Not found")
    form = await form_of(request)
    services = services_of(request)
    remember = str(form.get("remember") or "no")
    try:
        if action in ("run-again", "happened"):
            approval = await resolve_elsewhere(
                services.flow,
                viewer.principal,
                request.path_params["approval_id"],
                run_again=action == "run-again",
                via="web",
            )
        else:
            approval = await decide_elsewhere(
                services.flow,
                services.registry.tools,
                viewer.principal,
                request.path_params["approval_id"],
                approve=action == "approve",
                via="web",
                reason=str(form.get("reason") or "").strip()[:500] or None,
                remember=remember,
            )
    except DecisionRefused as exc:
        status = {"not_found": 404, "forbidden": 403}.get(exc.code, 409)
        raise Refused(status, str(exc), "Not done") from None
    async with services.db.session() as session:
        approval = await lifecycle.reload(session, approval.id)
    # Said only when a rule was saved: "remember" on someone else's call, say, saves none.
    remembered = action == "approve" and approval.remember_rule_id is not None
    message = DONE[action] + (" Calls like this are approved for the next hour." if remembered else "")
    if action == "approve" and approval.status is ApprovalStatus.PENDING:
        message = VOTED  # one vote among several: the call still waits
    if is_htmx(request):
        # The card replaces the one decided: in full on the approval's own page, as listed anywhere else.
        listed = form.get("next") != f"/approvals/{approval.id}"
        (card,) = await _cards(request, viewer, [approval], listed=listed)
        return render(request, "_approval_card.html", viewer, card=card, done=message)
    flash(request, message)
    return redirect(safe_next(str(form.get("next") or ""), f"/approvals/{approval.id}"))


routes = [
    Route("/inbox", inbox, methods=["GET"]),
    Route("/inbox/pending", pending_list, methods=["GET"]),
    Route("/inbox/events", events, methods=["GET"]),
    Route("/inbox/history", history, methods=["GET"]),
    Route("/approvals/{approval_id}", approval_page, methods=["GET"]),
    Route("/approvals/{approval_id}/{action:str}", decide, methods=["POST"]),
]

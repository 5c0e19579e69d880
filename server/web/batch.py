"""Deciding several waiting approvals at once, in the console: select them, then approve or deny with one reason.

Identical pending calls are one row with their count, and selecting the row selects them all. Each approval is
still decided on its own (``server.services.approval_batch``), and the page says what became of each.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.browser_session import Viewer
from server.services.approval_batch import MAX_BATCH, BatchAnswer, decide_many, identical
from server.services.approval_flow import approval_view, approvals_for
from server.web.pages import form_of, page, render, services_of
from store.models import ApprovalStatus


async def _rows(request: Request, viewer: Viewer) -> list[dict[str, Any]]:
    """One row per identical call waiting for the viewer: the newest's view, with every id and the count."""
    services = services_of(request)
    waiting = await approvals_for(services.flow, viewer.principal, ApprovalStatus.PENDING)
    rows = []
    for group in identical(waiting):
        view = approval_view(services.flow, services.registry.tools, group.first)
        if view["status"] != "pending":
            continue
        lines = (view["summary"] or "").split("\n")
        rows.append(
            {
                "key": group.first.id,
                "ids": ",".join(group.ids),
                "count": len(group.ids),
                "headline": lines[0],
                "details": "\n".join(lines[1:]),
                "view": view,
                "mine": group.first.user_id == viewer.principal.user_id,
                "assistants": group.assistants,
            }
        )
    return rows


def _render(
    request: Request, viewer: Viewer, rows: list[dict[str, Any]], answers: list[BatchAnswer], status: int = 200
) -> Response:
    decided = sum(1 for answer in answers if answer.decided)
    return render(
        request,
        "batch.html",
        viewer,
        status=status,
        rows=rows,
        answers=answers,
        decided=decided,
        refused=len(answers) - decided,
        limit=MAX_BATCH,
    )


@page
async def batch_page(request: Request, viewer: Viewer) -> Response:
    return _render(request, viewer, await _rows(request, viewer), [])


@page
async def decide_batch(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    services = services_of(request)
    ids = [part for value in form.getlist("ids") for part in str(value).split(",") if part.strip()]
    action = str(form.get("action") or "")
    if not ids or action not in ("approve", "deny"):
        answers = [BatchAnswer("", False, None, "invalid", "Select at least one request, then Approve or Deny.")]
        return _render(request, viewer, await _rows(request, viewer), answers, status=422)
    answers = await decide_many(
        services.flow,
        services.registry.tools,
        viewer.principal,
        ids,
        approve=action == "approve",
        reason=str(form.get("reason") or "").strip()[:500] or None,
        via="web",
    )
    return _render(request, viewer, await _rows(request, viewer), answers)


routes = [
    Route("/approvals/batch", batch_page, methods=["GET"]),
    Route("/approvals/batch", decide_batch, methods=["POST"]),
]

"""The page an e-mailed approval link opens, ``/approvals/{id}/by-link?token=…``, and its two buttons.

Opening it changes nothing (mail scanners and prefetchers open links too): it shows the approval as the inbox
does, with the summary in full. Approve and Deny post the page's own form, with its CSRF token, and only that
post spends the link (``server.services.link_decisions``). Where the call is riskier than the workspace lets a
link alone decide, the person signs in first and comes back here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.browser_session import Viewer, flash, viewer_of
from server.services.approval_flow import DecisionRefused, approval_view
from server.services.asked_by import on_behalf_of
from server.services.link_decisions import LinkRefused, OpenedLink, decide_by_link, open_link
from server.web.pages import Refused, form_of, redirect, refusal, render, services_of
from server.web.people_lookup import people_by_id

# What each refusal answers: a link that is not one, or is spent, says little more than that.
STATUS = {
    "not_found": 404,
    "expired": 410,
    "used": 409,
    "wrong_person": 403,
    "not_a_member": 403,
    "forbidden": 403,
    "conflict": 409,
    "invalid": 400,
}

DONE = {
    True: "Approved. The assistant's call runs when it asks again.",
    False: "Denied. The assistant is told, with your reason if you gave one.",
}


def _page_path(approval_id: str, secret: str) -> str:
    return f"/approvals/{quote(approval_id)}/by-link?token={quote(secret)}"


async def _card(request: Request, opened: OpenedLink) -> dict[str, Any]:
    services = services_of(request)
    approval = opened.approval
    card = approval_view(services.flow, services.registry.tools, approval)
    async with services.db.session() as session:
        people = await people_by_id(session, [approval.user_id])
    asker = people.get(approval.user_id)
    requester = "you" if approval.user_id == opened.approver.id else asker.label if asker else "someone"
    card["asked_by"] = on_behalf_of(approval.assistant, requester)
    return card


def _refused(request: Request, viewer: Viewer | None, code: str, message: str) -> Response:
    title = "Link expired" if code == "expired" else "Not done"
    return refusal(request, viewer, Refused(STATUS.get(code, 409), message, title))


async def link_page(request: Request) -> Response:
    approval_id = request.path_params["approval_id"]
    secret = request.query_params.get("token", "")
    viewer = await viewer_of(request)
    try:
        opened = await open_link(services_of(request).db, approval_id, secret)
    except LinkRefused as exc:
        return _refused(request, viewer, exc.code, str(exc))
    signed_in_as_approver = (
        viewer is not None
        and viewer.principal.user_id == opened.approver.id
        and viewer.principal.workspace_id == opened.approval.workspace_id
    )
    return render(
        request,
        "approval_link.html",
        # The page stands alone, with no sidebar: it is for the link's approver, whoever this browser is signed in as.
        None,
        card=await _card(request, opened),
        opened=opened,
        signed_in=viewer,
        may_decide=opened.link_suffices or signed_in_as_approver,
        token=secret,
        sign_in_url="/login?next=" + quote(_page_path(approval_id, secret), safe=""),
    )


async def decide_with_link(request: Request) -> Response:
    approval_id = request.path_params["approval_id"]
    viewer = await viewer_of(request)
    try:
        form = await form_of(request)
    except Refused as refused:
        return refusal(request, viewer, refused)
    secret = str(form.get("token") or "")
    decision = form.get("decision")
    if decision not in ("approve", "deny"):
        return _refused(request, viewer, "invalid", "Choose Approve or Deny.")
    reason = str(form.get("reason") or "").strip()[:500] if decision == "deny" else ""
    services = services_of(request)
    try:
        await decide_by_link(
            services.flow,
            services.registry.tools,
            approval_id,
            secret,
            approve=decision == "approve",
            reason=reason or None,
            signed_in=viewer.principal if viewer else None,
        )
    except LinkRefused as exc:
        if exc.code == "sign_in":
            return redirect("/login?next=" + quote(_page_path(approval_id, secret), safe=""))
        return _refused(request, viewer, exc.code, str(exc))
    except DecisionRefused as exc:
        return _refused(request, viewer, exc.code, str(exc))
    flash(request, DONE[decision == "approve"])
    return redirect(_page_path(approval_id, secret))


routes = [
    Route("/approvals/{approval_id}/by-link", link_page, methods=["GET"]),
    Route("/approvals/{approval_id}/by-link", decide_with_link, methods=["POST"]),
]

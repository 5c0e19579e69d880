"""The page an e-mailed approval link opens, ``/approvals/{id}/by-link?token=…``, and its two buttons.

Opening it changes nothing (mail scanners and prefetchers open links too): it shows the console's card of the
approval (``server.web.approval_cards``), the whole story as the link's approver reads it in the inbox, and only
what they may still do (a vote already in, say, is shown, not offered again). A link whose approver may no longer
see the approval opens nothing. Approve and Deny post the page's own form, with its CSRF token, and only that
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
from server.services.approval_flow import DecisionRefused, visible_to
from server.services.link_decisions import NOT_FOUND, LinkRefused, OpenedLink, decide_by_link, open_link
from server.web.approval_cards import card_views
from server.web.pages import Refused, form_of, redirect, refusal, render, services_of
from store.directory import member_principal

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


async def _card(request: Request, opened: OpenedLink) -> dict[str, Any] | None:
    """The approval's card as its link's approver reads it in the console; None when they may not see it (they left
    the workspace, or the approval is not theirs)."""
    services = services_of(request)
    approval = opened.approval
    async with services.db.session() as session:
        approver = await member_principal(
            session, approval.workspace_id, opened.approver.id, acting_as=f"email_{opened.link.id}"
        )
    if approver is None or not visible_to(approval, approver):
        return None
    (card,) = await card_views(services, approver, [approval], earlier=False)
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
    card = await _card(request, opened)
    if card is None:
        return _refused(request, viewer, "not_found", NOT_FOUND)
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
        card=card,
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

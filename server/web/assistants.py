"""The connected-assistants page: the assistants a person signed in with OAuth, with a Revoke button each, and for
admins every person's assistants and the workspace's policy on each assistant.

The consent page links here. What may be seen and changed, and by whom, is the use case's
(``server.services.assistants.connected``), which the REST API runs too; this module turns forms into its
calls and its answers into the page.
"""

from __future__ import annotations

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.browser_session import Viewer, flash
from server.http_status import status_of
from server.services.assistants.authorization import SCOPE_WORDS
from server.services.assistants.connected import AssistantPolicyOut, ConnectedAssistants, PolicyChange
from server.services.errors import InvalidInput, ServiceError, fields_of
from server.web.pages import Refused, form_of, page, redirect, render, require_admin, services_of

# The admin's three answers on in-chat confirmation, short enough for a phone's select; the page explains them.
PERSON_FACING_CHOICES = (
    ("default", "As for person-facing keys"),
    ("allowed", "Allowed"),
    ("forbidden", "Forbidden"),
)


def _assistants(request: Request) -> ConnectedAssistants:
    return ConnectedAssistants(services_of(request).db)


def _refused(exc: ServiceError) -> Refused:
    message = "; ".join(exc.fields.values()) if isinstance(exc, InvalidInput) else exc.message
    return Refused(status_of(exc), message[:1].upper() + message[1:], "Not done")


def _label(policy: AssistantPolicyOut | None, client_id: str) -> str:
    return (policy.name if policy is not None and policy.name else "") or client_id


@page
async def assistants_page(request: Request, viewer: Viewer) -> Response:
    assistants = _assistants(request)
    mine = await assistants.mine(viewer.principal)
    workspace = await assistants.of_workspace(viewer.principal) if viewer.is_admin else None
    return render(
        request,
        "assistants.html",
        viewer,
        mine=mine,
        workspace=workspace,
        scope_words=SCOPE_WORDS,
        person_facing_choices=PERSON_FACING_CHOICES,
    )


@page
async def revoke(request: Request, viewer: Viewer) -> Response:
    """Revoke one of the viewer's own assistants; another's is not found."""
    await form_of(request)
    assistants = _assistants(request)
    grant_id = request.path_params["grant_id"]
    name = next((a.name or a.client_id for a in await assistants.mine(viewer.principal) if a.id == grant_id), "")
    try:
        await assistants.revoke(viewer.principal, grant_id)
    except ServiceError as exc:
        raise _refused(exc) from None
    flash(request, f"“{name}” can no longer act for you: its tokens are revoked. It must ask you to sign in again.")
    return redirect("/assistants")


@page
async def policy(request: Request, viewer: Viewer) -> Response:
    """Change the workspace's policy on one assistant; admins only.

    A form sends only what it shows (the Block button, or the in-chat and approvals settings, or all of them for
    an assistant no one signed in yet); the rest stays as it is."""
    require_admin(viewer, "the workspace's assistants")
    form = await form_of(request)
    assistants = _assistants(request)
    client_id = str(form.get("client_id") or "").strip()
    policies = (await assistants.of_workspace(viewer.principal)).policies
    current = next((p for p in policies if p.client_id == client_id), None)
    wanted = {
        "client_id": client_id,
        "blocked": current.blocked if current else False,
        "person_facing": current.person_facing if current else "default",
        "may_decide": current.may_decide if current else False,
    }
    part = form.get("part")
    if part in ("block", "all"):
        wanted["blocked"] = form.get("blocked") == "on"
    if part in ("settings", "all"):
        wanted["person_facing"] = str(form.get("person_facing") or "")
        wanted["may_decide"] = form.get("may_decide") == "on"
    try:
        saved = await assistants.set_policy(viewer.principal, PolicyChange.model_validate(wanted))
    except ValidationError as exc:
        raise _refused(InvalidInput(fields_of(exc))) from None
    except ServiceError as exc:
        raise _refused(exc) from None
    flash(request, _saved(saved, current))
    return redirect("/assistants#workspace")


def _saved(saved: AssistantPolicyOut, before: AssistantPolicyOut | None) -> str:
    name = _label(saved, saved.client_id)
    if saved.blocked and not (before and before.blocked):
        return f"“{name}” is blocked: its tokens are refused for everyone in the workspace, and no one can sign it in."
    if before and before.blocked and not saved.blocked:
        return f"“{name}” is no longer blocked: the tokens people gave it work again."
    if saved.may_decide and not (before and before.may_decide):
        return (
            f"Saved. “{name}” may now be allowed to decide approvals, but only by people who sign it in again "
            "and consent to it: the tokens it holds do not have that scope."
        )
    return f"Saved the policy on “{name}”."


routes = [
    Route("/assistants", assistants_page, methods=["GET"]),
    Route("/assistants/policy", policy, methods=["POST"]),
    Route("/assistants/{grant_id}/revoke", revoke, methods=["POST"]),
]

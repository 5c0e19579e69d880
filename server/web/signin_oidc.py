"""Signing in through the workspace's identity provider (OpenID Connect), beside the password.

The person names their workspace (workspaces are never listed), is sent to its provider, and comes back to
``/login/oidc/callback`` with a code. What the return must match (``state``, ``nonce``, the PKCE verifier, the
page to go on to) waits in the browser's signed session cookie: any replica can finish what another began,
only the browser that began can finish it, and only once. The session it ends in is the one a password
starts (``start_session``), kept to that workspace.
"""

from __future__ import annotations

import hmac
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.browser_session import start_session
from server.http_status import status_of
from server.services.errors import ServiceError
from server.services.oidc.sign_in import CALLBACK_PATH
from server.web.pages import Refused, form_of, redirect, render, safe_next, services_of

PENDING = "oidc"
#: How long a person may take at their provider before the sign-in must start again.
PENDING_SECONDS = 600
START_AGAIN = "This sign-in was not started in this browser, took too long, or was finished already. Start again."


def _refused(request: Request, status: int, message: str, target: str = "/", workspace: str = "") -> Response:
    return render(request, "login.html", status=status, sso_error=message, next=target, workspace=workspace)


async def start(request: Request) -> Response:
    try:
        form = await form_of(request)
    except Refused as refused:
        return _refused(request, refused.status, str(refused))
    target = safe_next(str(form.get("next") or ""))
    slug = str(form.get("workspace") or "").strip()
    if not slug:
        return _refused(request, 400, "Enter your workspace's name, as in its address.", target)
    try:
        begun = await services_of(request).company_sign_in.begin(slug)
    except ServiceError as exc:
        return _refused(request, status_of(exc), exc.message, target, slug)
    request.session[PENDING] = {
        "ws": begun.workspace_id,
        "state": begun.state,
        "nonce": begun.nonce,
        "verifier": begun.code_verifier,
        "next": target,
        "at": int(time.time()),
    }
    return redirect(begun.url)


async def callback(request: Request) -> Response:
    pending = request.session.pop(PENDING, None)
    query = request.query_params
    if (
        not isinstance(pending, dict)
        or time.time() - float(pending.get("at", 0)) > PENDING_SECONDS
        or not hmac.compare_digest(str(query.get("state", "")), str(pending.get("state", "")))
    ):
        return _refused(request, 400, START_AGAIN)
    target = safe_next(str(pending.get("next") or ""))
    if error := query.get("error"):
        return _refused(request, 403, f"Your identity provider did not sign you in ({error[:100]}).", target)
    if not (code := query.get("code")):
        return _refused(request, 400, "Your identity provider sent you back without a sign-in code.", target)
    try:
        signed = await services_of(request).company_sign_in.finish(
            str(pending["ws"]),
            code=code,
            code_verifier=str(pending["verifier"]),
            nonce=str(pending["nonce"]),
            issuer=query.get("iss"),
        )
    except ServiceError as exc:
        return _refused(request, status_of(exc), exc.message, target)
    await start_session(request, signed.user, signed.workspace_id, method="oidc", only_workspace=True)
    return redirect(target)


routes = [
    Route("/login/oidc", start, methods=["POST"]),
    Route(CALLBACK_PATH, callback, methods=["GET"]),
]

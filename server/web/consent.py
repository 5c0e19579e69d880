"""The consent page: a signed-in person lets an assistant act for them, or refuses.

The authorization endpoint sends the browser here with the assistant's request sealed; nothing the browser sends
back can change it. The page names the assistant and its home site (warning when it sends people back to another
host), the workspace, and what each scope allows. Approving issues a one-time code and sends the browser back to
the assistant's registered redirect URI with ``iss``; a consent given before is remembered per scope, and then
the page only passes through. The form is CSRF-protected, and the page cannot be framed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from mcp.server.auth.provider import construct_redirect_uri
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from server.browser_session import Viewer
from server.services.assistants.authorization import AuthorizationRequest, Redirect
from server.services.errors import InvalidInput, ServiceError
from server.web.pages import SECURITY_HEADERS, Refused, form_of, page, render, services_of

PATH = "/oauth/consent"
SOURCE = re.compile(r"[a-z][a-z0-9+.-]*:(//[A-Za-z0-9.\-]+(:[0-9]+)?|//\[[0-9A-Fa-f:.]+\](:[0-9]+)?)?")

Endpoint = Callable[[Request], Awaitable[Response]]


def _request_of(request: Request, sealed: str) -> AuthorizationRequest:
    try:
        return services_of(request).authorization.unseal(sealed)
    except InvalidInput as exc:
        raise Refused(400, next(iter(exc.fields.values())), "Sign-in request expired") from None


def _refused(exc: ServiceError) -> Refused:
    message = next(iter(exc.fields.values())) if isinstance(exc, InvalidInput) else str(exc)
    return Refused(400, message, "Assistant not found")


def _back(redirect: Redirect) -> Response:
    """The browser goes back to the assistant; the CSP lets this form's answer lead there and nowhere else."""
    response = RedirectResponse(construct_redirect_uri(redirect.uri, **redirect.params), status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def _form_action(redirect_uri: str) -> str:
    """The CSP ``form-action`` for the consent form: this site, and the one place its answer redirects to."""
    parts = urlsplit(redirect_uri)
    target = f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"
    # A source expression, never more: a ';' or a quote from a registered URI must not add a directive.
    if not SOURCE.fullmatch(target):
        return "form-action 'self'"
    return f"form-action 'self' {target}"


@page
async def consent(request: Request, viewer: Viewer) -> Response:
    sealed = request.query_params.get("request", "")
    authorization = services_of(request).authorization
    asked = _request_of(request, sealed)
    try:
        screen = await authorization.screen(asked, viewer.principal)
    except ServiceError as exc:
        raise _refused(exc) from None
    if screen.already_granted and not screen.blocked:
        return _back(await authorization.decide(asked, viewer.principal, approve=True, person_facing=None))
    response = render(request, "consent.html", None, person=viewer, screen=screen, sealed=sealed)
    policy = response.headers["Content-Security-Policy"]
    response.headers["Content-Security-Policy"] = policy.replace("form-action 'self'", _form_action(asked.redirect_uri))
    return response


@page
async def decide(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    asked = _request_of(request, str(form.get("request", "")))
    try:
        redirect = await services_of(request).authorization.decide(
            asked,
            viewer.principal,
            approve=form.get("decision") == "allow",
            person_facing=form.get("person_facing") == "on",
        )
    except ServiceError as exc:
        raise _refused(exc) from None
    return _back(redirect)


def _own_server_only(endpoint: Endpoint) -> Endpoint:
    """With an external authorization server Companion asks no one's consent, so the page answers as a path that
    is not there does, signed in or not."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        if not services_of(request).authorization.enabled:
            raise HTTPException(status_code=404)
        return await endpoint(request)

    return guarded


routes = [
    Route(PATH, _own_server_only(consent), methods=["GET"]),
    Route(PATH, _own_server_only(decide), methods=["POST"]),
]

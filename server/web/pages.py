"""What every console page shares: templates, CSRF and refusals; the signed-in viewer and flash messages come from
``server.browser_session``, which the REST API's OAuth callback reads too.
"""

from __future__ import annotations

import functools
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from server.browser_session import Viewer, viewer_of
from server.services.waiting import waiting_count
from server.services.wiring import ConsoleServices

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.strftime("%d %b %Y, %H:%M UTC")


templates.env.filters["when"] = _when

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request the console will not carry out; shown as a page with ``status``."""

    def __init__(self, status: int, message: str, title: str = "Not allowed") -> None:
        super().__init__(message)
        self.status = status
        self.title = title


def services_of(request: Request) -> ConsoleServices:
    """The console's services, which ``server.app`` put on the app's state as ``console``."""
    services = request.app.state.console
    if not isinstance(services, ConsoleServices):
        raise TypeError(f"app.state.console is {type(services).__name__}, not ConsoleServices")
    return services


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return str(token)


async def form_of(request: Request) -> FormData:
    """The posted form, once its CSRF token (field ``csrf`` or header ``X-CSRF-Token``) matches the session's."""
    form = await request.form()
    sent = str(form.get("csrf") or request.headers.get("x-csrf-token") or "")
    expected = str(request.session.get("csrf", ""))
    if not expected or not hmac.compare_digest(sent, expected):
        raise Refused(
            403, "This form has expired or did not come from Companion. Reload the page and try again.", "Refused"
        )
    return form


def render(
    request: Request, name: str, viewer: Viewer | None = None, *, status: int = 200, **context: Any
) -> HTMLResponse:
    messages = request.session.pop("flash", []) if "flash" in request.session else []
    response = templates.TemplateResponse(
        request,
        name,
        {
            "csrf": csrf_token(request),
            "viewer": viewer,
            "flashes": messages,
            "path": request.url.path,
            "waiting": getattr(request.state, "waiting", None),
            **context,
        },
        status_code=status,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def refusal(request: Request, viewer: Viewer | None, refused: Refused) -> HTMLResponse:
    return render(request, "message.html", viewer, status=refused.status, title=refused.title, message=str(refused))


def redirect(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def safe_next(target: str | None, default: str = "/") -> str:
    """Only a path on this site, never another origin (``//host`` or a scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


Handler = Callable[[Request, Viewer], Awaitable[Response]]


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A console endpoint: signs the browser in first, and shows a refusal as a page with its status."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        viewer = await viewer_of(request)
        if viewer is None:
            if request.method == "GET":
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return redirect(f"/login?next={quote(target)}")
            return redirect("/login")
        if request.method == "GET":
            # The number beside "Approvals" and in the tab title, once for the page.
            request.state.waiting = await waiting_count(services_of(request).db, viewer.principal)
        try:
            return await handler(request, viewer)
        except Refused as refused:
            return refusal(request, viewer, refused)

    return endpoint


def require_admin(viewer: Viewer, what: str = "this page") -> None:
    if not viewer.is_admin:
        raise Refused(403, f"Only workspace admins and owners can see or change {what}.")


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"

"""What every console page shares: the signed-in viewer, templates, CSRF, flash messages and refusals.

The session cookie holds only the user's id, the chosen workspace, the id of
its row in ``web_sessions`` and a tag of the password hash, so signing out, a
password change or a removed membership ends the session on its next request.
"""

from __future__ import annotations

import functools
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from server.settings import Settings
from store.crypto import derive_key
from store.directory import member_principal
from store.models import Membership, User, Workspace
from store.passwords import fingerprint
from store.principal import Principal
from store.web_sessions import is_open, open_session

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


def session_middleware(settings: Settings) -> Middleware:
    return Middleware(
        SessionMiddleware,
        secret_key=derive_key(settings.encryption_keys()[0], "web sessions").hex(),
        session_cookie="companion_session",
        same_site="lax",
        https_only=urlsplit(settings.base_url).scheme == "https",
        max_age=12 * 3600,
    )


@dataclass(frozen=True)
class WorkspaceChoice:
    id: str
    slug: str
    name: str


@dataclass(frozen=True)
class Viewer:
    """The signed-in person, in the workspace they chose, with the other workspaces they may switch to."""

    principal: Principal
    name: str
    workspace_name: str
    workspaces: tuple[WorkspaceChoice, ...]

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin


class Refused(Exception):
    """A request the console will not carry out; shown as a page with ``status``."""

    def __init__(self, status: int, message: str, title: str = "Not allowed") -> None:
        super().__init__(message)
        self.status = status
        self.title = title


def companion_of(request: Request) -> Any:
    return request.app.state.companion


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


async def start_session(request: Request, user: User, workspace_id: str, *, method: str) -> None:
    """Begin a signed-in session; every sign-in method (password today, SSO later) ends here."""
    async with companion_of(request).db.transaction() as session:
        sid = await open_session(session, user.id)
    request.session.clear()
    request.session.update(
        {
            "uid": user.id,
            "ws": workspace_id,
            "pw": fingerprint(user),
            "via": method,
            "sid": sid,
            "csrf": secrets.token_urlsafe(24),
        }
    )


async def viewer_of(request: Request) -> Viewer | None:
    user_id = request.session.get("uid")
    if not user_id:
        return None
    companion = companion_of(request)
    async with companion.db.session() as session:
        user = await session.get(User, user_id)
        rows = (
            await session.execute(
                select(Workspace.id, Workspace.slug, Workspace.name)
                .join(Membership, Membership.workspace_id == Workspace.id)
                .where(Membership.user_id == user_id)
                .order_by(Workspace.name)
            )
        ).all()
        chosen = request.session.get("ws")
        sid = str(request.session.get("sid") or "")
        principal = None
        live = user is not None and request.session.get("pw") == fingerprint(user) and chosen
        if live and await is_open(session, sid, user_id):
            # Each browser session acts under its own id, so a connect flow stays bound to the session that began it.
            principal = await member_principal(session, chosen, user_id, acting_as=f"web_{sid}")
    if user is None or principal is None:
        request.session.clear()
        return None
    choices = tuple(WorkspaceChoice(*row) for row in rows)
    current = next((c.name for c in choices if c.id == principal.workspace_id), principal.workspace_slug)
    return Viewer(principal=principal, name=user.name or user.email, workspace_name=current, workspaces=choices)


def flash(request: Request, message: str, kind: str = "notice") -> None:
    """A message for the next page this browser sees (after a redirect)."""
    request.session.setdefault("flash", []).append({"kind": kind, "message": message})


def render(
    request: Request, name: str, viewer: Viewer | None = None, *, status: int = 200, **context: Any
) -> HTMLResponse:
    messages = request.session.pop("flash", []) if "flash" in request.session else []
    response = templates.TemplateResponse(
        request,
        name,
        {"csrf": csrf_token(request), "viewer": viewer, "flashes": messages, "path": request.url.path, **context},
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

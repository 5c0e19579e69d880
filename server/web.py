"""Server-rendered pages: sign-in and the approval page.

Sign-in takes a user API key for now (the console will add passwords); the
session remembers only the key's id, in a signed HttpOnly SameSite=Lax
cookie, and every form carries a CSRF token bound to the session.
"""

from __future__ import annotations

import hmac
import json
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from server.approval_flow import DecisionRefused, approval_view, decide_elsewhere, visible_to
from server.settings import Settings
from store.crypto import derive_key
from store.keys import principal_of_key
from store.models import Approval, KeyKind
from store.principal import Principal

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
templates.env.filters["when"] = lambda value: datetime.fromisoformat(value).strftime("%d %b %Y, %H:%M UTC")


def session_middleware(settings: Settings) -> Middleware:
    return Middleware(
        SessionMiddleware,
        secret_key=derive_key(settings.encryption_keys()[0], "web sessions").hex(),
        session_cookie="companion_session",
        same_site="lax",
        https_only=urlsplit(settings.base_url).scheme == "https",
        max_age=12 * 3600,
    )


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return str(token)


async def _form_with_csrf(request: Request) -> dict[str, Any]:
    form = dict(await request.form())
    sent = str(form.get("csrf", ""))
    expected = str(request.session.get("csrf", ""))
    if not expected or not hmac.compare_digest(sent, expected):
        raise _Refused(403, "This form has expired or did not come from Companion. Reload the page and try again.")
    return form


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def signed_in(request: Request) -> Principal | None:
    key_id = request.session.get("key_id")
    if not key_id:
        return None
    async with request.app.state.companion.db.session() as session:
        principal = await principal_of_key(session, key_id)
    if principal is None or principal.key_kind is not KeyKind.USER:
        request.session.clear()
        return None
    return principal


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"csrf": csrf_token(request), **context}, status_code=status)


async def login_page(request: Request) -> Response:
    return _page(request, "login.html", next=request.query_params.get("next", "/"))


async def login(request: Request) -> Response:
    try:
        form = await _form_with_csrf(request)
    except _Refused as exc:
        return _page(request, "login.html", exc.status, error=str(exc), next="/")
    target = str(form.get("next") or "/")
    if not target.startswith("/") or target.startswith("//"):
        target = "/"
    principal = await request.app.state.companion.principal_for(str(form.get("key", "")).strip())
    if principal is None or principal.key_kind is not KeyKind.USER:
        return _page(request, "login.html", 401, error="That is not a valid user key.", next=target)
    request.session.clear()
    request.session["key_id"] = principal.key_id
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    try:
        await _form_with_csrf(request)
    except _Refused:
        return RedirectResponse("/login", status_code=303)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def approval_page(request: Request) -> Response:
    actor = await signed_in(request)
    if actor is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    companion = request.app.state.companion
    async with companion.db.session() as session:
        approval = await session.get(Approval, request.path_params["approval_id"])
    if approval is None or approval.workspace_id != actor.workspace_id or not visible_to(approval, actor):
        return _page(
            request,
            "message.html",
            404,
            actor=actor,
            title="Not found",
            message="There is no such approval that you can see.",
        )
    view = approval_view(companion.gateway.flow, companion.registry.tools, approval)
    return _page(request, "approval.html", actor=actor, approval=view, notice=request.query_params.get("done"))


async def decide(request: Request) -> Response:
    actor = await signed_in(request)
    if actor is None:
        return RedirectResponse("/login", status_code=303)
    approval_id = request.path_params["approval_id"]
    try:
        form = await _form_with_csrf(request)
    except _Refused as exc:
        return _page(request, "message.html", exc.status, actor=actor, title="Refused", message=str(exc))
    companion = request.app.state.companion
    approve = request.path_params["action"] == "approve"
    try:
        await decide_elsewhere(
            companion.gateway.flow,
            companion.registry.tools,
            actor,
            approval_id,
            approve=approve,
            via="web",
            reason=str(form.get("reason") or "") or None,
            remember=str(form.get("remember") or "no"),
        )
    except DecisionRefused as exc:
        status = {"not_found": 404, "forbidden": 403}.get(exc.code, 409)
        return _page(request, "message.html", status, actor=actor, title="Not done", message=str(exc))
    done = "approved" if approve else "denied"
    return RedirectResponse(f"/approvals/{approval_id}?done={done}", status_code=303)


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/approvals/{approval_id}", approval_page, methods=["GET"]),
    Route("/approvals/{approval_id}/{action:str}", decide, methods=["POST"]),
]

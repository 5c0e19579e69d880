"""Signing in with e-mail and password, and signing out.

Attempts are throttled per address and per client (``store.throttle``).
The other way in, a workspace's identity provider (``signin_oidc``), verifies the
person its own way and then calls ``start_session`` as this one does.
"""

from __future__ import annotations

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.browser_session import start_session, viewer_of
from server.web import signin_oidc
from server.web.pages import Refused, form_of, redirect, render, safe_next, services_of
from store import throttle
from store.directory import first_workspace_of
from store.models import User
from store.passwords import verify
from store.web_sessions import close_session

WRONG = "That e-mail address and password do not match."


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def login_page(request: Request) -> Response:
    if await viewer_of(request) is not None:
        return redirect(safe_next(request.query_params.get("next")))
    return render(request, "login.html", next=safe_next(request.query_params.get("next")))


async def login(request: Request) -> Response:
    try:
        form = await form_of(request)
    except Refused as refused:
        return render(request, "login.html", status=refused.status, error=str(refused), next="/")
    target = safe_next(str(form.get("next") or ""))
    email = str(form.get("email") or "").strip().lower()
    password = str(form.get("password") or "")

    def again(status: int, error: str) -> Response:
        return render(request, "login.html", status=status, error=error, next=target, email=email)

    if not email or not password:
        return again(400, "Enter your e-mail address and your password.")
    services = services_of(request)
    if wait := await throttle.take_attempt(services.db, email=email, client=client_of(request)):
        minutes = max(1, round(wait / 60))
        return again(429, f"Too many failed sign-ins. Try again in {minutes} minute{'s' * (minutes != 1)}.")
    async with services.db.session() as session:
        user = await session.scalar(select(User).where(User.email == email))
        workspace_id = await first_workspace_of(session, user.id) if user is not None else None
    if not await verify(user, password) or user is None:
        return again(401, WRONG)
    if workspace_id is None:
        return again(403, "You are not a member of any workspace. Ask an admin to add you.")
    await throttle.succeeded(services.db, email=email, client=client_of(request))
    await start_session(request, user, workspace_id, method="password")
    return redirect(target)


async def logout(request: Request) -> Response:
    try:
        await form_of(request)
    except Refused:
        return redirect("/login")
    if sid := request.session.get("sid"):
        async with services_of(request).db.transaction() as session:
            await close_session(session, str(sid))
    request.session.clear()
    return redirect("/login")


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    *signin_oidc.routes,
]

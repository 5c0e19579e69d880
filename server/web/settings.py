"""The person's own settings: approval e-mails and their password."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.web.pages import Viewer, companion_of, flash, form_of, page, redirect, render
from server.web.signin import client_of
from store import throttle
from store.models import User
from store.passwords import PasswordError, fingerprint, set_password, verify
from store.web_sessions import close_others


async def _user(request: Request, viewer: Viewer) -> User:
    async with companion_of(request).db.session() as session:
        user = await session.get(User, viewer.principal.user_id)
    assert user is not None
    return user


def _show(
    request: Request, viewer: Viewer, user: User, *, status: int = 200, errors: dict[str, str] | None = None
) -> Response:
    return render(
        request,
        "settings.html",
        viewer,
        status=status,
        user=user,
        mail_ready=companion_of(request).mail.configured,
        errors=errors or {},
        method=request.session.get("via", "password"),
    )


@page
async def settings_page(request: Request, viewer: Viewer) -> Response:
    return _show(request, viewer, await _user(request, viewer))


@page
async def notifications(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    wanted = form.get("notify_approvals") == "on"
    async with companion_of(request).db.transaction() as session:
        user = await session.get(User, viewer.principal.user_id)
        assert user is not None
        user.notify_approvals = wanted
    flash(request, "You will get an e-mail when an approval waits." if wanted else "Approval e-mails are off.")
    return redirect("/settings")


@page
async def password(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    current, new, repeat = (str(form.get(name) or "") for name in ("current", "new", "repeat"))
    user = await _user(request, viewer)
    errors: dict[str, str] = {}
    # Throttled like sign-in, so a borrowed session cannot guess the password it needs to take the account.
    if await throttle.take_attempt(companion_of(request).db, email=user.email, client=client_of(request)):
        errors["current"] = "Too many wrong passwords. Try again later."
    elif not await verify(user, current):
        errors["current"] = "This is not your current password."
    elif new != repeat:
        errors["repeat"] = "The two new passwords differ."
    if errors:
        return _show(request, viewer, user, status=400, errors=errors)
    async with companion_of(request).db.transaction() as session:
        stored = await session.get(User, user.id)
        assert stored is not None
        try:
            await set_password(session, stored, new)
        except PasswordError as exc:
            errors["new"] = str(exc).removeprefix("password: ").capitalize() + "."
        else:
            # This browser stays signed in; every other session ends on its next request.
            request.session["pw"] = fingerprint(stored)
            await close_others(session, stored.id, keep=str(request.session.get("sid")))
    if errors:
        return _show(request, viewer, user, status=400, errors=errors)
    flash(request, "Your password is changed. Your other sessions are signed out.")
    return redirect("/settings")


routes = [
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings/notifications", notifications, methods=["POST"]),
    Route("/settings/password", password, methods=["POST"]),
]

"""The person's own settings: approval e-mails, their password, their agent keys' hosts, and (for admins)
what an answer given in an assistant's chat may approve in the workspace, and its identity provider.

A key is marked person-facing by its owner alone: it says the program using it shows approval forms to
them and never to the AI model, which only they can know. Admins bound what such answers may approve.
"""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.browser_session import Viewer, flash
from server.services.errors import InvalidInput
from server.services.oidc.config import ConfigChange
from server.web.pages import Refused, form_of, page, redirect, render, require_admin, services_of
from server.web.signin import client_of
from store import throttle
from store.in_chat_policy import RISKS, InChatPolicy, policy_of, set_policy
from store.keys import PERSON_FACING_WARNING, KeyRequestError, live, set_person_facing
from store.models import ApiKey, KeyKind, User
from store.passwords import PasswordError, fingerprint, set_password, verify
from store.web_sessions import close_others


async def _user(request: Request, viewer: Viewer) -> User:
    async with services_of(request).db.session() as session:
        user = await session.get(User, viewer.principal.user_id)
    assert user is not None
    return user


# The identity provider form before anything is saved: on, so that saving it is enough to turn it on.
BLANK_SIGN_IN = ConfigChange(issuer="", client_id="", client_secret="", create_users=False, enabled=True)

# What each level lets an in-chat answer approve, in the words the settings page uses.
RISK_WORDS = {
    "read": "Only reading: looking things up, listing and searching. Nothing changes anywhere.",
    "write": "Also creating and changing things, such as issues, records, events and action items.",
    "send": "Also sending things to people: e-mails, messages and invitations.",
    "delete": "Also deleting things, which may not be undone.",
}


def _own_keys_query(viewer: Viewer) -> Select[ApiKey]:
    principal = viewer.principal
    return select(ApiKey).where(
        ApiKey.user_id == principal.user_id,
        ApiKey.workspace_id == principal.workspace_id,
        ApiKey.kind == KeyKind.AGENT,
        live(),
    )


async def _own_keys(session: AsyncSession, viewer: Viewer) -> list[ApiKey]:
    """The viewer's own live agent keys in this workspace: the only keys they may mark."""
    return list(await session.scalars(_own_keys_query(viewer).order_by(ApiKey.created_at.desc())))


async def _show(
    request: Request,
    viewer: Viewer,
    user: User,
    *,
    status: int = 200,
    errors: dict[str, str] | None = None,
    key_errors: dict[str, str] | None = None,
    policy_error: str | None = None,
    sign_in_errors: dict[str, str] | None = None,
    sign_in_sent: ConfigChange | None = None,
) -> Response:
    services = services_of(request)
    async with services.db.session() as session:
        keys = await _own_keys(session, viewer)
        policy = await policy_of(session, viewer.principal.workspace_id)
    sign_in = await services.company_sign_in.config(viewer.principal) if viewer.is_admin else None
    return render(
        request,
        "settings.html",
        viewer,
        status=status,
        user=user,
        mail_ready=services_of(request).mail.configured,
        errors=errors or {},
        method=request.session.get("via", "password"),
        keys=keys,
        key_errors=key_errors or {},
        warning=PERSON_FACING_WARNING,
        policy=policy,
        policy_error=policy_error,
        risks=[(risk, RISK_WORDS[risk]) for risk in RISKS],
        sign_in=sign_in,
        sign_in_form=sign_in_sent or (sign_in if sign_in is not None and sign_in.configured else BLANK_SIGN_IN),
        sign_in_errors=sign_in_errors or {},
        redirect_uri=services.company_sign_in.redirect_uri,
    )


def _plain(error: Exception) -> str:
    """A store error ("field: what is wrong") as a sentence for the page."""
    text = str(error)
    field, sep, rest = text.partition(": ")
    return _sentence(rest if sep and field.isidentifier() else text)


def _sentence(words: str) -> str:
    return words[:1].upper() + words[1:] + ("" if words.endswith(".") else ".")


@page
async def settings_page(request: Request, viewer: Viewer) -> Response:
    return await _show(request, viewer, await _user(request, viewer))


@page
async def notifications(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    wanted = form.get("notify_approvals") == "on"
    async with services_of(request).db.transaction() as session:
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
    if await throttle.take_attempt(services_of(request).db, email=user.email, client=client_of(request)):
        errors["current"] = "Too many wrong passwords. Try again later."
    elif not await verify(user, current):
        errors["current"] = "This is not your current password."
    elif new != repeat:
        errors["repeat"] = "The two new passwords differ."
    if errors:
        return await _show(request, viewer, user, status=400, errors=errors)
    async with services_of(request).db.transaction() as session:
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
        return await _show(request, viewer, user, status=400, errors=errors)
    flash(request, "Your password is changed. Your other sessions are signed out.")
    return redirect("/settings")


@page
async def person_facing(request: Request, viewer: Viewer) -> Response:
    """Mark or unmark one of the viewer's own agent keys as used by a person-facing host."""
    form = await form_of(request)
    wanted = form.get("person_facing") == "on"
    key_id = request.path_params["key_id"]
    try:
        async with services_of(request).db.transaction() as session:
            # Only the owner's own live key in this workspace: an admin cannot vouch for someone else's host.
            key = await session.scalar(_own_keys_query(viewer).where(ApiKey.id == key_id))
            if key is None:
                raise Refused(404, "You have no such key in this workspace.", "Not found")
            name = key.name or key.prefix
            await set_person_facing(session, key, wanted)
    except KeyRequestError as exc:
        user = await _user(request, viewer)
        return await _show(request, viewer, user, status=400, key_errors={key_id: _plain(exc)})
    flash(
        request,
        f"“{name}” is marked as used by a person-facing host."
        if wanted
        else f"“{name}” is no longer marked person-facing: answers in its chat decide nothing.",
    )
    return redirect("/settings#keys")


@page
async def in_chat_policy(request: Request, viewer: Viewer) -> Response:
    """The workspace's policy on approvals answered in an assistant's chat; admins and owners only."""
    require_admin(viewer, "what approvals in the assistant's chat may do")
    form = await form_of(request)
    allow = form.get("person_facing_keys") == "on"
    max_risk = str(form.get("in_chat_max_risk") or "")
    if max_risk not in RISKS:
        user = await _user(request, viewer)
        return await _show(request, viewer, user, status=400, policy_error=f"Choose one of: {', '.join(RISKS)}.")
    async with services_of(request).db.transaction() as session:
        await set_policy(session, viewer.principal.workspace_id, InChatPolicy(allow, max_risk))
    flash(
        request,
        f"Saved. In-chat answers on person-facing keys may approve calls up to “{max_risk}”."
        if allow
        else "Saved. Person-facing keys are off: answers in an assistant's chat approve nothing in this workspace.",
    )
    return redirect("/settings#in-chat")


@page
async def company_sign_in(request: Request, viewer: Viewer) -> Response:
    """The workspace's identity provider for console sign-in; admins and owners only."""
    require_admin(viewer, "how people sign in to the workspace")
    form = await form_of(request)
    change = ConfigChange(
        issuer=str(form.get("issuer") or ""),
        client_id=str(form.get("client_id") or ""),
        client_secret=str(form.get("client_secret") or ""),
        create_users=form.get("create_users") == "on",
        enabled=form.get("enabled") == "on",
    )
    try:
        saved = await services_of(request).company_sign_in.configure(viewer.principal, change)
    except InvalidInput as exc:
        user = await _user(request, viewer)
        errors = {name: _sentence(problem) for name, problem in exc.fields.items()}
        return await _show(request, viewer, user, status=400, sign_in_errors=errors, sign_in_sent=change)
    flash(
        request,
        f"Saved. People of {viewer.workspace_name} may sign in through {saved.issuer}."
        if saved.enabled
        else "Saved. Sign-in through the identity provider is off.",
    )
    return redirect("/settings#sign-in")


routes = [
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings/notifications", notifications, methods=["POST"]),
    Route("/settings/password", password, methods=["POST"]),
    Route("/settings/keys/{key_id}/person-facing", person_facing, methods=["POST"]),
    Route("/settings/in-chat-policy", in_chat_policy, methods=["POST"]),
    Route("/settings/sign-in", company_sign_in, methods=["POST"]),
]

"""The person's own settings: where approvals reach them, their password, their agent keys' hosts, and (for
admins) where the workspace's approvals may go, what an answer given in an assistant's chat may approve, and the
workspace's identity provider.

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
from store.approval_channels import (
    LINK_RISKS,
    PersonalChannels,
    WorkspaceChannels,
    is_link_risk,
    personal_channels,
    set_personal_channels,
    set_workspace_channels,
    workspace_channels,
)
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


# What each e-mail link level lets a link alone decide, in the words the settings page uses.
LINK_WORDS = {
    "none": "The link opens the approval; deciding it needs signing in as the approver.",
    "read": "A link in the e-mail is enough to decide calls up to “read” without signing in; riskier ones need "
    "sign-in.",
    "write": "A link in the e-mail is enough to decide calls up to “write” (creating and changing things) without "
    "signing in; sending and deleting need sign-in.",
    "send": "A link in the e-mail is enough to decide calls up to “send” (e-mails, messages, invitations) without "
    "signing in; deleting needs sign-in.",
    "delete": "A link in the e-mail is enough to decide every call, deleting too, without signing in.",
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
    channels_error: str | None = None,
    sign_in_errors: dict[str, str] | None = None,
    sign_in_sent: ConfigChange | None = None,
) -> Response:
    services = services_of(request)
    async with services.db.session() as session:
        keys = await _own_keys(session, viewer)
        policy = await policy_of(session, viewer.principal.workspace_id)
        channels = await personal_channels(session, viewer.principal.user_id)
        workspace = await workspace_channels(session, viewer.principal.workspace_id)
    sign_in = await services.company_sign_in.config(viewer.principal) if viewer.is_admin else None
    return render(
        request,
        "settings.html",
        viewer,
        status=status,
        user=user,
        mail_ready=services_of(request).mail.configured,
        channels=channels,
        workspace_channels=workspace,
        link_risks=[(risk, LINK_WORDS[risk]) for risk in LINK_RISKS],
        channels_error=channels_error,
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
    """The channels a waiting approval reaches the viewer by. A channel the page showed switched off (no mail
    server, Slack approvals off in the workspace) keeps what was chosen before: its box was not sent."""
    form = await form_of(request)
    services = services_of(request)
    user_id, workspace_id = viewer.principal.user_id, viewer.principal.workspace_id
    async with services.db.transaction() as session:
        before = await personal_channels(session, user_id)
        slack_on = (await workspace_channels(session, workspace_id)).slack_approvals
        chosen = PersonalChannels(
            email=form.get("notify_approvals") == "on" if services.mail.configured else before.email,
            slack=form.get("notify_slack") == "on" if slack_on else before.slack,
            push=form.get("notify_push") == "on",
        )
        await set_personal_channels(session, user_id, chosen)
    flash(request, _channels_words(chosen))
    return redirect("/settings#channels")


def _channels_words(chosen: PersonalChannels) -> str:
    on = [
        name
        for name, wanted in (("e-mail", chosen.email), ("Slack", chosen.slack), ("your devices", chosen.push))
        if wanted
    ]
    if not on:
        return "Saved. Approvals wait for you in the inbox only."
    listed = on[0] if len(on) == 1 else ", ".join(on[:-1]) + " and " + on[-1]
    return f"Saved. Waiting approvals reach you by {listed}, and in the inbox."


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
async def approval_channels(request: Request, viewer: Viewer) -> Response:
    """Where the workspace's approvals may go: Slack, and what an e-mailed link decides alone; admins only."""
    require_admin(viewer, "where the workspace's approvals may go")
    form = await form_of(request)
    max_risk = str(form.get("email_link_max_risk") or "")
    if not is_link_risk(max_risk):
        user = await _user(request, viewer)
        return await _show(request, viewer, user, status=400, channels_error=f"Choose one of: {', '.join(LINK_RISKS)}.")
    chosen = WorkspaceChannels(slack_approvals=form.get("slack_approvals") == "on", email_link_max_risk=max_risk)
    async with services_of(request).db.transaction() as session:
        await set_workspace_channels(session, viewer.principal.workspace_id, chosen)
    slack = "Approvals go to Slack for those who choose it" if chosen.slack_approvals else "Slack approvals are off"
    link = (
        "every decision from an e-mail needs signing in"
        if max_risk == "none"
        else f"an e-mailed link alone decides calls up to “{max_risk}”"
    )
    flash(request, f"Saved. {slack}; {link}.")
    return redirect("/settings#approval-channels")


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
    Route("/settings/approval-channels", approval_channels, methods=["POST"]),
    Route("/settings/sign-in", company_sign_in, methods=["POST"]),
]

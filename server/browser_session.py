"""The browser session a person signs in to the console with: who is signed in, and messages for their next page.

The console pages and the REST API's OAuth callback (a browser sent back by a provider) both read it, so it
belongs to neither front end. The session cookie holds only the user's id, the chosen workspace, the id of
its row in ``web_sessions`` and a tag of the password hash, so signing out, a password change or a removed
membership ends the session on its next request; a session begun through a workspace's identity provider also
names that workspace as the only one it may act in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request

from server.settings import Settings
from store.crypto import derive_key
from store.db import Database
from store.directory import member_principal
from store.models import Membership, User, Workspace
from store.passwords import fingerprint
from store.principal import Principal
from store.web_sessions import is_open, open_session


def database_of(request: Request) -> Database:
    """The database of the server that serves ``request``, which ``server.app`` put on the app's state."""
    db = request.app.state.database
    if not isinstance(db, Database):
        raise TypeError(f"app.state.database is {type(db).__name__}, not Database")
    return db


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


async def start_session(
    request: Request, user: User, workspace_id: str, *, method: str, only_workspace: bool = False
) -> None:
    """Begin a signed-in session; every sign-in method (a password, a workspace's identity provider) ends here.

    ``only_workspace`` keeps the session to ``workspace_id``: a workspace's identity provider speaks for the
    person there, not in the other workspaces they belong to, whose admins did not choose it.
    """
    async with database_of(request).transaction() as session:
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
    if only_workspace:
        request.session["only"] = workspace_id


async def viewer_of(request: Request) -> Viewer | None:
    user_id = request.session.get("uid")
    if not user_id:
        return None
    only = request.session.get("only")
    async with database_of(request).session() as session:
        user = await session.get(User, user_id)
        memberships = (
            select(Workspace.id, Workspace.slug, Workspace.name)
            .join(Membership, Membership.workspace_id == Workspace.id)
            .where(Membership.user_id == user_id)
            .order_by(Workspace.name)
        )
        rows = (await session.execute(memberships.where(Workspace.id == only) if only else memberships)).all()
        chosen = str(request.session.get("ws") or "")
        sid = str(request.session.get("sid") or "")
        principal = None
        kept = not only or chosen == only
        live = user is not None and request.session.get("pw") == fingerprint(user) and chosen and kept
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

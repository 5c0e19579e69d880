"""The web console: server-rendered pages for the people who approve calls, connect apps and write rules.

Each area is one module with its own ``routes``; ``pages`` holds what they share.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from server.browser_session import session_middleware, viewer_of
from server.web import (
    approval_edit,
    approval_link,
    assistants,
    audit,
    batch,
    consent,
    inbox,
    integration,
    marketplace,
    push,
    rules,
    settings,
    signin,
    workspaces,
)
from server.web.pages import HERE

__all__ = ["routes", "session_middleware", "viewer_of"]

routes: list[BaseRoute] = [
    *signin.routes,
    *consent.routes,
    *workspaces.routes,
    # Before the inbox's, whose POST /approvals/{id}/{action} would otherwise take /approvals/{id}/by-link.
    *approval_link.routes,
    # Before the inbox's too: its GET /approvals/{id} would take /approvals/batch, and its POST
    # /approvals/{id}/{action} would take /approvals/{id}/edit.
    *batch.routes,
    *approval_edit.routes,
    *inbox.routes,
    *marketplace.routes,
    *integration.routes,
    *rules.routes,
    *audit.routes,
    *settings.routes,
    *assistants.routes,
    *push.routes,
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]

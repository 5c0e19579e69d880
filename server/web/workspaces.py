"""The workspace switcher: a person in several workspaces picks the one the console shows."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.browser_session import Viewer, flash
from server.web.pages import Refused, form_of, page, redirect, safe_next


@page
async def switch(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    chosen = next((w for w in viewer.workspaces if w.id == form.get("workspace_id")), None)
    if chosen is None:
        raise Refused(404, "You are not a member of that workspace.", "Not found")
    request.session["ws"] = chosen.id
    flash(request, f"Switched to {chosen.name}.")
    return redirect(safe_next(str(form.get("next") or ""), "/inbox"))


async def home(request: Request) -> Response:
    return redirect("/inbox")


routes = [
    Route("/", home, methods=["GET"]),
    Route("/workspace", switch, methods=["POST"]),
]

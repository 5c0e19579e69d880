"""Integrations over the API: the apps there are, the ones installed, and every step of their life.

Only people manage integrations (a user key or a signed-in session): an
assistant's agent key cannot connect apps or read their setup.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from server.api.auth import person_of
from server.api.errors import ApiError, body_of
from server.integrations.lifecycle import IntegrationError, connection_json
from server.web.pages import flash, viewer_of


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectBody(Strict):
    scope: Literal["workspace", "personal"] | None = None
    method: Literal["oauth2", "api_key", "basic", "smtp"] | None = None
    label: str = Field(default="", max_length=200)
    setup: dict[str, Any] = Field(default_factory=dict)
    return_to: str | None = Field(default=None, max_length=500)


class CredentialsBody(Strict):
    setup: dict[str, Any] = Field(min_length=1)


class ReauthBody(Strict):
    setup: dict[str, Any] = Field(default_factory=dict)
    return_to: str | None = Field(default=None, max_length=500)


class OptionsBody(Strict):
    options: dict[str, Any] = Field(min_length=1)


class MappingsBody(Strict):
    objects: dict[str, str] | None = None
    fields: dict[str, str] | None = None
    direction: Literal["bidirectional", "to_harmony", "to_provider"] | None = None
    auto_sync: bool | None = None


class SyncBody(Strict):
    full: bool = True


def _refused(exc: IntegrationError) -> ApiError:
    details = {"fields": exc.fields} if exc.fields else {}
    return ApiError(exc.status, str(exc), code=exc.code, details=details)


async def _do(coroutine: Any) -> Any:
    try:
        return await coroutine
    except IntegrationError as exc:
        raise _refused(exc) from None


def _companion(request: Request) -> Any:
    return request.app.state.companion


async def list_apps(request: Request) -> JSONResponse:
    person_of(request)
    return JSONResponse({"data": _companion(request).integrations.available()})


async def list_installed(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = _companion(request)
    async with companion.db.session() as session:
        rows = await companion.integrations.installed(session, actor)
    return JSONResponse({"data": [connection_json(r, companion.registry.manifests.get(r.app)) for r in rows]})


async def get_installed(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = _companion(request)
    async with companion.db.session() as session:
        row = await _do(companion.integrations.get(session, actor, request.path_params["id"], manage=False))
        return JSONResponse(connection_json(row, companion.registry.manifests.get(row.app)))


async def connect(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = _companion(request)
    body = await body_of(request, ConnectBody)
    app = request.path_params["app"]
    manifest = companion.registry.manifests.get(app)
    method = body.method or (manifest.auth.type if manifest else None)
    if method == "oauth2":
        started = await _do(
            companion.oauth.start(
                actor, app, scope=body.scope, label=body.label, setup=body.setup, return_to=body.return_to
            )
        )
        return JSONResponse(started, status_code=202)
    created = await _do(
        companion.integrations.connect(
            actor, app, scope=body.scope, method=body.method, label=body.label, setup=body.setup
        )
    )
    return JSONResponse(created, status_code=201)


async def reauth(request: Request) -> JSONResponse:
    """OAuth: a new connect link for the same connection. Keys: the new key, stored in place."""
    actor = person_of(request)
    companion = _companion(request)
    body = await body_of(request, ReauthBody)
    connection_id = request.path_params["id"]
    async with companion.db.session() as session:
        row = await _do(companion.integrations.get(session, actor, connection_id, manage=True))
    if row.auth_method == "oauth2":
        started = await _do(
            companion.oauth.start(actor, row.app, connection_id=connection_id, return_to=body.return_to)
        )
        return JSONResponse(started, status_code=202)
    if not body.setup:
        raise ApiError(
            422, "Invalid request: setup: give the new credentials", details={"fields": {"setup": "required"}}
        )
    updated = await _do(companion.integrations.update_credentials(actor, connection_id, body.setup))
    return JSONResponse(updated)


async def update_credentials(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = _companion(request)
    body = await body_of(request, CredentialsBody)
    updated = await _do(companion.integrations.update_credentials(actor, request.path_params["id"], body.setup))
    return JSONResponse(updated)


async def test(request: Request) -> JSONResponse:
    actor = person_of(request)
    return JSONResponse(await _do(_companion(request).integrations.test(actor, request.path_params["id"])))


async def set_options(request: Request) -> JSONResponse:
    actor = person_of(request)
    body = await body_of(request, OptionsBody)
    return JSONResponse(
        await _do(_companion(request).integrations.set_options(actor, request.path_params["id"], body.options))
    )


async def choices(request: Request) -> JSONResponse:
    actor = person_of(request)
    found = await _do(
        _companion(request).integrations.choices(actor, request.path_params["id"], request.path_params["option"])
    )
    return JSONResponse({"data": found})


async def get_mappings(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = _companion(request)
    async with companion.db.session() as session:
        row = await _do(companion.integrations.get(session, actor, request.path_params["id"], manage=False))
    manifest = companion.registry.manifests[row.app]
    if manifest.sync is None:
        raise ApiError(409, f"{manifest.name} does not sync, so it has no mappings.")
    return JSONResponse(
        {
            **companion.integrations.default_mappings(manifest),
            **(row.mappings or {}),
            "provider_fields": manifest.sync.provider_fields,
            "provider_objects": manifest.sync.provider_objects,
            "object": manifest.sync.object,
        }
    )


async def set_mappings(request: Request) -> JSONResponse:
    actor = person_of(request)
    body = await body_of(request, MappingsBody)
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise ApiError(422, "Invalid request: give objects, fields, direction or auto_sync", details={"fields": {}})
    return JSONResponse(
        await _do(_companion(request).integrations.set_mappings(actor, request.path_params["id"], changes))
    )


async def sync(request: Request) -> JSONResponse:
    actor = person_of(request)
    body = await body_of(request, SyncBody)
    run = await _do(_companion(request).sync.start(actor, request.path_params["id"], full=body.full))
    return JSONResponse(run, status_code=202)


async def sync_logs(request: Request) -> JSONResponse:
    actor = person_of(request)
    return JSONResponse(
        {"data": await _do(_companion(request).integrations.sync_logs(actor, request.path_params["id"]))}
    )


async def disconnect(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = _companion(request)
    result = await _do(companion.integrations.disconnect(actor, request.path_params["id"]))
    return JSONResponse(result)


async def delete(request: Request) -> Response:
    actor = person_of(request)
    companion = _companion(request)
    await _do(companion.integrations.delete(actor, request.path_params["id"]))
    return Response(status_code=204)


async def oauth_start(request: Request) -> Response:
    """Opened in the browser: needs the signed-in person who asked, then goes to the provider."""
    viewer = await viewer_of(request)
    actor = viewer.principal if viewer else None
    if actor is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    url = await _do(_companion(request).oauth.redirect(actor, request.path_params["flow_id"]))
    return RedirectResponse(url, status_code=302)


async def oauth_callback(request: Request) -> Response:
    query = request.query_params
    companion = _companion(request)
    # A flow begun in the console goes back there with the failure, rather than showing JSON in its popup.
    back = await companion.oauth.return_to_of(query.get("state", ""))
    try:
        if query.get("error"):
            raise ApiError(
                400,
                f"The provider did not authorize the connection: {query.get('error_description') or query['error']}.",
                code="oauth_refused",
            )
        viewer = await viewer_of(request)
        actor = viewer.principal if viewer else None
        connection, return_to = await _do(companion.oauth.finish(actor, query.get("state", ""), query.get("code", "")))
    except ApiError as exc:
        if back:
            # Said in this browser's session, not in the URL, so no link can put words on the page.
            flash(request, exc.message, "error")
            return RedirectResponse(f"{back}?failed=1", status_code=303)
        raise
    if return_to:
        return RedirectResponse(f"{return_to}?connected={connection['id']}", status_code=303)
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(
            f"<!doctype html><title>Connected</title><p>{connection['app_name']} is connected. "
            "You can close this window.</p>"
        )
    return JSONResponse(connection)


routes = [
    Route("/integrations/apps", list_apps, methods=["GET"]),
    Route("/integrations", list_installed, methods=["GET"]),
    Route("/integrations/oauth/callback", oauth_callback, methods=["GET"]),
    Route("/integrations/oauth/{flow_id}/start", oauth_start, methods=["GET"]),
    Route("/integrations/apps/{app}/connect", connect, methods=["POST"]),
    Route("/integrations/{id}", get_installed, methods=["GET"]),
    Route("/integrations/{id}", delete, methods=["DELETE"]),
    Route("/integrations/{id}/test", test, methods=["POST"]),
    Route("/integrations/{id}/reauth", reauth, methods=["POST"]),
    Route("/integrations/{id}/credentials", update_credentials, methods=["PUT"]),
    Route("/integrations/{id}/options", set_options, methods=["PATCH"]),
    Route("/integrations/{id}/options/{option}/choices", choices, methods=["GET"]),
    Route("/integrations/{id}/mappings", get_mappings, methods=["GET"]),
    Route("/integrations/{id}/mappings", set_mappings, methods=["PATCH"]),
    Route("/integrations/{id}/sync", sync, methods=["POST"]),
    Route("/integrations/{id}/sync/logs", sync_logs, methods=["GET"]),
    Route("/integrations/{id}/disconnect", disconnect, methods=["POST"]),
]

"""Integrations over the API: the apps there are, the ones installed, and every step of their life.

Only people manage integrations (a user key or a signed-in session): an
assistant's agent key cannot connect apps or read their setup. The steps are
``server.services.integrations`` (the CLI and the console run them too); this module
declares them and maps their refusals onto the API's errors.

Two operations are a browser's, not a program's: the connect link an OAuth
start answers with, and the provider's callback. They follow the console's
signed-in session, not a key, and answer with redirects.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from server.api.auth import person_of
from server.api.errors import ApiError
from server.api.router import ApiRouter, Reply
from server.api.services import services_of
from server.browser_session import flash, viewer_of
from server.http_status import status_of
from server.services.integrations.lifecycle import IntegrationError, Integrations, connection_json
from store.principal import Principal

api = ApiRouter("Integrations")

T = TypeVar("T")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConnectBody(Strict):
    scope: Literal["workspace", "personal"] | None = Field(default=None, description="Default: the app's first")
    method: Literal["oauth2", "api_key", "basic", "smtp"] | None = Field(default=None, description="Default: the app's")
    label: str = Field(default="", max_length=200)
    setup: dict[str, Any] = Field(default_factory=dict, description="The app's setup fields (setup_fields)")
    return_to: str | None = Field(
        default=None, max_length=500, description="OAuth: a path on this server the browser returns to"
    )


class CredentialsBody(Strict):
    setup: dict[str, Any] = Field(min_length=1)


class ReauthBody(Strict):
    setup: dict[str, Any] = Field(default_factory=dict, description="The new key or password (not for OAuth)")
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


class Sparse(BaseModel):
    """An answer whose optional fields are there only when they apply, as they always were: absent, not null."""

    # No return annotation: pydantic documents a serializer by it, and "a dict" would hide the fields.
    @model_serializer(mode="wrap")
    def _present(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data: dict[str, Any] = handler(self)
        fields = type(self).model_fields
        return {k: v for k, v in data.items() if k in self.model_fields_set or fields[k].is_required()}


class ToolSummary(BaseModel):
    name: str
    title: str
    risk: str


class SyncFields(BaseModel):
    provider_fields: list[str]
    default_mappings: dict[str, str]


class AppOut(BaseModel):
    id: str
    name: str
    description: str
    category: str
    scopes: list[str] = Field(description="workspace, personal, or both: how it may be connected")
    methods: list[str] = Field(description="How it connects: oauth2, api_key, basic, smtp")
    oauth_configured: bool | None = Field(description="OAuth apps: whether this server has a client for it")
    setup_fields: list[dict[str, Any]] = Field(description="What connecting asks for")
    options: list[dict[str, Any]] = Field(description="Settings of a connection, changed later")
    syncs: str | None = Field(description="The Harmony object it syncs, if it syncs")
    sync_fields: SyncFields | None
    tools: list[ToolSummary]


class AppList(BaseModel):
    data: list[AppOut]


class ConnectionOut(BaseModel):
    """A connection as people and the API see it: never its credentials."""

    id: str
    app: str
    app_name: str
    scope: Literal["workspace", "personal"]
    label: str
    status: str = Field(description="active, needs_reauth, error or disconnected")
    auth_method: str
    setup: dict[str, Any] = Field(description="The setup fields that are not secret")
    options: dict[str, Any]
    mappings: dict[str, Any]
    has_credentials: bool
    last_error: str | None
    owner_id: str | None = Field(description="Who connected it")
    created_at: datetime | None
    updated_at: datetime | None
    last_sync_at: datetime | None


class ConnectionList(BaseModel):
    data: list[ConnectionOut]


class OAuthStarted(BaseModel):
    flow_id: str
    authorize_url: str = Field(description="Open it in a browser signed in to the console as the same person")
    expires_at: datetime


class TestResult(Sparse):
    ok: bool
    code: str | None = Field(description="The error's code when it failed")
    message: str = Field(description="In Companion's words, never the provider's")
    failure: str | None = Field(default=None, description="When it failed: connect, timeout, tls, credentials, ...")


class ChoiceList(BaseModel):
    data: list[dict[str, Any]]


class MappingsOut(Sparse):
    fields: dict[str, str] = Field(description="Harmony field -> provider field")
    direction: Literal["bidirectional", "to_harmony", "to_provider"]
    auto_sync: bool
    objects: dict[str, str] | None = Field(default=None, description="Harmony object -> provider object")
    provider_fields: list[str]
    provider_objects: list[str]
    object: str = Field(description="The Harmony object it syncs")


class SyncRunOut(BaseModel):
    id: str
    connection_id: str
    full: bool
    status: str = Field(description="running, succeeded or failed")
    triggered_by: str | None
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, Any]
    errors: list[Any]


class SyncRunList(BaseModel):
    data: list[SyncRunOut]


class CallbackQuery(BaseModel):
    """What the provider sends back (RFC 6749 §4.1.2): a code and the state, or an error."""

    state: str = Field(default="", max_length=500)
    code: str = Field(default="", max_length=2000)
    error: str | None = Field(default=None, max_length=200)
    error_description: str | None = Field(default=None, max_length=1000)


def _refused(exc: IntegrationError) -> ApiError:
    return ApiError(status_of(exc), exc.message, code=exc.code, details=exc.details)


async def _do(step: Awaitable[T]) -> T:
    try:
        return await step
    except IntegrationError as exc:
        raise _refused(exc) from None


def _integrations(request: Request) -> Integrations:
    return services_of(request).integrations


@api.get("/integrations/apps", caller=person_of, response=AppList, summary="List the apps to connect")
async def list_apps(request: Request, actor: Principal) -> AppList:
    """Every app this server knows, with how it connects, what it asks for and the tools it brings."""
    return AppList.model_validate({"data": _integrations(request).available()})


@api.get("/integrations", caller=person_of, response=ConnectionList, summary="List installed integrations")
async def list_installed(request: Request, actor: Principal) -> ConnectionList:
    """The workspace's connections and your personal ones, disconnected ones included."""
    services = services_of(request)
    async with services.db.session() as session:
        rows = await services.integrations.installed(session, actor)
    views = [connection_json(r, services.registry.manifests.get(r.app)) for r in rows]
    return ConnectionList.model_validate({"data": views})


@api.get(
    "/integrations/oauth/callback", public=True, query=CallbackQuery, response=ConnectionOut, html=True,
    redirects={303: "Back to the console page the connect began on, which shows how it went"},
    errors=(403, 404, 502), summary="The OAuth provider's callback",
)  # fmt: skip
async def oauth_callback(request: Request, query: CallbackQuery) -> Response | ConnectionOut:
    """Where the provider sends the browser back: finishes connecting, in the session that began it.

    A browser that accepts HTML gets a page saying so; a connect begun in the console goes back there.
    """
    services = services_of(request)
    # A flow begun in the console goes back there with the failure, rather than showing JSON in its popup.
    back = await services.oauth.return_to_of(query.state)
    try:
        if query.error:
            said = query.error_description or query.error
            raise ApiError(400, f"The provider did not authorize the connection: {said}.", code="oauth_refused")
        viewer = await viewer_of(request)
        actor = viewer.principal if viewer else None
        connection, return_to = await _do(services.oauth.finish(actor, query.state, query.code))
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
    return ConnectionOut.model_validate(connection)


@api.get(
    "/integrations/oauth/{flow_id}/start", public=True,
    redirects={
        302: "To the provider, to authorize the app",
        303: "To the console's sign-in first, when this browser is not signed in as the person who asked",
    },
    errors=(403, 404, 410), summary="Open a connect link",
)  # fmt: skip
async def oauth_start(request: Request) -> Response:
    """The authorize_url of an OAuth start, opened in a browser signed in to the console as the same person."""
    viewer = await viewer_of(request)
    actor = viewer.principal if viewer else None
    if actor is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    url = await _do(services_of(request).oauth.redirect(actor, request.path_params["flow_id"]))
    return RedirectResponse(url, status_code=302)


@api.post(
    "/integrations/apps/{app}/connect", caller=person_of, body=ConnectBody, response=ConnectionOut, status=201,
    also={202: OAuthStarted}, errors=(404, 409), summary="Connect an app",
)  # fmt: skip
async def connect_app(request: Request, actor: Principal, body: ConnectBody) -> ConnectionOut | Reply:
    """With a key, password or SMTP login (setup): 201 and the connection, usable at once.

    With OAuth: 202 and an ``authorize_url`` to open in a browser signed in as you; the provider sends it back
    to the callback, which makes the connection. Workspace connections take an admin, or a member an admin
    trusted with the workspace's integrations.
    """
    services = services_of(request)
    app = request.path_params["app"]
    manifest = services.registry.manifests.get(app)
    method = body.method or (manifest.auth.type if manifest else None)
    if method == "oauth2":
        started = await _do(
            services.oauth.start(
                actor, app, scope=body.scope, label=body.label, setup=body.setup, return_to=body.return_to
            )
        )
        return Reply(202, OAuthStarted.model_validate(started))
    created = await _do(
        _integrations(request).connect(
            actor, app, scope=body.scope, method=body.method, label=body.label, setup=body.setup
        )
    )
    return ConnectionOut.model_validate(created)


@api.get("/integrations/{id}", caller=person_of, response=ConnectionOut, errors=(404,), summary="Get an integration")
async def get_integration(request: Request, actor: Principal) -> ConnectionOut:
    services = services_of(request)
    async with services.db.session() as session:
        row = await _do(_integrations(request).get(session, actor, request.path_params["id"], manage=False))
        return ConnectionOut.model_validate(connection_json(row, services.registry.manifests.get(row.app)))


@api.delete("/integrations/{id}", caller=person_of, status=204, errors=(404,), summary="Delete an integration")
async def delete_integration(request: Request, actor: Principal) -> None:
    """Remove the connection and its settings. Data synced into Harmony stays; nothing is deleted at the provider."""
    await _do(_integrations(request).delete(actor, request.path_params["id"]))


@api.post("/integrations/{id}/test", caller=person_of, response=TestResult, errors=(404,), summary="Test a connection")
async def test_integration(request: Request, actor: Principal) -> TestResult:
    """One cheap call to the provider: ok, or what kind of failure it was, in Companion's words."""
    return TestResult.model_validate(await _do(_integrations(request).test(actor, request.path_params["id"])))


@api.post(
    "/integrations/{id}/reauth", caller=person_of, body=ReauthBody, response=ConnectionOut, also={202: OAuthStarted},
    errors=(404, 409), summary="Re-authenticate a connection",
)  # fmt: skip
async def reauthenticate(request: Request, actor: Principal, body: ReauthBody) -> ConnectionOut | Reply:
    """OAuth: 202 and a new connect link for the same connection. Keys: the new key, stored in place."""
    services = services_of(request)
    connection_id = request.path_params["id"]
    async with services.db.session() as session:
        row = await _do(_integrations(request).get(session, actor, connection_id, manage=True))
    if row.auth_method == "oauth2":
        started = await _do(services.oauth.start(actor, row.app, connection_id=connection_id, return_to=body.return_to))
        return Reply(202, OAuthStarted.model_validate(started))
    if not body.setup:
        raise ApiError(
            422, "Invalid request: setup: give the new credentials", details={"fields": {"setup": "required"}}
        )
    updated = await _do(_integrations(request).update_credentials(actor, connection_id, body.setup))
    return ConnectionOut.model_validate(updated)


@api.put(
    "/integrations/{id}/credentials", caller=person_of, body=CredentialsBody, response=ConnectionOut,
    errors=(404, 409), summary="Replace a connection's key or password",
)  # fmt: skip
async def update_credentials(request: Request, actor: Principal, body: CredentialsBody) -> ConnectionOut:
    """Rotate an API key or password in place: settings, options and mappings stay."""
    updated = await _do(_integrations(request).update_credentials(actor, request.path_params["id"], body.setup))
    return ConnectionOut.model_validate(updated)


@api.patch(
    "/integrations/{id}/options", caller=person_of, body=OptionsBody, response=ConnectionOut, errors=(404,),
    summary="Change a connection's options",
)  # fmt: skip
async def set_options(request: Request, actor: Principal, body: OptionsBody) -> ConnectionOut:
    changed = await _do(_integrations(request).set_options(actor, request.path_params["id"], body.options))
    return ConnectionOut.model_validate(changed)


@api.get(
    "/integrations/{id}/options/{option}/choices", caller=person_of, response=ChoiceList, errors=(404, 502),
    summary="An option's current choices at the provider",
)  # fmt: skip
async def option_choices(request: Request, actor: Principal) -> ChoiceList:
    """What the provider offers for the option now, e.g. the calendars to pick from."""
    path = request.path_params
    found = await _do(_integrations(request).choices(actor, path["id"], path["option"]))
    return ChoiceList(data=found)


@api.get(
    "/integrations/{id}/mappings", caller=person_of, response=MappingsOut, errors=(404, 409),
    summary="A syncing connection's mappings",
)  # fmt: skip
async def get_mappings(request: Request, actor: Principal) -> MappingsOut:
    """How Harmony's fields and objects map onto the provider's, the sync's direction, and the choices there are."""
    services = services_of(request)
    integrations = _integrations(request)
    async with services.db.session() as session:
        row = await _do(integrations.get(session, actor, request.path_params["id"], manage=False))
    manifest = services.registry.manifests[row.app]
    if manifest.sync is None:
        raise ApiError(409, f"{manifest.name} does not sync, so it has no mappings.")
    return MappingsOut.model_validate(
        {
            **integrations.default_mappings(manifest),
            **(row.mappings or {}),
            "provider_fields": manifest.sync.provider_fields,
            "provider_objects": manifest.sync.provider_objects,
            "object": manifest.sync.object,
        }
    )


@api.patch(
    "/integrations/{id}/mappings", caller=person_of, body=MappingsBody, response=ConnectionOut, errors=(404, 409),
    summary="Change a syncing connection's mappings",
)  # fmt: skip
async def set_mappings(request: Request, actor: Principal, body: MappingsBody) -> ConnectionOut:
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise ApiError(422, "Invalid request: give objects, fields, direction or auto_sync", details={"fields": {}})
    changed = await _do(_integrations(request).set_mappings(actor, request.path_params["id"], changes))
    return ConnectionOut.model_validate(changed)


@api.post(
    "/integrations/{id}/sync", caller=person_of, body=SyncBody, response=SyncRunOut, status=202, errors=(404, 409),
    summary="Start a sync",
)  # fmt: skip
async def start_sync(request: Request, actor: Principal, body: SyncBody) -> SyncRunOut:
    """Starts a sync in the background (409 while one runs); its log entry shows when it ends."""
    run = await _do(services_of(request).sync.start(actor, request.path_params["id"], full=body.full))
    return SyncRunOut.model_validate(run)


@api.get("/integrations/{id}/sync/logs", caller=person_of, response=SyncRunList, errors=(404,), summary="Sync runs")
async def sync_logs(request: Request, actor: Principal) -> SyncRunList:
    """The connection's last 50 sync runs, newest first, with their counts and errors."""
    runs = await _do(_integrations(request).sync_logs(actor, request.path_params["id"]))
    return SyncRunList.model_validate({"data": runs})


@api.post(
    "/integrations/{id}/disconnect", caller=person_of, response=ConnectionOut, errors=(404,),
    summary="Disconnect an integration",
)  # fmt: skip
async def disconnect_integration(request: Request, actor: Principal) -> ConnectionOut:
    """Stop sync and delete the credentials; keep the settings, the mappings and the data synced so far."""
    return ConnectionOut.model_validate(await _do(_integrations(request).disconnect(actor, request.path_params["id"])))

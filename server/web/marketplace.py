"""The Marketplace: the apps there are (Apps), the ones connected (Installed) and the AI models (Models).

Connecting starts here. An OAuth app opens its provider in a popup; the
provider comes back to ``/marketplace/connected``, which tells the page that
opened it. An app with an API key or other setup fields is connected with a
form built from its manifest. Every step goes through the same services as
the REST API, with the signed-in person's principal.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from server.browser_session import Viewer, flash
from server.http_status import status_of
from server.services.ai_models import AiModel, ModelsFileError, catalogue_of, set_model_enabled, workspace_models
from server.services.integrations.lifecycle import IntegrationError, connection_json
from server.web.pages import Refused, form_of, is_htmx, page, redirect, render, require_admin, services_of
from server.web.people_lookup import people_by_id
from store.models import Connection, ConnectionScope, ConnectionStatus
from store.principal import Principal
from tools.manifest import Manifest, Risk, SetupField

CONNECTED_PATH = "/marketplace/connected"
TONES = 8
RISK_ORDER = tuple(Risk)
METHOD_NAMES = {"oauth2": "OAuth", "api_key": "API key", "basic": "User name and password", "smtp": "Mail server"}


# -- how an app looks, here and on its integration page ----------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """The coloured letter tile that stands in for an app's logo."""

    letters: str
    tone: int


def tile_of(app_id: str, name: str) -> Tile:
    words = re.findall(r"[A-Za-z0-9]+", name) or [app_id]
    letters = (words[0][0] + (words[1][0] if len(words) > 1 else "")).upper()
    # A stable hash, so an app keeps its colour across restarts and replicas.
    return Tile(letters, zlib.crc32(app_id.encode()) % TONES)


def short_scope(scope: str) -> str:
    """An OAuth scope as people read it: Google's URL scopes by their last part."""
    return scope.rsplit("/", 1)[-1] if scope.startswith("https://") else scope


def viewer_scopes(manifest: Manifest, principal: Principal) -> list[str]:
    """The scopes this person may connect the app under: workspace ones need the integration permission."""
    return [s for s in manifest.scopes if s == "personal" or principal.may_manage_workspace_integrations]


@dataclass(frozen=True)
class AppCard:
    """One app as the Marketplace shows it; ``info`` is the service's ``app_json``."""

    info: dict[str, Any]
    manifest: Manifest
    scopes: list[str]
    installed: int

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def tile(self) -> Tile:
        return tile_of(self.manifest.id, self.manifest.name)

    @property
    def oauth_scopes(self) -> list[str]:
        oauth2 = self.manifest.auth.oauth2
        return [short_scope(s) for s in oauth2.scopes] if oauth2 else []

    @property
    def oauth_ready(self) -> bool:
        return self.info["oauth_configured"] is not False

    @property
    def connectable(self) -> bool:
        """Whether any way to connect works on this server (OAuth needs a registered client)."""
        return any(m != "oauth2" or self.oauth_ready for m in self.manifest.auth.methods)

    @property
    def access(self) -> list[tuple[str, str]]:
        """What connecting asks for, one line per way to connect."""
        lines = []
        for method in self.manifest.auth.methods:
            fields = self.manifest.auth.fields_for(method)
            # What a person must bring: fields with defaults or marked optional are left out of the summary.
            needed = [f for f in fields if f.required and f.default is None] or fields
            labels = ", ".join(f.label for f in needed)
            if method == "oauth2":
                granted = ", ".join(self.oauth_scopes) or "the provider's default access"
                labels = granted + (f"; asks for {labels}" if labels else "")
            lines.append((METHOD_NAMES.get(method, method), labels))
        return lines

    @property
    def risks(self) -> list[tuple[str, int]]:
        counts = Counter(t["risk"] for t in self.info["tools"])
        return [(risk.value, counts[risk.value]) for risk in RISK_ORDER if counts[risk.value]]

    @property
    def quick_oauth(self) -> bool:
        """Connect straight from the card: OAuth only, nothing to fill in, one scope to choose."""
        auth = self.manifest.auth
        return (
            auth.methods == ["oauth2"] and not auth.fields_for("oauth2") and len(self.scopes) == 1 and self.oauth_ready
        )

    def matches(self, query: str) -> bool:
        text = " ".join(
            [self.manifest.name, self.manifest.description, self.manifest.category]
            + [t["title"] for t in self.info["tools"]]
        ).lower()
        return all(word in text for word in query.lower().split())


async def names_of(session: AsyncSession, user_ids: Iterable[str | None]) -> dict[str, str]:
    """People's names (or e-mail addresses) by id, for "connected by" and "changed by"."""
    return {user_id: person.label for user_id, person in (await people_by_id(session, user_ids)).items()}


# -- turning a posted form into setup values -----------------------------------------------------------------------


def setup_values(fields: Iterable[SetupField], form: FormData, prefix: str) -> dict[str, Any]:
    """The values of ``fields`` in a posted form (inputs named ``<prefix><name>``), typed as the manifest says.

    An empty input is left out, so the service reports a required one as required.
    A value that does not parse is passed on as typed, for the service to name.
    """
    values: dict[str, Any] = {}
    for field in fields:
        key = prefix + field.name
        if field.type == "multiselect":
            values[field.name] = [str(v) for v in form.getlist(key)]
        elif field.type == "boolean":
            # A hidden "false" precedes the checkbox, so an unticked box still says so.
            values[field.name] = "true" in form.getlist(key)
        else:
            raw = str(form.get(key) or "").strip()
            if raw:
                values[field.name] = int(raw) if field.type == "integer" and re.fullmatch(r"-?\d+", raw) else raw
    return values


def typed_back(fields: Iterable[SetupField], form: FormData, prefix: str) -> dict[str, Any]:
    """What a person typed, to show again beside the errors; secrets are never sent back to the browser."""
    return {
        f.name: (form.getlist(prefix + f.name) if f.type == "multiselect" else form.get(prefix + f.name))
        for f in fields
        if f.type != "secret"
    }


FIELD_KEYS = ("setup.", "options.", "fields.", "objects.", "direction")


def summary_of(exc: IntegrationError) -> str:
    """The message above a form. Problems the form shows beside their fields need only a pointer to them."""
    if exc.fields and all(key.startswith(FIELD_KEYS) for key in exc.fields):
        return f"Nothing was saved: fix the field{'s' if len(exc.fields) > 1 else ''} marked below."
    return str(exc)


def wants_json(request: Request) -> bool:
    """The popup script asks for the connect link as JSON; a plain form post follows a redirect."""
    return "application/json" in request.headers.get("accept", "")


# -- Apps -------------------------------------------------------------------------------------------------------------


async def _apps(request: Request, viewer: Viewer) -> tuple[list[AppCard], list[Connection]]:
    """Every app as a card, and the connections this person can see (the workspace's and their own)."""
    services = services_of(request)
    async with services.db.session() as session:
        rows = await services.integrations.installed(session, viewer.principal)
    live = Counter(r.app for r in rows if r.status is not ConnectionStatus.DISCONNECTED)
    cards = [
        AppCard(info, manifest, viewer_scopes(manifest, viewer.principal), live[info["id"]])
        for info in services.integrations.available()
        for manifest in [services.registry.manifests[info["id"]]]
    ]
    return cards, rows


def _filter_link(query: str, category: str) -> str:
    """The Apps tab with a search and a category, as a plain link (the filters work without JavaScript)."""
    params = {k: v for k, v in (("q", query), ("category", category)) if v}
    return "/marketplace" + (f"?{urlencode(params)}" if params else "")


@page
async def apps_tab(request: Request, viewer: Viewer) -> Response:
    cards, _ = await _apps(request, viewer)
    query = request.query_params.get("q", "").strip()
    category = request.query_params.get("category", "")
    counts = Counter(c.manifest.category for c in cards)
    shown = [c for c in cards if (not category or c.manifest.category == category) and c.matches(query)]
    return render(
        request,
        "marketplace_apps.html",
        viewer,
        tab="apps",
        cards=shown,
        query=query,
        category=category,
        filters=[("All apps", len(cards), _filter_link(query, ""), not category)]
        + [(name, count, _filter_link(query, name), name == category) for name, count in sorted(counts.items())],
    )


def _manifest(request: Request) -> Manifest:
    try:
        return services_of(request).integrations.manifest(request.path_params["app"])
    except IntegrationError as exc:
        raise Refused(status_of(exc), str(exc), "Not found") from None


async def _app_page(
    request: Request,
    viewer: Viewer,
    manifest: Manifest,
    *,
    status: int = 200,
    error: str | None = None,
    errors: dict[str, str] | None = None,
    method: str | None = None,
    values: dict[str, Any] | None = None,
) -> Response:
    cards, rows = await _apps(request, viewer)
    card = next(c for c in cards if c.id == manifest.id)
    return render(
        request,
        "marketplace_app.html",
        viewer,
        status=status,
        tab="apps",
        card=card,
        connections=[connection_json(r, manifest) for r in rows if r.app == manifest.id],
        error=error,
        errors=errors or {},
        failed_method=method,
        values=values or {},
    )


@page
async def app_page(request: Request, viewer: Viewer) -> Response:
    return await _app_page(request, viewer, _manifest(request))


@page
async def connect(request: Request, viewer: Viewer) -> Response:
    """Connect an app: OAuth hands back the provider's link (popup or redirect); other methods connect at once."""
    form = await form_of(request)
    services = services_of(request)
    manifest = _manifest(request)
    method = str(form.get("method") or manifest.auth.type)
    fields = manifest.auth.fields_for(method)
    scope = str(form.get("scope") or "") or None
    label = str(form.get("label") or "").strip()[:200]
    setup = setup_values(fields, form, "setup.")
    try:
        if method == "oauth2":
            started = await services.oauth.start(
                viewer.principal, manifest.id, scope=scope, label=label, setup=setup, return_to=CONNECTED_PATH
            )
        else:
            created = await services.integrations.connect(
                viewer.principal, manifest.id, scope=scope, method=method, label=label, setup=setup
            )
    except IntegrationError as exc:
        if wants_json(request):
            return JSONResponse({"error": str(exc), "fields": exc.fields}, status_code=status_of(exc))
        return await _app_page(
            request,
            viewer,
            manifest,
            status=status_of(exc),
            error=summary_of(exc),
            errors=exc.fields,
            method=method,
            values={**typed_back(fields, form, "setup."), "label": label, "scope": scope},
        )
    if method == "oauth2":
        if wants_json(request):
            return JSONResponse({"authorize_url": started["authorize_url"]})
        return RedirectResponse(started["authorize_url"], status_code=303)
    flash(request, f"{manifest.name} is connected. Its tools are available to Companion now.")
    return redirect(f"/integrations/{created['id']}")


@page
async def connected(request: Request, viewer: Viewer) -> Response:
    """Where the provider's sign-in ends: tells the page that opened the popup, which then shows the integration."""
    services = services_of(request)
    if request.query_params.get("failed"):
        return render(request, "marketplace_connected.html", viewer, status=400, failed=True)
    try:
        async with services.db.session() as session:
            row = await services.integrations.get(
                session, viewer.principal, request.query_params.get("connected", ""), manage=False
            )
    except IntegrationError as exc:
        raise Refused(status_of(exc), str(exc), "Not found") from None
    return render(
        request,
        "marketplace_connected.html",
        viewer,
        connection=connection_json(row, services.registry.manifests[row.app]),
    )


# -- Installed ------------------------------------------------------------------------------------------------------


@page
async def installed_tab(request: Request, viewer: Viewer) -> Response:
    services = services_of(request)
    async with services.db.session() as session:
        rows = await services.integrations.installed(session, viewer.principal)
        names = await names_of(session, [r.created_by or r.user_id for r in rows])
    manifests = services.registry.manifests
    entries = [
        {
            **connection_json(row, manifests[row.app]),
            "tile": tile_of(row.app, manifests[row.app].name),
            "by": names.get(row.created_by or row.user_id or "", "someone no longer here"),
        }
        for row in rows
        # An app this server no longer offers has no page to manage it on (the service hides it too).
        if row.app in manifests
    ]
    return render(
        request,
        "marketplace_installed.html",
        viewer,
        tab="installed",
        workspace=[e for e in entries if e["scope"] == ConnectionScope.WORKSPACE.value],
        personal=[e for e in entries if e["scope"] == ConnectionScope.PERSONAL.value],
    )


# -- Models ---------------------------------------------------------------------------------------------------------


def _catalogue(request: Request) -> tuple[AiModel, ...]:
    try:
        return catalogue_of(services_of(request).settings)
    except ModelsFileError as exc:
        raise Refused(500, str(exc), "The models file cannot be used") from None


async def _models_page(request: Request, viewer: Viewer) -> Response:
    services = services_of(request)
    catalogue = _catalogue(request)
    async with services.db.session() as session:
        choices = await workspace_models(session, viewer.principal.workspace_id, catalogue)
        names = await names_of(session, [c.changed_by for c in choices])
    return render(request, "marketplace_models.html", viewer, tab="models", choices=choices, names=names)


@page
async def models_tab(request: Request, viewer: Viewer) -> Response:
    return await _models_page(request, viewer)


@page
async def toggle_model(request: Request, viewer: Viewer) -> Response:
    """An admin turns a model on or off for the workspace; htmx swaps the list in place."""
    form = await form_of(request)
    require_admin(viewer, "which AI models Companion may use")
    services = services_of(request)
    enabled = form.get("enabled") == "true"
    try:
        async with services.db.transaction() as session:
            choice = await set_model_enabled(
                session,
                viewer.principal.workspace_id,
                _catalogue(request),
                request.path_params["model_id"],
                enabled=enabled,
                by=viewer.principal.user_id,
            )
    except LookupError as exc:
        raise Refused(404, str(exc), "Not found") from None
    if is_htmx(request):
        return await _models_page(request, viewer)
    flash(request, f"{choice.model.name} is now {'on' if enabled else 'off'} for Companion here.")
    return redirect("/marketplace/models")


routes = [
    Route("/marketplace", apps_tab, methods=["GET"]),
    Route("/marketplace/installed", installed_tab, methods=["GET"]),
    Route("/marketplace/models", models_tab, methods=["GET"]),
    Route("/marketplace/models/{model_id}", toggle_model, methods=["POST"]),
    Route(CONNECTED_PATH, connected, methods=["GET"]),
    Route("/marketplace/apps/{app}", app_page, methods=["GET"]),
    Route("/marketplace/apps/{app}/connect", connect, methods=["POST"]),
]

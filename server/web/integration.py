"""One connected app's page: test it, re-authenticate, rotate its key, configure, sync, disconnect, delete.

Each action is a form post (htmx improves a few) handled by the same services
as the REST API, with the signed-in person's principal; a refused step shows
the page again with the service's message, beside the field it names.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from approvals import whatif
from server.browser_session import Viewer, flash
from server.http_status import status_of
from server.services.integrations.lifecycle import HARMONY_FIELDS, IntegrationError, connection_json
from server.web.marketplace import (
    CONNECTED_PATH,
    METHOD_NAMES,
    names_of,
    setup_values,
    summary_of,
    tile_of,
    typed_back,
    wants_json,
)
from server.web.pages import Refused, form_of, is_htmx, page, redirect, render, services_of
from store.models import Connection, ConnectionScope, ConnectionStatus
from store.principal import Principal
from tools.manifest import Manifest, SetupField

LOGS_PER_PAGE = 10
EFFECTS = {
    "allow": ("Runs without asking", "ok"),
    "ask": ("Asks first", "warn"),
    "deny": ("Blocked", "bad"),
}
DIRECTIONS = {
    "bidirectional": "Both ways",
    "to_harmony": "Into Harmony only",
    "to_provider": "From Harmony to {app} only",
}
SECRET_NAMES = {"api_key": "API key", "basic": "password", "smtp": "mail password"}


def _id(request: Request) -> str:
    return str(request.path_params["connection_id"])


async def _visible(request: Request, viewer: Viewer) -> Connection:
    """The connection, if this person may see it; otherwise the page is a 404."""
    services = services_of(request)
    try:
        async with services.db.session() as session:
            return await services.integrations.get(session, viewer.principal, _id(request), manage=False)
    except IntegrationError as exc:
        raise Refused(status_of(exc), str(exc), "Not found") from None


def _may_manage(viewer: Viewer, row: Connection) -> bool:
    """Whether the buttons that change the connection apply to this person (the services check again)."""
    return row.scope is ConnectionScope.PERSONAL or viewer.principal.may_manage_workspace_integrations


# -- what the page shows ------------------------------------------------------------------------------------------


async def _tools(request: Request, principal: Principal, row: Connection) -> list[dict[str, Any]]:
    """The app's tools, each with the decision a call would get from this person now (the rules' explain)."""
    services = services_of(request)
    shown = []
    for tool in services.registry.tools_of(row.app):
        decision = (
            await whatif.explain(
                services.rulebook, principal, tool=tool.name, arguments={}, connection_scope=row.scope.value
            )
        ).decision
        label, tone = EFFECTS[decision.effect.value]
        shown.append(
            {
                "name": tool.name,
                "title": tool.spec.title,
                "description": tool.spec.description,
                "risk": tool.risk.value,
                "effect": decision.effect.value,
                "effect_label": label,
                "effect_tone": tone,
                "reasons": list(decision.reasons),
                "out_of_band": decision.require_out_of_band,
            }
        )
    return shown


def _choice_list(field: SetupField, selected: list[str], fetched: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Checkboxes for a multiselect option: the provider's list once refreshed, and every id already picked."""
    offered: list[dict[str, Any]]
    if field.options:
        offered = [{"id": option, "label": option} for option in field.options]
    elif fetched is not None:
        offered = [
            {
                "id": str(c["id"]),
                "label": c.get("label") or c.get("summary") or str(c["id"]),
                "primary": c.get("primary"),
            }
            for c in fetched
        ]
    else:
        offered = []
    known = {c["id"] for c in offered}
    gone = [{"id": s, "label": s, "missing": fetched is not None} for s in selected if s not in known]
    return [{**c, "checked": c["id"] in selected} for c in offered] + [{**c, "checked": True} for c in gone]


def _options(
    manifest: Manifest,
    row: Connection,
    values: dict[str, Any],
    fetched: dict[str, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    current = {**(row.options or {}), **values}
    return [
        {
            "field": field,
            "value": current.get(field.name, field.default),
            "choices": _choice_list(field, list(current.get(field.name) or []), fetched.get(field.name))
            if field.type == "multiselect"
            else [],
            "refreshable": field.choices_from is not None,
            "refreshed": field.name in fetched,
        }
        for field in manifest.options
    ]


def _mapping_form(request: Request, manifest: Manifest, row: Connection, values: dict[str, Any]) -> dict[str, Any]:
    """The sync settings and the choices that are valid for them: only the fields and objects each side has."""
    assert manifest.sync is not None
    sync = manifest.sync
    current = {**services_of(request).integrations.default_mappings(manifest), **(row.mappings or {}), **values}
    directions = ["to_harmony"] + (["bidirectional", "to_provider"] if sync.push else [])
    return {
        "object": sync.object,
        "direction": current.get("direction"),
        "directions": [(d, DIRECTIONS[d].format(app=manifest.name)) for d in directions],
        "auto_sync": bool(current.get("auto_sync")),
        "provider_objects": sync.provider_objects,
        "mapped_object": (current.get("objects") or {}).get(sync.object),
        # Field mappings matter for records Harmony stores field by field; users are matched by e-mail alone.
        "harmony_fields": HARMONY_FIELDS[sync.object] if sync.default_mappings else (),
        "provider_fields": sync.provider_fields,
        "fields": current.get("fields") or {},
    }


async def _logs(request: Request, principal: Principal, row: Connection) -> dict[str, Any]:
    """One page of sync runs, newest first."""
    try:
        number = max(1, int(request.query_params.get("logs", "1")))
    except ValueError:
        number = 1
    runs = await services_of(request).integrations.sync_logs(principal, row.id, limit=number * LOGS_PER_PAGE + 1)
    start = (number - 1) * LOGS_PER_PAGE
    return {"runs": runs[start : start + LOGS_PER_PAGE], "page": number, "more": len(runs) > number * LOGS_PER_PAGE}


async def _show(
    request: Request,
    viewer: Viewer,
    *,
    status: int = 200,
    error: str | None = None,
    errors: dict[str, str] | None = None,
    section: str | None = None,
    values: dict[str, Any] | None = None,
    fetched: dict[str, list[dict[str, Any]]] | None = None,
) -> Response:
    """The page; after a refused step, with its message and what the person typed into ``section``."""
    services = services_of(request)
    principal = viewer.principal
    row = await _visible(request, viewer)
    manifest = services.registry.manifests[row.app]
    async with services.db.session() as session:
        names = await names_of(session, [row.created_by or row.user_id])
    typed = values if values is not None else {}
    uses_key = row.auth_method not in ("oauth2", "none")
    return render(
        request,
        "integration.html",
        viewer,
        status=status,
        connection=connection_json(row, manifest),
        manifest=manifest,
        tile=tile_of(manifest.id, manifest.name),
        connected_by=names.get(row.created_by or row.user_id or "", "someone no longer here"),
        may_manage=_may_manage(viewer, row),
        disconnected=row.status is ConnectionStatus.DISCONNECTED,
        uses_key=uses_key,
        method_name=METHOD_NAMES.get(row.auth_method, row.auth_method),
        secret_name=SECRET_NAMES.get(row.auth_method, "credentials"),
        credential_fields=manifest.auth.fields_for(row.auth_method) if uses_key else [],
        credential_values={**(row.setup or {}), **(typed if section == "credentials" else {})},
        options=_options(manifest, row, typed if section == "options" else {}, fetched or {}),
        mapping=_mapping_form(request, manifest, row, typed if section == "mappings" else {})
        if manifest.sync
        else None,
        synced_users=(row.options or {}).get("synced_users") or {},
        tools=await _tools(request, principal, row),
        logs=await _logs(request, principal, row) if manifest.sync else None,
        error=error,
        errors=errors or {},
    )


async def _refused_here(request: Request, viewer: Viewer, exc: IntegrationError, **shown: Any) -> Response:
    """A step the service refused: the page again, with the message and the right status."""
    if status_of(exc) == 404:
        raise Refused(404, str(exc), "Not found")
    return await _show(request, viewer, status=status_of(exc), error=summary_of(exc), errors=exc.fields, **shown)


@page
async def detail(request: Request, viewer: Viewer) -> Response:
    return await _show(request, viewer)


# -- actions ------------------------------------------------------------------------------------------------------


@page
async def test(request: Request, viewer: Viewer) -> Response:
    await form_of(request)
    try:
        result = await services_of(request).integrations.test(viewer.principal, _id(request))
    except IntegrationError as exc:
        return await _refused_here(request, viewer, exc)
    if is_htmx(request):
        return render(request, "_integration_test.html", viewer, result=result, connection_id=_id(request))
    flash(request, result["message"], "notice" if result["ok"] else "error")
    return redirect(f"/integrations/{_id(request)}")


@page
async def reauth(request: Request, viewer: Viewer) -> Response:
    """OAuth: a new sign-in at the provider, in a popup like connecting. A key: the form on the page."""
    await form_of(request)
    row = await _visible(request, viewer)
    if row.auth_method != "oauth2":
        return redirect(f"/integrations/{row.id}#credentials")
    try:
        started = await services_of(request).oauth.start(
            viewer.principal, row.app, connection_id=row.id, return_to=CONNECTED_PATH
        )
    except IntegrationError as exc:
        if wants_json(request):
            return JSONResponse({"error": str(exc), "fields": exc.fields}, status_code=status_of(exc))
        return await _refused_here(request, viewer, exc)
    if wants_json(request):
        return JSONResponse({"authorize_url": started["authorize_url"]})
    return RedirectResponse(started["authorize_url"], status_code=303)


@page
async def credentials(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    services = services_of(request)
    row = await _visible(request, viewer)
    fields = services.registry.manifests[row.app].auth.fields_for(row.auth_method)
    try:
        await services.integrations.update_credentials(viewer.principal, row.id, setup_values(fields, form, "setup."))
    except IntegrationError as exc:
        return await _refused_here(
            request, viewer, exc, section="credentials", values=typed_back(fields, form, "setup.")
        )
    flash(request, f"New {SECRET_NAMES.get(row.auth_method, 'credentials')} saved. {row.label} is active.")
    return redirect(f"/integrations/{row.id}")


@page
async def options(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    services = services_of(request)
    row = await _visible(request, viewer)
    fields = services.registry.manifests[row.app].options
    values = setup_values(fields, form, "options.")
    try:
        await services.integrations.set_options(viewer.principal, row.id, values)
    except IntegrationError as exc:
        return await _refused_here(request, viewer, exc, section="options", values=typed_back(fields, form, "options."))
    flash(request, "Configuration saved.")
    return redirect(f"/integrations/{row.id}#configuration")


def _mapping_changes(manifest: Manifest, form: Any) -> dict[str, Any]:
    """The posted sync settings, in the shape ``set_mappings`` takes."""
    assert manifest.sync is not None
    sync = manifest.sync
    changes: dict[str, Any] = {"auto_sync": "true" in form.getlist("auto_sync")}
    if form.get("direction"):
        changes["direction"] = str(form["direction"])
    if sync.provider_objects and form.get(f"objects.{sync.object}"):
        changes["objects"] = {sync.object: str(form[f"objects.{sync.object}"])}
    if sync.default_mappings:
        picked = {name: str(form.get(f"fields.{name}") or "") for name in HARMONY_FIELDS[sync.object]}
        changes["fields"] = {name: field for name, field in picked.items() if field}
    return changes


@page
async def mappings(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    services = services_of(request)
    row = await _visible(request, viewer)
    manifest = services.registry.manifests[row.app]
    if manifest.sync is None:
        raise Refused(409, f"{manifest.name} does not sync, so it has no mappings.", "Nothing to map")
    changes = _mapping_changes(manifest, form)
    try:
        await services.integrations.set_mappings(viewer.principal, row.id, changes)
    except IntegrationError as exc:
        return await _refused_here(request, viewer, exc, section="mappings", values=changes)
    flash(request, "Sync settings saved.")
    return redirect(f"/integrations/{row.id}#sync")


@page
async def sync(request: Request, viewer: Viewer) -> Response:
    await form_of(request)
    try:
        await services_of(request).sync.start(viewer.principal, _id(request), full=True)
    except IntegrationError as exc:
        return await _refused_here(request, viewer, exc)
    flash(request, "Full sync started. It runs in the background; its log appears below when it ends.")
    return redirect(f"/integrations/{_id(request)}#sync-logs")


@page
async def disconnect(request: Request, viewer: Viewer) -> Response:
    await form_of(request)
    services = services_of(request)
    try:
        gone = await services.integrations.disconnect(viewer.principal, _id(request))
    except IntegrationError as exc:
        return await _refused_here(request, viewer, exc)
    flash(request, f"{gone['label']} is disconnected. Its settings and the data it synced are kept.")
    return redirect(f"/integrations/{gone['id']}")


@page
async def delete(request: Request, viewer: Viewer) -> Response:
    await form_of(request)
    services = services_of(request)
    row = await _visible(request, viewer)
    try:
        await services.integrations.delete(viewer.principal, row.id)
    except IntegrationError as exc:
        return await _refused_here(request, viewer, exc)
    flash(request, f"{row.label} is deleted. Data it synced into Harmony stays.")
    return redirect("/marketplace/installed")


async def _option_fragment(
    request: Request,
    viewer: Viewer,
    option: str,
    found: list[dict[str, Any]] | None,
    *,
    status: int = 200,
    problem: str | None = None,
) -> Response:
    """Just the option's fieldset, for htmx to swap in place."""
    services = services_of(request)
    row = await _visible(request, viewer)
    manifest = services.registry.manifests[row.app]
    shown = _options(manifest, row, {}, {option: found} if found is not None else {})
    return render(
        request,
        "_integration_option.html",
        viewer,
        status=status,
        item=next(o for o in shown if o["field"].name == option),
        connection=connection_json(row, manifest),
        may_manage=_may_manage(viewer, row),
        choices_error=problem,
        errors={},
    )


@page
async def refresh_choices(request: Request, viewer: Viewer) -> Response:
    """Refresh list: the provider's current choices for an option, e.g. the calendars to pick from."""
    option = str(request.path_params["option"])
    try:
        found = await services_of(request).integrations.choices(viewer.principal, _id(request), option)
    except IntegrationError as exc:
        if status_of(exc) == 404 or not is_htmx(request):
            return await _refused_here(request, viewer, exc)
        return await _option_fragment(request, viewer, option, None, status=status_of(exc), problem=str(exc))
    if is_htmx(request):
        return await _option_fragment(request, viewer, option, found)
    return await _show(request, viewer, fetched={option: found})


routes = [
    Route("/integrations/{connection_id}", detail, methods=["GET"]),
    Route("/integrations/{connection_id}/test", test, methods=["POST"]),
    Route("/integrations/{connection_id}/reauth", reauth, methods=["POST"]),
    Route("/integrations/{connection_id}/credentials", credentials, methods=["POST"]),
    Route("/integrations/{connection_id}/options", options, methods=["POST"]),
    Route("/integrations/{connection_id}/options/{option}/choices", refresh_choices, methods=["GET"]),
    Route("/integrations/{connection_id}/mappings", mappings, methods=["POST"]),
    Route("/integrations/{connection_id}/sync", sync, methods=["POST"]),
    Route("/integrations/{connection_id}/disconnect", disconnect, methods=["POST"]),
    Route("/integrations/{connection_id}/delete", delete, methods=["POST"]),
]

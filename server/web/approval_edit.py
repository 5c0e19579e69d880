"""Edit before approving, in the console: a form built from the tool's input schema, filled with the call as the
assistant asked it, that approves the call as the person corrected it.

One field per argument the schema declares: text (a text area for long text), whole numbers and numbers, yes or
no, a choice among the schema's values, a list of texts (one per line), and JSON for anything nested. A field left
empty is an argument left out. What the person submits goes through the edit use case
(``server.services.approval_edit``), which checks it as a call's arguments are checked; a refusal comes back beside
the field it names, with everything as typed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from approvals import lifecycle
from server.browser_session import Viewer, flash
from server.services.approval_edit import edit_elsewhere, may_edit
from server.services.approval_flow import DecisionRefused, approval_view, visible_to
from server.web.pages import Refused, form_of, page, redirect, render, services_of
from store.models import Approval, ApprovalStatus
from tools.registry import RegisteredTool

# Arguments that hold prose (by a word of their name: body_text, description): a text area, whatever their length.
PROSE = frozenset({"body", "text", "description", "content", "message", "html", "notes", "comment", "summary"})
LONG_TEXT = 100


@dataclass(frozen=True)
class Field:
    """One argument as the form shows it; ``value`` is the text in the control."""

    name: str
    label: str
    kind: str  # text, long, integer, number, boolean, choice, lines, json
    value: str
    required: bool
    hint: str = ""
    choices: tuple[str, ...] = ()
    checked: bool = False
    error: str = ""


def _kind(name: str, schema: dict[str, Any], value: Any) -> str:
    declared = schema.get("type")
    if "enum" in schema and all(isinstance(choice, str) for choice in schema["enum"]):
        return "choice"
    if declared == "string":
        prose = bool(PROSE & set(name.split("_")))
        long = prose or (isinstance(value, str) and ("\n" in value or len(value) > LONG_TEXT))
        return "long" if long else "text"
    if declared in ("integer", "number", "boolean"):
        return str(declared)
    if declared == "array" and (schema.get("items") or {}).get("type") == "string":
        return "lines"
    return "json"


def _text(kind: str, value: Any) -> str:
    if value is None:
        return ""
    if kind == "lines":
        return "\n".join(str(item) for item in value) if isinstance(value, list) else json.dumps(value)
    if kind in ("text", "long", "choice"):
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if kind in ("integer", "number"):
        return json.dumps(value)
    return json.dumps(value, indent=2, ensure_ascii=False)


def fields_of(tool: RegisteredTool, arguments: dict[str, Any]) -> list[Field]:
    """The form's fields, in the schema's order, then any argument the schema does not name (as JSON)."""
    schema = tool.spec.input_schema
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    fields = []
    for name in [*properties, *(name for name in arguments if name not in properties)]:
        spec = properties.get(name, {})
        value = arguments.get(name)
        kind = _kind(name, spec, value)
        fields.append(
            Field(
                name=name,
                label=name.replace("_", " ").capitalize(),
                kind=kind,
                value=_text(kind, value),
                required=name in required,
                hint=_hint(spec, kind),
                choices=tuple(spec.get("enum", ())) if kind == "choice" else (),
                checked=value is True,
            )
        )
    return fields


def _hint(spec: dict[str, Any], kind: str) -> str:
    words = {"lines": "One per line.", "json": "JSON.", "boolean": ""}.get(kind, "")
    description = str(spec.get("description") or "").strip()
    if description and words and description[-1] not in ".!?":
        description += "."
    return " ".join(part for part in (description, words) if part)


def arguments_from(form: FormData, fields: list[Field]) -> tuple[dict[str, Any], dict[str, str]]:
    """The arguments the form says, and the fields it cannot say anything with (by name)."""
    arguments: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for field in fields:
        key = f"arg.{field.name}"
        if field.kind == "boolean":
            if form.get(f"present.{field.name}") is not None:
                arguments[field.name] = form.get(key) == "on"
            continue
        raw = str(form.get(key) or "")
        if not raw.strip():
            continue
        try:
            arguments[field.name] = _parsed(field.kind, raw)
        except ValueError as exc:
            problems[field.name] = str(exc)
    return arguments, problems


def _parsed(kind: str, raw: str) -> Any:
    if kind in ("text", "long", "choice"):
        # A browser sends CRLF line ends; the assistant's text has LF.
        return raw.replace("\r\n", "\n")
    if kind == "lines":
        return [line.strip() for line in raw.splitlines() if line.strip()]
    if kind == "integer":
        try:
            return int(raw.strip())
        except ValueError:
            raise ValueError("enter a whole number") from None
    if kind == "number":
        try:
            number = float(raw.strip())
        except ValueError:
            raise ValueError("enter a number") from None
        return int(number) if number.is_integer() and "." not in raw else number
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg}, line {exc.lineno})") from None


def _with_errors(fields: list[Field], form: FormData | None, errors: dict[str, str]) -> list[Field]:
    """The fields as the person left them, each with the problem that names it."""
    shown = []
    for field in fields:
        value, checked = field.value, field.checked
        if form is not None:
            value = str(form.get(f"arg.{field.name}") or "")
            checked = form.get(f"arg.{field.name}") == "on"
        error = next((problem for name, problem in errors.items() if name.split(".")[0] == field.name), "")
        shown.append(Field(**{**field.__dict__, "value": value, "checked": checked, "error": error}))
    return shown


async def _editable(request: Request, viewer: Viewer) -> tuple[Approval, RegisteredTool]:
    services = services_of(request)
    async with services.db.transaction() as session:
        await lifecycle.expire_due(session, workspace_id=viewer.principal.workspace_id)
        approval = await session.get(Approval, request.path_params["approval_id"])
    if approval is None or approval.workspace_id != viewer.principal.workspace_id:
        raise Refused(404, "There is no such approval that you can see.", "Not found")
    if not visible_to(approval, viewer.principal):
        raise Refused(404, "There is no such approval that you can see.", "Not found")
    tool = services.registry.tools.get(approval.tool)
    if tool is None:
        raise Refused(409, "This tool is no longer installed; deny the call instead.", "Cannot change")
    return approval, tool


def _page(
    request: Request,
    viewer: Viewer,
    approval: Approval,
    tool: RegisteredTool,
    fields: list[Field],
    *,
    status: int = 200,
    message: str = "",
) -> Response:
    services = services_of(request)
    view = approval_view(services.flow, services.registry.tools, approval)
    editable = approval.status is ApprovalStatus.PENDING and view["status"] == "pending"
    return render(
        request,
        "approval_edit.html",
        viewer,
        status=status,
        card=view,
        tool=tool,
        fields=fields,
        editable=editable and may_edit(approval, viewer.principal),
        message=message,
    )


@page
async def edit_form(request: Request, viewer: Viewer) -> Response:
    approval, tool = await _editable(request, viewer)
    arguments = lifecycle.arguments_of(services_of(request).box, approval)
    return _page(request, viewer, approval, tool, fields_of(tool, arguments))


@page
async def edit(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    approval, tool = await _editable(request, viewer)
    services = services_of(request)
    fields = fields_of(tool, lifecycle.arguments_of(services.box, approval))
    arguments, problems = arguments_from(form, fields)
    if problems:
        message = "Some fields cannot be read; nothing was approved."
        return _page(request, viewer, approval, tool, _with_errors(fields, form, problems), status=422, message=message)
    try:
        await edit_elsewhere(
            services.flow, services.registry.tools, viewer.principal, approval.id, arguments, via="web"
        )
    except DecisionRefused as exc:
        status = {"not_found": 404, "forbidden": 403, "invalid": 422}.get(exc.code, 409)
        shown = _with_errors(fields, form, exc.fields)
        return _page(request, viewer, approval, tool, shown, status=status, message=f"Not approved: {exc}")
    flash(request, "Approved with your changes. The assistant's call runs the changed version when it asks again.")
    return redirect(f"/approvals/{approval.id}")


routes = [
    Route("/approvals/{approval_id}/edit", edit_form, methods=["GET"]),
    Route("/approvals/{approval_id}/edit", edit, methods=["POST"]),
]

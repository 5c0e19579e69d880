"""Explain: what a call would get right now, and which rules said so, in plain words.

Admins may ask about any member; members only about themselves (as the API
allows). The question is a GET: it changes nothing, and a link to an answer
can be shared.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from approvals import whatif
from approvals.rulebook import may_see
from approvals.rules import Cap, RuleRef
from server.browser_session import Viewer
from server.services.errors import Forbidden, InvalidArguments, InvalidInput
from server.services.rule_whatifs import ExplainRequest, RuleWhatIfs
from server.web.pages import Refused, is_htmx, page, render, services_of
from server.web.people_lookup import members_of, people_by_id
from server.web.rules_form import tool_groups
from server.web.rules_schema import Argument, arguments_of
from server.web.rules_words import EFFECTS, EffectWords, RuleWords, Vocabulary, cap_words, describe


@dataclass(frozen=True)
class RuleMention:
    """A rule named in an explanation: in words, and linked, when the viewer may see it."""

    ref: RuleRef
    words: RuleWords | None
    whose: str

    @property
    def effect(self) -> EffectWords:
        return EFFECTS[self.ref.effect.value]


@dataclass(frozen=True)
class ExplanationView:
    effect: EffectWords
    tool: str
    risk: str
    subject: str
    deciding: list[RuleMention]
    also_matched: list[RuleMention]
    shadow_effect: EffectWords | None
    shadow: list[RuleMention]
    caps: list[str]
    out_of_band: bool


def input_of(argument: Argument) -> str:
    """How the explain form asks for an argument: json (in the JSON box), list, boolean, choice, number or text."""
    if argument.kind in ("object", "any"):
        return "json"
    if argument.array:
        return "list"
    if argument.kind == "boolean":
        return "boolean"
    if argument.choices:
        return "choice"
    return "number" if argument.kind in ("integer", "number") else "text"


def inputs_of(vocabulary: Vocabulary, tool: str) -> list[Argument]:
    """The tool's top-level arguments; what lies inside them goes in the JSON box."""
    info = vocabulary.catalog.get(tool)
    return [a for a in arguments_of(info.input_schema) if "." not in a.path] if info else []


def arguments_from(
    inputs: list[Argument], values: dict[str, str], raw_json: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The call's arguments from the fields, with the JSON box on top; and the problems, by field."""
    arguments: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for argument in inputs:
        text = values.get(argument.path, "").strip()
        shape = input_of(argument)
        if not text or shape == "json":
            continue
        try:
            if shape == "list":
                arguments[argument.path] = [argument.scalar(item.strip()) for item in text.split(",") if item.strip()]
            else:
                arguments[argument.path] = argument.scalar(text)
        except ValueError as exc:
            errors[f"arg.{argument.path}"] = str(exc)
    if raw_json.strip():
        try:
            extra = json.loads(raw_json)
        except ValueError as exc:
            errors["json"] = f"this is not JSON: {exc}"
        else:
            if isinstance(extra, dict):
                arguments.update(extra)
            else:
                errors["json"] = 'give a JSON object, such as {"to": ["ana@client.com"]}'
    return arguments, errors


def form_errors(inputs: list[Argument], fields: dict[str, str]) -> dict[str, str]:
    """Argument problems (``arguments.to.0``) beside the form field that holds the argument, or the JSON box."""
    shown = {a.path for a in inputs if input_of(a) != "json"}
    errors: dict[str, str] = {}
    for name, problem in fields.items():
        path = name.removeprefix("arguments").lstrip(".")
        top = path.split(".", 1)[0]
        field = f"arg.{top}" if top in shown else "json"
        said = problem if path == top or not path else f"{path}: {problem}"
        errors[field] = f"{errors[field]}; {said}" if field in errors else said
    return errors


async def _mentions(request: Request, viewer: Viewer, refs: tuple[RuleRef, ...]) -> list[RuleMention]:
    if not refs:
        return []
    services = services_of(request)
    async with services.db.session() as session:
        rules = {r.id: r for r in await services.rulebook.rules_of(session, viewer.principal.workspace_id)}
        people = await people_by_id(session, [r.user_id for r in rules.values()])
    vocabulary = Vocabulary.of(services.registry, services.rulebook.catalog)
    mentions = []
    for ref in refs:
        rule = rules.get(ref.id)
        whose = "Workspace rule" if ref.scope == "workspace" else "Personal rule"
        if rule is not None and rule.user_id not in (None, viewer.principal.user_id) and rule.user_id in people:
            whose = f"Personal rule of {people[rule.user_id].label}"
        if rule is not None and rule.mode == "shadow":
            whose = f"{whose}, in shadow mode"
        visible = rule is not None and may_see(viewer.principal, rule)
        words = describe(rule, vocabulary, viewer.principal.timezone) if rule is not None and visible else None
        mentions.append(RuleMention(ref, words, whose))
    return mentions


async def _explanation(request: Request, viewer: Viewer, explained: whatif.Explanation, who: str) -> ExplanationView:
    services = services_of(request)
    decision = explained.decision
    # Shadow rules have a section of their own; "also matched" lists the enforced rules that lost.
    elsewhere = {ref.id for ref in (*decision.rules, *decision.shadow_rules)}
    title = services.registry.tools[explained.tool].spec.title
    return ExplanationView(
        effect=EFFECTS[decision.effect.value],
        tool=title,
        risk=services.rulebook.catalog[explained.tool].risk,
        subject="you" if explained.user_id == viewer.principal.user_id else who,
        deciding=await _mentions(request, viewer, decision.rules),
        also_matched=await _mentions(request, viewer, tuple(r for r in decision.matched if r.id not in elsewhere)),
        shadow_effect=EFFECTS[decision.shadow_effect.value] if decision.shadow_effect else None,
        shadow=await _mentions(request, viewer, decision.shadow_rules),
        caps=[cap_words(Cap(max=charge.max, per_seconds=charge.per_seconds)) for charge in decision.caps],
        out_of_band=decision.require_out_of_band,
    )


@page
async def explain(request: Request, viewer: Viewer) -> Response:
    services = services_of(request)
    actor = viewer.principal
    query = request.query_params
    tool = query.get("tool", "")
    who = query.get("user") or actor.email
    if not viewer.is_admin and who not in (actor.email, actor.user_id):
        raise Refused(403, "Members can explain decisions only for their own calls.")
    vocabulary = Vocabulary.of(services.registry, services.rulebook.catalog)
    inputs = inputs_of(vocabulary, tool)
    values = {a.path: query.get(f"arg.{a.path}", "") for a in inputs}
    raw_json = query.get("json", "")
    connection_scope = "personal" if query.get("connection_scope") == "personal" else "workspace"
    errors: dict[str, str] = {}
    explanation = None
    asked = bool(query.get("go"))
    if asked and not tool:
        errors["tool"] = "choose a tool"
    elif asked:
        arguments, errors = arguments_from(inputs, values, raw_json)
        if not errors:
            whatifs = RuleWhatIfs(services.rulebook, services.box, services.registry)
            question = ExplainRequest(tool=tool, arguments=arguments, user=who, connection_scope=connection_scope)
            try:
                explained = await whatifs.explain(actor, question)
            except InvalidArguments as exc:
                errors = form_errors(inputs, exc.fields)
            except InvalidInput as exc:
                errors = exc.fields
            except Forbidden as exc:
                raise Refused(403, str(exc)) from None
            else:
                explanation = await _explanation(request, viewer, explained, who)
    async with services.db.session() as session:
        members = await members_of(session, actor.workspace_id) if viewer.is_admin else []
    # A changed tool only redraws the form (htmx); asking redraws the page with the answer.
    return render(
        request,
        "rules_explain_body.html" if is_htmx(request) and not asked else "rules_explain.html",
        viewer,
        status=422 if errors else 200,
        tool_groups=tool_groups(vocabulary, None),
        tool=tool,
        who=who,
        members=members,
        inputs=[(argument, input_of(argument)) for argument in inputs],
        values=values,
        raw_json=raw_json,
        connection_scope=connection_scope,
        errors=errors,
        explanation=explanation,
    )


routes = [Route("/rules/explain", explain, methods=["GET"])]

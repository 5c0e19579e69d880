"""The Rules pages: read every rule in plain words, write one without typing JSON, try it before saving.

Admins see and manage workspace rules; everyone sees and manages their own
personal rules (``RuleBook.visible_to`` and ``may_manage``). Saving goes
through the rule book, simulating and explaining through the rule what-ifs
(``server.services.rule_whatifs``, as the API and the CLI do), so the console
decides exactly as the gateway does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from approvals.rulebook import RulePermissionError, may_manage
from approvals.rules import WEEKDAYS, Effect, Rule, RuleError
from server.browser_session import Viewer, flash
from server.services.errors import Forbidden, ServiceError
from server.services.rule_whatifs import RuleChanges, RuleWhatIfs
from server.web import rules_explain
from server.web.pages import Refused, form_of, is_htmx, page, redirect, render, services_of
from server.web.people_lookup import Person, people_by_id
from server.web.rules_form import (
    RISKS,
    ROLES,
    Choices,
    ConditionDraft,
    FormErrors,
    RuleDraft,
    field_anchor,
    field_label,
    on_rows,
    problems_of_model,
    problems_of_rule,
)
from server.web.rules_words import EFFECTS, EffectWords, RuleWords, Vocabulary, describe
from store.models import Connection, ConnectionScope, RuleRow, utcnow

SIMULATED_DAYS = 7
SIMULATED_CALLS_SHOWN = 50


def _vocabulary(request: Request) -> Vocabulary:
    services = services_of(request)
    return Vocabulary.of(services.registry, services.rulebook.catalog)


# The list


@dataclass(frozen=True)
class RuleCard:
    """One rule as the list shows it."""

    rule: Rule
    words: RuleWords
    set_by: Person | None
    owner: Person | None
    expired: bool


@dataclass(frozen=True)
class AppGroup:
    name: str
    cards: list[RuleCard]


def _order(card: RuleCard) -> tuple[int, int, str]:
    # Workspace rules first, as they bound the rest; then the strictest effect.
    severity = {Effect.DENY: 0, Effect.ASK: 1, Effect.ALLOW: 2}[card.rule.effect]
    return (card.rule.scope != "workspace", severity, card.rule.tool)


async def _cards(request: Request, viewer: Viewer, rules: list[Rule]) -> list[RuleCard]:
    services = services_of(request)
    async with services.db.session() as session:
        rows = await session.execute(
            select(RuleRow.id, RuleRow.created_by).where(RuleRow.id.in_([r.id for r in rules]))
        )
        setters = {rule_id: created_by for rule_id, created_by in rows}
        people = await people_by_id(session, [*setters.values(), *(r.user_id for r in rules)])
    vocabulary = _vocabulary(request)
    now = utcnow()
    return [
        RuleCard(
            rule=rule,
            words=describe(rule, vocabulary, viewer.principal.timezone),
            set_by=people.get(setters.get(rule.id) or ""),
            owner=people.get(rule.user_id or ""),
            expired=rule.expires_at is not None and rule.expires_at <= now,
        )
        for rule in rules
    ]


@page
async def rules_list(request: Request, viewer: Viewer) -> Response:
    services = services_of(request)
    shown = request.query_params.get("scope", "")
    async with services.db.session() as session:
        rules = await services.rulebook.visible_to(session, viewer.principal)
    if shown in ("workspace", "user"):
        rules = [rule for rule in rules if rule.scope == shown]
    vocabulary = _vocabulary(request)
    groups: dict[str, list[RuleCard]] = {}
    for card in sorted(await _cards(request, viewer, rules), key=_order):
        groups.setdefault(vocabulary.app_name(card.rule.app), []).append(card)
    by_name = sorted(groups.items(), key=lambda item: (item[0] == "any app", item[0].lower()))
    return render(
        request,
        "rules.html",
        viewer,
        groups=[AppGroup("Every app" if name == "any app" else name, cards) for name, cards in by_name],
        shown=shown,
    )


# One rule, for those who may manage it


async def _manageable(request: Request, viewer: Viewer) -> Rule:
    """The rule in the URL; 403 when it exists but is not the viewer's to see or change."""
    services = services_of(request)
    actor = viewer.principal
    rule_id = request.path_params["rule_id"]
    async with services.db.session() as session:
        try:
            rule = await services.rulebook.get(session, actor, rule_id)
        except LookupError:
            scope = await session.scalar(
                select(RuleRow.scope).where(RuleRow.id == rule_id, RuleRow.workspace_id == actor.workspace_id)
            )
            if scope is None:
                raise Refused(404, "There is no such rule in this workspace.", "Not found") from None
            if scope == "workspace":
                raise Refused(403, "Only workspace admins and owners can see or change workspace rules.") from None
            raise Refused(403, "This is someone else's personal rule: only they can see or change it.") from None
    if not may_manage(actor, rule):
        raise Refused(403, "You may not change this rule.")
    return rule


# The form: new and edit


@dataclass(frozen=True)
class ChangedCallView:
    at: datetime
    person: str
    tool: str
    before: EffectWords
    after: EffectWords


@dataclass(frozen=True)
class Simulation:
    """What the simulation shows: how many calls would change, from what to what, and which."""

    days: int
    replayed: int
    changed: int
    moves: list[tuple[EffectWords, EffectWords, int]]
    calls: list[ChangedCallView]
    whole_workspace: bool
    #: Other people's calls not replayed because this rule (or a current one) looks at their arguments,
    #: which only their owner may read.
    withheld: int = 0


@dataclass(frozen=True)
class ConnectionChoice:
    """A connection a rule is bound to, as the form shows it: its label where the viewer may see it, else its id."""

    id: str
    label: str | None


async def _connections_named(request: Request, viewer: Viewer, ids: list[str]) -> list[ConnectionChoice]:
    """The draft's connections, labelled when they are the workspace's or the viewer's own."""
    if not ids:
        return []
    actor = viewer.principal
    services = services_of(request)
    vocabulary = _vocabulary(request)
    async with services.db.session() as session:
        rows = await session.execute(
            select(
                Connection.id,
                Connection.label,
                Connection.app,
                Connection.scope,
                Connection.workspace_id,
                Connection.user_id,
            ).where(Connection.id.in_(ids))
        )
        labels: dict[str, str] = {}
        for connection_id, label, app, scope, workspace_id, user_id in rows:
            visible = (scope == ConnectionScope.WORKSPACE and workspace_id == actor.workspace_id) or (
                scope == ConnectionScope.PERSONAL and user_id == actor.user_id
            )
            if visible:
                whose = "your" if scope == ConnectionScope.PERSONAL else "the workspace's"
                labels[connection_id] = label or f"{whose} {vocabulary.app_name(app)} connection"
    return [ConnectionChoice(connection_id, labels.get(connection_id)) for connection_id in ids]


async def _editor(
    request: Request,
    viewer: Viewer,
    draft: RuleDraft,
    *,
    existing: Rule | None,
    errors: dict[str, str] | None = None,
    simulation: Simulation | None = None,
    status: int = 200,
    settle: bool = False,
) -> Response:
    """The form; ``settle`` fits the draft to changed choices, while a checked draft is shown exactly as sent."""
    vocabulary = _vocabulary(request)
    choices = Choices.settled(draft, vocabulary) if settle else Choices.for_draft(draft, vocabulary)
    # The saved rule's connections stay offered once unchecked, so a redraw never drops one unseen.
    saved = (existing.context.connection_ids or []) if existing else []
    connections = await _connections_named(request, viewer, list(dict.fromkeys([*draft.connection_ids, *saved])))
    preview = None
    if not errors:
        # The rule in the words the list will use, once the draft makes one; nothing while it is half filled in.
        try:
            rule, _ = _checked(request, viewer, draft, existing)
        except FormErrors:
            rule = None
        if rule is not None:
            labelled = replace(vocabulary, connection_labels={c.id: c.label for c in connections if c.label})
            preview = (rule, describe(rule, labelled, viewer.principal.timezone))
    return render(
        request,
        "rules_editor.html" if is_htmx(request) else "rules_form.html",
        viewer,
        status=status,
        draft=draft,
        choices=choices,
        existing=existing,
        errors=errors or {},
        simulation=simulation,
        action=f"/rules/{existing.id}/edit" if existing else "/rules/new",
        effects=EFFECTS,
        risks=RISKS,
        roles=ROLES,
        weekdays=WEEKDAYS,
        field_label=field_label,
        field_anchor=field_anchor,
        connections=connections,
        preview=preview,
    )


@page
async def new_rule(request: Request, viewer: Viewer) -> Response:
    query = request.query_params
    draft = RuleDraft(
        scope="workspace" if viewer.is_admin else "user",
        app=query.get("app", ""),
        tool=query.get("tool", "*"),
    )
    return await _editor(request, viewer, draft, existing=None, settle=True)


@page
async def edit_rule(request: Request, viewer: Viewer) -> Response:
    rule = await _manageable(request, viewer)
    return await _editor(request, viewer, RuleDraft.of(rule), existing=rule)


@page
async def create_rule(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    draft = RuleDraft.from_form(form)
    if draft.scope == "workspace" and not viewer.is_admin:
        raise Refused(403, "Only workspace admins and owners can create workspace rules.")
    return await _submitted(request, viewer, form, draft, existing=None)


@page
async def update_rule(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    rule = await _manageable(request, viewer)
    draft = RuleDraft.from_form(form)
    draft.scope = rule.scope  # a rule keeps its scope; another scope is another rule
    return await _submitted(request, viewer, form, draft, existing=rule)


async def _submitted(
    request: Request, viewer: Viewer, form: FormData, draft: RuleDraft, *, existing: Rule | None
) -> Response:
    """Refresh the choices, add or remove a condition, simulate, or save: the button pressed says which."""
    action = str(form.get("action") or "save")
    if action == "add-condition":
        draft.conditions.append(ConditionDraft())
    elif action.startswith("remove-condition:"):
        row = action.partition(":")[2]
        if row.isdigit() and int(row) < len(draft.conditions):
            del draft.conditions[int(row)]
    if action not in ("simulate", "save"):
        return await _editor(request, viewer, draft, existing=existing, settle=True)
    try:
        rule, changes = _checked(request, viewer, draft, existing)
    except FormErrors as problems:
        return await _editor(request, viewer, draft, existing=existing, errors=problems.fields, status=422)
    if action == "simulate":
        simulation = await _simulate(request, viewer, changes, existing)
        return await _editor(request, viewer, draft, existing=existing, simulation=simulation)
    services = services_of(request)
    try:
        async with services.db.transaction() as session:
            if existing is None:
                saved = await services.rulebook.create(session, viewer.principal, rule)
            else:
                saved = await services.rulebook.replace(session, viewer.principal, existing.id, changes)
    except RuleError as exc:
        return await _editor(request, viewer, draft, existing=existing, errors=problems_of_rule(exc), status=422)
    except RulePermissionError as exc:
        raise Refused(403, str(exc)) from None
    except LookupError:
        raise Refused(404, "This rule no longer exists: someone deleted it meanwhile.", "Not found") from None
    flash(request, "Rule saved." if existing else "Rule created.")
    return redirect(f"/rules#rule-{saved.id}")


def _checked(request: Request, viewer: Viewer, draft: RuleDraft, existing: Rule | None) -> tuple[Rule, dict[str, Any]]:
    """The rule the form makes, checked as saving would check it; FormErrors names each bad field."""
    data, rows = draft.to_data(Choices.for_draft(draft, _vocabulary(request)).arguments)
    if existing is None:
        whole = {**data, "user_id": viewer.principal.user_id if draft.scope == "user" else None}
        changes = data
    else:
        changes = {name: value for name, value in data.items() if name != "scope"}
        current = existing.model_dump(mode="json", by_alias=True, exclude_none=True)
        whole = {**current, **changes}
    try:
        rule = Rule.model_validate(whole)
        services_of(request).rulebook.check(rule)
    except ValidationError as exc:
        raise FormErrors(on_rows(problems_of_model(exc), rows)) from None
    except RuleError as exc:
        raise FormErrors(on_rows(problems_of_rule(exc), rows)) from None
    return rule, changes


async def _simulate(request: Request, viewer: Viewer, changes: dict[str, Any], existing: Rule | None) -> Simulation:
    """How the last week's calls would have gone with this rule saved; nothing is saved.

    The rule is proposed as the API proposes a change (``RuleWhatIfs.replay``), so both replay alike.
    """
    services = services_of(request)
    actor = viewer.principal
    whatifs = RuleWhatIfs(services.rulebook, services.box, services.registry)
    proposal = RuleChanges(add=[changes]) if existing is None else RuleChanges(update={existing.id: changes})
    until = utcnow()
    try:
        replay = await whatifs.replay(
            actor, proposal, since=until - timedelta(days=SIMULATED_DAYS), until=until, limit=SIMULATED_CALLS_SHOWN
        )
    except Forbidden as exc:
        raise Refused(403, str(exc)) from None
    except ServiceError as exc:
        # The form was checked as saving checks it: only a rule someone changed or deleted meanwhile lands here.
        raise Refused(409, f"The rule changed meanwhile: {exc}. Reload the page.", "Changed meanwhile") from None
    async with services.db.session() as session:
        people = await people_by_id(session, [call.user_id for call in replay.calls])
    titles = _vocabulary(request).tool_titles
    return Simulation(
        days=SIMULATED_DAYS,
        replayed=replay.replayed,
        changed=replay.changed,
        moves=[(EFFECTS[b.value], EFFECTS[a.value], n) for (b, a), n in replay.counts.items()],
        calls=[
            ChangedCallView(
                at=call.at,
                person="you" if call.user_id == actor.user_id else _label(people, call.user_id),
                tool=titles.get(call.tool, call.tool),
                before=EFFECTS[call.before.value],
                after=EFFECTS[call.after.value],
            )
            for call in replay.calls
        ],
        whole_workspace=actor.is_admin,
        withheld=replay.withheld,
    )


def _label(people: dict[str, Person], user_id: str) -> str:
    person = people.get(user_id)
    return person.label if person else user_id


# Shadow mode and deleting


@page
async def set_mode(request: Request, viewer: Viewer) -> Response:
    form = await form_of(request)
    rule = await _manageable(request, viewer)
    mode = "shadow" if form.get("mode") == "shadow" else "enforce"
    services = services_of(request)
    try:
        async with services.db.transaction() as session:
            await services.rulebook.replace(session, viewer.principal, rule.id, {"mode": mode})
    except RuleError as exc:
        problem = "; ".join(exc.fields.values())
        flash(request, f"The rule was not changed: {problem}. Edit the rule to fix it.", "error")
        return redirect(f"/rules#rule-{rule.id}")
    except LookupError:
        raise Refused(404, "This rule no longer exists: someone deleted it meanwhile.", "Not found") from None
    if mode == "shadow":
        flash(request, "The rule is in shadow mode: it records what it would decide, and decides nothing.")
    else:
        flash(request, "The rule is enforced again.")
    return redirect(f"/rules#rule-{rule.id}")


@page
async def confirm_delete(request: Request, viewer: Viewer) -> Response:
    """Where Delete leads without JavaScript; with it, the same question opens in a dialog on the list."""
    rule = await _manageable(request, viewer)
    words = describe(rule, _vocabulary(request), viewer.principal.timezone)
    return render(request, "rules_delete.html", viewer, rule=rule, words=words)


@page
async def delete_rule(request: Request, viewer: Viewer) -> Response:
    await form_of(request)
    rule = await _manageable(request, viewer)
    services = services_of(request)
    try:
        async with services.db.transaction() as session:
            await services.rulebook.delete(session, viewer.principal, rule.id)
    except LookupError:
        raise Refused(404, "This rule no longer exists: someone else deleted it.", "Not found") from None
    flash(request, "Rule deleted.")
    return redirect("/rules")


routes = [
    Route("/rules", rules_list, methods=["GET"]),
    Route("/rules/new", new_rule, methods=["GET"]),
    Route("/rules/new", create_rule, methods=["POST"]),
    *rules_explain.routes,
    Route("/rules/{rule_id}/edit", edit_rule, methods=["GET"]),
    Route("/rules/{rule_id}/edit", update_rule, methods=["POST"]),
    Route("/rules/{rule_id}/mode", set_mode, methods=["POST"]),
    Route("/rules/{rule_id}/delete", confirm_delete, methods=["GET"]),
    Route("/rules/{rule_id}/delete", delete_rule, methods=["POST"]),
]

"""Rules over the API: manage them, explain a decision, and simulate a change against recorded calls."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from approvals import whatif
from approvals.rulebook import RulePermissionError, may_manage
from approvals.rules import Decision, Rule, RuleError
from server.api.auth import person_of
from server.api.errors import ApiError, from_validation, invalid
from store.models import utcnow
from store.principal import Principal


def rule_json(rule: Rule) -> dict[str, Any]:
    return rule.model_dump(mode="json", by_alias=True, exclude={"user_id"})


def decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "effect": decision.effect.value,
        "reasons": list(decision.reasons),
        "rules": [
            {"id": r.id, "effect": r.effect.value, "scope": r.scope, "description": r.description}
            for r in decision.rules
        ],
        "matched": [
            {"id": r.id, "effect": r.effect.value, "scope": r.scope, "description": r.description}
            for r in decision.matched
        ],
        "shadow": None
        if decision.shadow_effect is None
        else {"effect": decision.shadow_effect.value, "rules": [r.id for r in decision.shadow_rules]},
        "caps": [{"rule_id": c.rule_id, "max": c.max, "per_seconds": c.per_seconds} for c in decision.caps],
        "require_out_of_band": decision.require_out_of_band,
    }


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ApiError(400, "The body must be JSON") from None


def _parse_rule(data: Any) -> Rule:
    if not isinstance(data, dict):
        raise invalid({"(body)": "a rule must be a JSON object"})
    try:
        return Rule.model_validate({k: v for k, v in data.items() if k not in ("id", "user_id")})
    except ValidationError as exc:
        raise from_validation(exc) from None


def _rule_error(exc: RuleError, prefix: str = "") -> ApiError:
    return invalid({f"{prefix}{name}": problem for name, problem in exc.fields.items()})


async def list_rules(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = request.app.state.companion
    async with companion.db.session() as session:
        rules = await companion.rulebook.visible_to(session, actor)
    return JSONResponse({"data": [rule_json(r) for r in rules]})


async def create_rule(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = request.app.state.companion
    rule = _parse_rule(await _json(request))
    try:
        async with companion.db.transaction() as session:
            saved = await companion.rulebook.create(session, actor, rule)
    except RulePermissionError as exc:
        raise ApiError(403, str(exc)) from None
    except RuleError as exc:
        raise _rule_error(exc) from None
    return JSONResponse(rule_json(saved), status_code=201)


async def get_rule(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = request.app.state.companion
    async with companion.db.session() as session:
        try:
            rule = await companion.rulebook.get(session, actor, request.path_params["rule_id"])
        except LookupError as exc:
            raise ApiError(404, str(exc)) from None
    return JSONResponse(rule_json(rule))


async def update_rule(request: Request) -> JSONResponse:
    actor = person_of(request)
    companion = request.app.state.companion
    changes = await _json(request)
    if not isinstance(changes, dict):
        raise invalid({"(body)": "send the fields to change as a JSON object"})
    try:
        async with companion.db.transaction() as session:
            saved = await companion.rulebook.replace(session, actor, request.path_params["rule_id"], changes)
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    except RulePermissionError as exc:
        raise ApiError(403, str(exc)) from None
    except RuleError as exc:
        raise _rule_error(exc) from None
    except ValidationError as exc:
        raise from_validation(exc) from None
    return JSONResponse(rule_json(saved))


async def delete_rule(request: Request) -> Response:
    actor = person_of(request)
    companion = request.app.state.companion
    try:
        async with companion.db.transaction() as session:
            await companion.rulebook.delete(session, actor, request.path_params["rule_id"])
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    except RulePermissionError as exc:
        raise ApiError(403, str(exc)) from None
    return Response(status_code=204)


class ExplainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str | None = Field(default=None, description="E-mail or id; admins may explain for anyone")
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    connection_scope: str = "workspace"
    at: datetime | None = None


async def explain(request: Request) -> JSONResponse:
    actor = person_of(request)
    try:
        body = ExplainBody.model_validate(await _json(request))
    except ValidationError as exc:
        raise from_validation(exc) from None
    return JSONResponse(await explain_call(request.app.state.companion, actor, body))


async def explain_call(companion: Any, actor: Principal, body: ExplainBody) -> dict[str, Any]:
    """The decision a call would get now, and every rule that matched it."""
    try:
        explained = await whatif.explain(
            companion.rulebook,
            actor,
            tool=body.tool,
            arguments=body.arguments,
            who=body.user,
            connection_scope=body.connection_scope,
            at=body.at,
            canonicalize=whatif.canonical_form(companion.registry, body.tool),
        )
    except whatif.InvalidArguments as exc:
        # The call described could not be made: the gateway would refuse it before any rule, and so does this.
        raise ApiError(
            400, f"Invalid arguments: {exc}", code="invalid_arguments", details={"fields": exc.fields}
        ) from None
    except whatif.InvalidQuestion as exc:
        raise invalid(exc.fields) from None
    except whatif.AskingForOthers as exc:
        raise ApiError(403, str(exc)) from None
    return {"tool": explained.tool, "user_id": explained.user_id, **decision_json(explained.decision)}


class Changes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    add: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    update: dict[str, dict[str, Any]] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)


class SimulateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    changes: Changes
    since: datetime | None = Field(default=None, alias="from")
    until: datetime | None = Field(default=None, alias="to")
    limit: int = Field(default=200, ge=1, le=1000)


def _proposed(current: list[Rule], changes: Changes, actor: Principal, checker: Any) -> list[Rule]:
    by_id = {rule.id: rule for rule in current}
    for index, rule_id in enumerate(changes.remove):
        if rule_id not in by_id:
            raise invalid({f"changes.remove[{index}]": f"no rule {rule_id!r}"})
        if not may_manage(actor, by_id[rule_id]):
            raise ApiError(403, f"You may not change rule {rule_id}")
        del by_id[rule_id]
    for rule_id, patch in changes.update.items():
        if rule_id not in by_id:
            raise invalid({f"changes.update.{rule_id}": f"no rule {rule_id!r}"})
        if not may_manage(actor, by_id[rule_id]):
            raise ApiError(403, f"You may not change rule {rule_id}")
        try:
            merged = Rule.model_validate(
                {**by_id[rule_id].model_dump(mode="json", by_alias=True, exclude_none=True), **patch}
            )
            checker(merged)
        except ValidationError as exc:
            raise from_validation(exc, prefix=f"changes.update.{rule_id}.") from None
        except RuleError as exc:
            raise _rule_error(exc, prefix=f"changes.update.{rule_id}.") from None
        by_id[rule_id] = merged
    for index, data in enumerate(changes.add):
        try:
            rule = Rule.model_validate({**data, "id": data.get("id") or f"proposed-{index + 1}"})
        except ValidationError as exc:
            raise from_validation(exc, prefix=f"changes.add[{index}].") from None
        rule = rule.model_copy(update={"user_id": actor.user_id if rule.scope == "user" else None})
        if not may_manage(actor, rule):
            raise ApiError(403, "Only a workspace admin can propose workspace rules")
        try:
            checker(rule)
        except RuleError as exc:
            raise _rule_error(exc, prefix=f"changes.add[{index}].") from None
        by_id[rule.id] = rule
    return list(by_id.values())


async def simulate(request: Request) -> JSONResponse:
    actor = person_of(request)
    try:
        body = SimulateBody.model_validate(await _json(request))
    except ValidationError as exc:
        raise from_validation(exc) from None
    return JSONResponse(await simulate_changes(request.app.state.companion, actor, body))


async def simulate_changes(companion: Any, actor: Principal, body: SimulateBody) -> dict[str, Any]:
    """Replay recorded calls under the current rules and under the proposed ones; list what would change."""
    until = body.until or utcnow()
    since = body.since or until - timedelta(days=7)
    if since >= until:
        raise invalid({"from": "must be before to"})
    result = await whatif.simulate(
        companion.rulebook,
        companion.box,
        actor,
        propose=lambda current: _proposed(current, body.changes, actor, companion.rulebook.check),
        since=since,
        until=until,
        limit=body.limit,
    )
    return {
        "from": since.isoformat(),
        "to": until.isoformat(),
        "replayed": result.replayed,
        "changed": result.changed,
        # Other people's calls that a rule would decide on their arguments: not replayed, since the
        # outcome would reveal what those arguments hold (only your own calls' arguments are used).
        "withheld": result.withheld,
        "counts": {f"{before.value}->{after.value}": n for (before, after), n in result.counts.items()},
        "calls": [
            {
                "audit_id": call.audit_id,
                "at": call.at.isoformat(),
                "user_id": call.user_id,
                "tool": call.tool,
                "recorded": call.recorded,
                "before": call.before.value,
                "after": call.after.value,
                "after_rules": list(call.after_rules),
            }
            for call in result.calls
        ],
    }


routes = [
    Route("/rules", list_rules, methods=["GET"]),
    Route("/rules", create_rule, methods=["POST"]),
    Route("/rules/explain", explain, methods=["POST"]),
    Route("/rules/simulate", simulate, methods=["POST"]),
    Route("/rules/{rule_id}", get_rule, methods=["GET"]),
    Route("/rules/{rule_id}", update_rule, methods=["PATCH"]),
    Route("/rules/{rule_id}", delete_rule, methods=["DELETE"]),
]

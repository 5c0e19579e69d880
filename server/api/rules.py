"""Rules over the API: manage them, explain a decision, and simulate a change against recorded calls.

Rules are a person's to make, so every operation takes a user key (``person_of``): an assistant's agent key
must not write its own auto-approval rules, nor probe them. The use cases are ``server.services.rules``
and ``server.services.rule_whatifs``, which the CLI and the console run too.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request

from server.api.auth import person_of
from server.api.router import ApiRouter
from server.api.services import services_of
from server.services.rule_whatifs import ExplainRequest, Explanation, RuleWhatIfs, SimulateRequest, Simulation
from server.services.rules import RuleIn, RuleOut, RulePatch, Rules
from store.principal import Principal

api = ApiRouter("Rules")


class RuleList(BaseModel):
    data: list[RuleOut]


def _rules(request: Request) -> Rules:
    return Rules(services_of(request).rulebook)


def _whatifs(request: Request) -> RuleWhatIfs:
    services = services_of(request)
    return RuleWhatIfs(services.rulebook, services.box, services.registry)


@api.get("/rules", caller=person_of, response=RuleList, summary="List rules")
async def list_rules(request: Request, actor: Principal) -> RuleList:
    """An admin sees the workspace's rules and every member's personal ones; a member sees their own."""
    return RuleList(data=await _rules(request).visible(actor))


@api.post("/rules", caller=person_of, body=RuleIn, response=RuleOut, status=201, summary="Create a rule")
async def create_rule(request: Request, actor: Principal, body: RuleIn) -> RuleOut:
    """Checked before it is saved: an unknown app, tool or argument, or a malformed pattern, is a 422 naming it.

    Workspace rules are an admin's (403 for a member); anyone may add personal rules (``scope: user``).
    """
    return await _rules(request).add(actor, body)


@api.post(
    "/rules/explain", caller=person_of, body=ExplainRequest, response=Explanation, lone_surrogates=True,
    summary="Explain a decision",
)  # fmt: skip
async def explain_decision(request: Request, actor: Principal, body: ExplainRequest) -> Explanation:
    """The decision a call would get now, the rules that decided, and every rule that matched.

    Arguments are checked as a real call's are: one the tool would not take answers 400 ``invalid_arguments``
    naming it. Members explain their own calls; an admin may name any member (``user``), a member gets 403.
    """
    return await _whatifs(request).explain_call(actor, body)


@api.post(
    "/rules/simulate", caller=person_of, body=SimulateRequest, response=Simulation, summary="Simulate rule changes"
)
async def simulate_rule_changes(request: Request, actor: Principal, body: SimulateRequest) -> Simulation:
    """Replay the recorded calls of a window (default: the last 7 days) under the rules with ``changes`` made.

    Lists the calls whose decision would change; nothing is saved. Members replay their own calls; an admin
    the workspace's, except others' calls that a rule would decide on their arguments (``withheld``).
    """
    return await _whatifs(request).simulate(actor, body)


@api.get("/rules/{rule_id}", caller=person_of, response=RuleOut, errors=(404,), summary="Get a rule")
async def get_rule(request: Request, actor: Principal) -> RuleOut:
    return await _rules(request).get(actor, request.path_params["rule_id"])


@api.patch(
    "/rules/{rule_id}", caller=person_of, body=RulePatch, response=RuleOut, errors=(404,), summary="Change a rule"
)
async def update_rule(request: Request, actor: Principal, body: RulePatch) -> RuleOut:
    """Change the fields sent; the rule is checked whole again, as on creation. Its scope cannot change."""
    return await _rules(request).change(actor, request.path_params["rule_id"], body.changes())


@api.delete("/rules/{rule_id}", caller=person_of, status=204, errors=(404,), summary="Delete a rule")
async def delete_rule(request: Request, actor: Principal) -> None:
    await _rules(request).remove(actor, request.path_params["rule_id"])

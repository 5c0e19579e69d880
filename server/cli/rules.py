"""``companion rules``: auto-approval rules and their what-ifs, acting as a member (``server.services.rules``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from server.cli.command import CliError, Handlers, Subcommands, acting, acting_options, json_argument
from store.principal import Principal

if TYPE_CHECKING:
    from server.cli.command import Companion


def add_commands(commands: Subcommands) -> None:
    rules = commands.add_parser("rules", help="auto-approval rules").add_subparsers(dest="action", required=True)
    acting_options(rules.add_parser("list", help="the rules the person may see"))
    rules_add = acting_options(rules.add_parser("add", help="add a rule, given as the API's rule JSON"))
    rules_add.add_argument("rule", metavar="RULE_JSON", help="the rule as JSON, or - to read it from stdin")
    rules_remove = acting_options(rules.add_parser("remove", help="delete a rule"))
    rules_remove.add_argument("rule_id", metavar="RULE_ID")
    explain = acting_options(rules.add_parser("explain", help="the decision a call would get, and why"))
    explain.add_argument("--tool", required=True)
    explain.add_argument("--arguments", default="{}", metavar="JSON")
    explain.add_argument("--user", metavar="EMAIL", help="whose call (admins only; default: the person acting)")
    simulate = acting_options(rules.add_parser("simulate", help="replay recorded calls under a proposed change"))
    simulate.add_argument("--changes", required=True, metavar="JSON", help='e.g. {"add": [RULE], "remove": [ID]}')
    simulate.add_argument("--days", type=int, default=7)


def _rules_list(args: argparse.Namespace) -> None:
    from server.services.rules import Rules

    async def work(companion: Companion, person: Principal) -> Any:
        rules = await Rules(companion.rulebook).visible(person)
        return [r.model_dump(mode="json", by_alias=True) for r in rules]

    acting(args, work)


def _rules_add(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from server.services.errors import InvalidInput, ServiceError
    from server.services.rules import RuleIn, Rules

    data = json_argument(args.rule, "rule")

    async def work(companion: Companion, person: Principal) -> Any:
        try:
            try:
                rule = RuleIn.model_validate(data)
            except ValidationError as exc:
                raise InvalidInput.of(exc) from None
            return (await Rules(companion.rulebook).add(person, rule)).model_dump(mode="json", by_alias=True)
        except ServiceError as exc:
            raise CliError(str(exc)) from None

    if not isinstance(data, dict):
        raise CliError("rule: a rule is a JSON object")
    acting(args, work)


def _rules_remove(args: argparse.Namespace) -> None:
    from server.services.errors import ServiceError
    from server.services.rules import Rules

    async def work(companion: Companion, person: Principal) -> Any:
        try:
            await Rules(companion.rulebook).remove(person, args.rule_id)
        except ServiceError as exc:
            raise CliError(f"rule_id: {exc}") from None
        print(f"Removed {args.rule_id}.")

    acting(args, work)


def _rules_explain(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from server.services.errors import InvalidInput, ServiceError
    from server.services.rule_whatifs import ExplainRequest, RuleWhatIfs

    arguments = json_argument(args.arguments, "arguments")

    async def work(companion: Companion, person: Principal) -> Any:
        whatifs = RuleWhatIfs(companion.rulebook, companion.box, companion.registry)
        try:
            try:
                question = ExplainRequest(tool=args.tool, arguments=arguments, user=args.user)
            except ValidationError as exc:
                raise InvalidInput.of(exc) from None
            return (await whatifs.explain_call(person, question)).model_dump(mode="json")
        except ServiceError as exc:
            raise CliError(str(exc)) from None

    acting(args, work)


def _rules_simulate(args: argparse.Namespace) -> None:
    from datetime import timedelta

    from pydantic import ValidationError

    from server.services.errors import InvalidInput, ServiceError
    from server.services.rule_whatifs import RuleWhatIfs, SimulateRequest
    from store.models import utcnow

    changes = json_argument(args.changes, "changes")

    async def work(companion: Companion, person: Principal) -> Any:
        now = utcnow()
        whatifs = RuleWhatIfs(companion.rulebook, companion.box, companion.registry)
        try:
            try:
                request = SimulateRequest.model_validate(
                    {"changes": changes, "from": now - timedelta(days=args.days), "to": now}
                )
            except ValidationError as exc:
                raise InvalidInput.of(exc) from None
            return (await whatifs.simulate(person, request)).model_dump(mode="json", by_alias=True)
        except ServiceError as exc:
            raise CliError(str(exc)) from None

    acting(args, work)


HANDLERS: Handlers = {
    ("rules", "list"): _rules_list,
    ("rules", "add"): _rules_add,
    ("rules", "remove"): _rules_remove,
    ("rules", "explain"): _rules_explain,
    ("rules", "simulate"): _rules_simulate,
}

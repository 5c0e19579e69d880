"""The rule engine's reference model: ``RuleIndex``'s decisions from a plain scan of every rule.

The server never decides this way. test_rules.py checks that the index agrees with it on random rules
and calls, and bench/rules.py times it as the linear baseline.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

from approvals.rules import CallFacts, Catalog, Decision, Rule, compile_rule, decide_among


class LinearRules:
    """The same decisions from a plain scan of every rule: the reference the index must agree with."""

    def __init__(self, rules: Iterable[Rule], catalog: Catalog) -> None:
        self.catalog = catalog
        self.rules = [compile_rule(rule) for rule in rules]

    def decide(self, call: CallFacts) -> Decision:
        app = self.catalog[call.tool].app
        candidates = [
            compiled
            for compiled in self.rules
            if (compiled.admin or compiled.rule.user_id == call.user_id)
            and (compiled.rule.app is None or compiled.rule.app == app)
            and fnmatch.fnmatchcase(call.tool, compiled.rule.tool)
        ]
        return decide_among(candidates, call)

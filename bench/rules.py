"""Decision speed of the rule engine: the indexed engine against a linear scan, and against Cedar.

10,000 rules (workspace and user rules, wildcards, 0 to 3 conditions each)
spread over 100 workspaces of 10 users (about 100 rules a workspace; pass
--workspaces 10 for 1,000), and 100,000 calls over 29 tools. Rules
live per workspace in the product, so both engines get the workspace's rules:
the index files them by tool (globs expanded against the catalog), the linear
baseline scans them all with glob matching on every call.

Cedar (``cedarpy``) gets the same workspace rules translated to policies
(allow → permit unless the connection is personal, ask and deny → forbid,
plus a permit for every read, the default) for the part Cedar can express:
workspace rules with eq, ne, in, not_in, numeric comparisons, contains and
exists. It answers "may this call run without asking?", which we compare
with our engine on the same subset.
Cedar evaluates every policy of a set per request, so it runs on a sample.

A tool with a ``to`` argument declares it as egress, and ``domain_in`` rules
on it test all of a call's recipients (``@recipients``), as the README's
example does. ``matches`` runs on RE2. Calls come on workspace and personal
connections alike; on a personal one, workspace allow rules are set aside.

    .venv/bin/python bench/rules.py [--rules 10000] [--calls 100000] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from approvals.rules import CallFacts, Effect, Rule, RuleIndex, ToolInfo
from tests.linear_rules import LinearRules

NOW = datetime(2026, 11, 18, 15, 0, tzinfo=UTC)
ARGS: dict[str, dict[str, Any]] = {
    "to": {"type": "array", "items": {"type": "string"}},
    "subject": {"type": "string"},
    "channel": {"type": "string"},
    "team": {"type": "string"},
    "amount": {"type": "integer"},
    "priority": {"type": "integer"},
    "labels": {"type": "array", "items": {"type": "string"}},
    "draft": {"type": "boolean"},
}
APPS = {
    "gmail": [("send_email", "send"), ("create_draft", "write"), ("search_messages", "read")],
    "email": [("send_email", "send")],
    "linear": [("create_issue", "write"), ("update_issue", "write"), ("search_issues", "read"), ("list_teams", "read")],
    "hubspot": [
        ("search_contacts", "read"),
        ("get_contact", "read"),
        ("search_deals", "read"),
        ("create_note", "write"),
        ("update_deal_stage", "write"),
    ],
    "salesforce": [("query", "read"), ("get_record", "read"), ("update_record", "write")],
    "gcal": [("list_events", "read"), ("create_event", "write"), ("find_free_time", "read")],
    "gcontacts": [("search", "read"), ("create_contact", "write")],
    "notion": [("search", "read"), ("create_page", "write"), ("append_to_page", "write")],
    "slack": [("post_message", "send"), ("list_channels", "read")],
    "harmony": [("list_meetings", "read"), ("create_action_item", "write"), ("delete_note", "delete")],
}
DOMAINS = ["acme.test", "client.com", "partner.io", "evil.test"]
WORDS = ["report", "invoice", "hello", "urgent", "q3", "weekly", "offsite"]


def catalog(rng: random.Random) -> dict[str, ToolInfo]:
    tools = {}
    for app, names in APPS.items():
        for name, risk in names:
            chosen = rng.sample(sorted(ARGS), k=4)
            schema = {"type": "object", "properties": {arg: ARGS[arg] for arg in chosen}}
            tools[f"{app}_{name}"] = ToolInfo(app, risk, schema, egress=("to",) if "to" in chosen else ())
    return tools


def condition(rng: random.Random, arg: str, schema: dict[str, Any], cedar_only: bool) -> dict[str, Any]:
    kind = schema["type"]
    if kind == "integer":
        op = rng.choice(["lt", "lte", "gt", "gte", "eq", "ne"])
        return {"arg": arg, "op": op, "value": rng.randint(0, 10)}
    if kind == "boolean":
        return {"arg": arg, "op": "eq", "value": rng.random() < 0.5}
    if kind == "array":
        ops = ["contains", "exists"] + ([] if cedar_only else ["domain_in", "max_length"])
        op = rng.choice(ops)
        value = {
            "contains": f"a@{rng.choice(DOMAINS)}",
            "exists": rng.random() < 0.7,
            "domain_in": rng.sample(DOMAINS, k=2),
            "max_length": rng.randint(1, 4),
        }[op]
        # Every tool with a ``to`` argument declares it as egress.
        return {"arg": "@recipients" if op == "domain_in" and arg == "to" else arg, "op": op, "value": value}
    ops = ["eq", "ne", "in", "not_in", "contains", "exists"] + ([] if cedar_only else ["matches"])
    op = rng.choice(ops)
    value = {
        "eq": rng.choice(WORDS),
        "ne": rng.choice(WORDS),
        "in": rng.sample(WORDS, k=3),
        "not_in": rng.sample(WORDS, k=2),
        "contains": rng.choice(WORDS)[:3],
        "exists": rng.random() < 0.7,
        "matches": f"{rng.choice(WORDS)}.*",
    }[op]
    return {"arg": arg, "op": op, "value": value}


def make_rules(
    rng: random.Random, tools: dict[str, ToolInfo], count: int, workspaces: list[str], users: dict[str, list[str]]
) -> dict[str, list[Rule]]:
    by_workspace: dict[str, list[Rule]] = {w: [] for w in workspaces}
    names = sorted(tools)
    for number in range(count):
        workspace = rng.choice(workspaces)
        admin = rng.random() < 0.35
        effect = rng.choices(["allow", "ask", "deny"], weights=[6, 3, 1])[0]
        shape = rng.random()
        if shape < 0.15 and effect != "deny":
            app, pattern = None, "*"
        elif shape < 0.4 and effect != "deny":
            app = rng.choice(sorted(APPS))
            pattern = f"{app}_*"
        else:
            pattern = rng.choice(names)
            app = tools[pattern].app
        matched = [
            n
            for n in names
            if (app is None or tools[n].app == app)
            and (pattern == "*" or n == pattern or (pattern.endswith("*") and n.startswith(pattern[:-1])))
        ]
        shared = set.intersection(*(set(tools[n].input_schema["properties"]) for n in matched))
        cedar_only = admin and rng.random() < 0.5
        # Broad rules and denials come with conditions, as people write them; narrow allows may have none.
        least = 1 if (effect == "deny" or pattern == "*") else 0
        conditions = [
            condition(rng, arg, tools[matched[0]].input_schema["properties"][arg], cedar_only)
            for arg in rng.sample(sorted(shared), k=min(len(shared), rng.randint(least, 3)))
        ]
        if least and not conditions:
            continue
        fields: dict[str, Any] = {
            "id": f"r{number}",
            "effect": effect,
            "scope": "workspace" if admin else "user",
            "app": app,
            "tool": pattern,
            "conditions": conditions,
            "user_id": None if admin else rng.choice(users[workspace]),
        }
        if not cedar_only:
            fields["mode"] = rng.choices(["enforce", "shadow"], weights=[9, 1])[0]
            if admin:
                fields["locked"] = rng.random() < 0.1
            if rng.random() < 0.1:
                fields["expires_at"] = NOW + timedelta(hours=rng.choice([-1, 1]))
        by_workspace[workspace].append(Rule.model_validate(fields))
    return by_workspace


def arguments(rng: random.Random, info: ToolInfo) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for arg, schema in info.input_schema["properties"].items():
        if rng.random() < 0.2:
            continue
        kind = schema["type"]
        if kind == "integer":
            values[arg] = rng.randint(0, 10)
        elif kind == "boolean":
            values[arg] = rng.random() < 0.5
        elif kind == "array":
            values[arg] = [f"{rng.choice('abc')}@{rng.choice(DOMAINS)}" for _ in range(rng.randint(1, 3))]
        else:
            values[arg] = rng.choice(WORDS) + ("" if rng.random() < 0.7 else " " + rng.choice(WORDS))
    return values


def make_calls(
    rng: random.Random, tools: dict[str, ToolInfo], count: int, workspaces: list[str], users: dict[str, list[str]]
) -> list[CallFacts]:
    names = sorted(tools)
    calls = []
    for _ in range(count):
        workspace = rng.choice(workspaces)
        name = rng.choice(names)
        info = tools[name]
        user = rng.choice(users[workspace])
        role = rng.choice(["member", "admin"])
        scope = rng.choice(["workspace", "personal"])
        values = arguments(rng, info)  # drawn last, as before, so a seed still gives the same calls
        recipients = tuple(values.get("to", ()))
        calls.append(
            CallFacts(workspace, user, role, info.app, name, info.risk, scope, values, NOW, recipients=recipients)
        )
    return calls


def measure(decide: Any, calls: list[CallFacts]) -> tuple[list[float], float]:
    latencies = []
    clock = time.perf_counter_ns
    started = clock()
    for call in calls:
        before = clock()
        decide(call)
        latencies.append((clock() - before) / 1000)
    return latencies, (clock() - started) / 1e9


def report(name: str, latencies: list[float], seconds: float) -> float:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    rate = len(latencies) / seconds
    print(f"  {name:8} {rate:12,.0f} decisions/s   p50 {p50:8.1f} µs   p99 {p99:8.1f} µs   ({len(latencies):,} calls)")
    return rate


def cedar_policies(rules: list[Rule]) -> tuple[str, list[Rule]]:
    """Cedar text for the rules Cedar can express, and those rules."""
    kept: list[Rule] = []
    policies = ['@id("default-read")\npermit(principal, action, resource) when { context.risk == "read" };']
    for rule in rules:
        if rule.scope != "workspace" or rule.mode != "enforce" or rule.expires_at or rule.locked:
            continue
        if any(c.op in ("matches", "domain_in", "max_length") for c in rule.conditions):
            continue
        tests = []
        if rule.app:
            tests.append(f'context.app == "{rule.app}"')
        if rule.tool != "*":
            tests.append(f'context.tool like "{rule.tool}"')
        for c in rule.conditions:
            path = f"context.args.{c.arg}"
            has = f"context.args has {c.arg}"
            value = c.value
            literal = (
                ("true" if value else "false")
                if isinstance(value, bool)
                else (f'"{value}"' if isinstance(value, str) else str(value))
            )
            if c.op == "exists":
                tests.append(has if value else f"!({has})")
            elif c.op in ("eq", "ne"):
                tests.append(f"({has} && {path} {'==' if c.op == 'eq' else '!='} {literal})")
            elif c.op in ("lt", "lte", "gt", "gte"):
                symbol = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}[c.op]
                tests.append(f"({has} && {path} {symbol} {literal})")
            elif c.op in ("in", "not_in"):
                members = "[" + ", ".join(f'"{v}"' for v in value) + "]"
                test = f"{members}.contains({path})"
                tests.append(f"({has} && {test if c.op == 'in' else '!' + test})")
            elif c.op == "contains":
                if isinstance(value, str) and "@" in value:
                    tests.append(f"({has} && {path}.contains({literal}))")
                else:
                    tests.append(f'({has} && {path} like "*{value}*")')
        if rule.effect is Effect.ALLOW:
            # Personal connections answer to their owner: a workspace allow does not reach them.
            tests.append('context.scope != "personal"')
        verb = "permit" if rule.effect is Effect.ALLOW else "forbid"
        when = " && ".join(tests) or "true"
        policies.append(f'@id("{rule.id}")\n{verb}(principal, action, resource) when {{ {when} }};')
        kept.append(rule)
    return "\n".join(policies), kept


def compare_with_cedar(tools: dict[str, ToolInfo], rules: dict[str, list[Rule]], calls: list[CallFacts]) -> None:
    try:
        import cedarpy
    except ImportError:
        print("\ncedarpy is not installed (pip install cedarpy); skipping the Cedar comparison")
        return
    sets: dict[str, Any] = {}
    ours: dict[str, RuleIndex] = {}
    expressed = 0
    for workspace, workspace_rules in rules.items():
        text, kept = cedar_policies(workspace_rules)
        expressed += len(kept)
        sets[workspace] = cedarpy.PolicySet.from_str(text)
        ours[workspace] = RuleIndex.build(kept, tools)
    entities: list[Any] = []
    latencies_cedar, latencies_ours = [], []
    disagreements = 0
    for call in calls:
        request = {
            "principal": f'User::"{call.user_id}"',
            "action": 'Action::"call"',
            "resource": f'Tool::"{call.tool}"',
            "context": {
                "app": call.app,
                "tool": call.tool,
                "risk": call.risk,
                "scope": call.connection_scope,
                "args": call.arguments,
            },
        }
        started = time.perf_counter_ns()
        allowed = cedarpy.is_authorized(request, sets[call.workspace_id], entities).allowed
        latencies_cedar.append((time.perf_counter_ns() - started) / 1000)
        started = time.perf_counter_ns()
        mine = ours[call.workspace_id].decide(call).effect is Effect.ALLOW
        latencies_ours.append((time.perf_counter_ns() - started) / 1000)
        disagreements += allowed != mine
    print(f"\nCedar (cedarpy) on the {expressed:,} workspace rules it can express, on {len(calls):,} calls:")
    report("cedar", latencies_cedar, sum(latencies_cedar) / 1e6)
    report("indexed", latencies_ours, sum(latencies_ours) / 1e6)
    print(f"  decisions that disagree: {disagreements} of {len(calls):,}")
    if disagreements:
        raise SystemExit("Cedar and the engine disagree")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--linear-calls", type=int, default=20_000, help="calls the linear baseline decides")
    parser.add_argument("--cedar-calls", type=int, default=5_000)
    parser.add_argument("--workspaces", type=int, default=100, help="workspaces the rules are spread over")
    parser.add_argument("--users", type=int, default=10, help="users per workspace")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tools = catalog(rng)
    workspaces = [f"ws{i}" for i in range(args.workspaces)]
    users = {w: [f"{w}-u{i}" for i in range(args.users)] for w in workspaces}
    rules = make_rules(rng, tools, args.rules, workspaces, users)
    calls = make_calls(rng, tools, args.calls, workspaces, users)

    started = time.perf_counter()
    indexes = {w: RuleIndex.build(r, tools) for w, r in rules.items()}
    built = time.perf_counter() - started
    linear = {w: LinearRules(r, tools) for w, r in rules.items()}
    print(f"{args.rules:,} rules in {len(workspaces)} workspaces over {len(tools)} tools; index built in {built:.2f} s")
    candidates = statistics.median(len(indexes[c.workspace_id].candidates(c)) for c in calls[:5000])
    scanned = statistics.median(len(r) for r in rules.values())
    print(f"rules looked at per call: indexed median {candidates:.0f}; linear {scanned:.0f} (the workspace's rules)")

    sample = calls[: args.linear_calls]
    for call in sample:  # the two must agree before either is timed
        a, b = indexes[call.workspace_id].decide(call), linear[call.workspace_id].decide(call)
        assert a.effect is b.effect and sorted(a.rule_ids) == sorted(b.rule_ids), call
    print(f"indexed and linear agree on all {len(sample):,} calls checked\n")

    print("one core, one process:")
    lat, secs = measure(lambda c: indexes[c.workspace_id].decide(c), calls)
    rate = report("indexed", lat, secs)
    lin_lat, lin_secs = measure(lambda c: linear[c.workspace_id].decide(c), sample)
    lin_rate = report("linear", lin_lat, lin_secs)
    print(f"  indexed/linear throughput: {rate / lin_rate:.1f}x")
    p99 = sorted(lat)[int(len(lat) * 0.99) - 1]
    verdict = "met" if rate >= 100_000 and p99 <= 50 else "NOT met"
    print(f"  target (>= 100,000 decisions/s, p99 <= 50 µs): {verdict}")
    effects = {e: sum(1 for c in calls[:20_000] if indexes[c.workspace_id].decide(c).effect is e) for e in Effect}
    print("  decision mix (first 20,000): " + ", ".join(f"{e.value} {n}" for e, n in effects.items()))

    compare_with_cedar(tools, rules, calls[: args.cedar_calls])


if __name__ == "__main__":
    main()

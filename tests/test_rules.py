"""The rule engine, as pure functions: operators, precedence, admin bounds, caps, expiry, shadow mode, validation.

The adversary's side of it (crafted addresses, stalling patterns, bcc) is in test_rules_adversarial.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from approvals import rules as rules_module
from approvals.digest import arguments_digest, canonical_json
from approvals.rules import (
    CallFacts,
    Effect,
    Rule,
    RuleError,
    RuleIndex,
    ToolInfo,
    validate,
)
from tests.linear_rules import LinearRules

NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)  # a Wednesday

CATALOG = {
    "gmail_send_email": ToolInfo(
        "gmail",
        "send",
        {
            "type": "object",
            "properties": {
                "to": {"type": "array", "items": {"type": "string"}},
                "cc": {"type": "array", "items": {"type": "string"}},
                "bcc": {"type": "array", "items": {"type": "string"}},
                "subject": {"type": "string"},
                "body": {"type": "string"},
                "priority": {"type": "integer"},
            },
        },
        egress=("to", "cc", "bcc"),
    ),
    "gmail_search_messages": ToolInfo("gmail", "read", {"type": "object", "properties": {"query": {"type": "string"}}}),
    "hubspot_update_deal_stage": ToolInfo(
        "hubspot",
        "write",
        {
            "type": "object",
            "properties": {
                "deal_id": {"type": "string"},
                "stage": {"type": "string", "enum": ["won", "lost", "open"]},
                "deal": {"type": "object", "properties": {"amount": {"type": "number"}}},
            },
        },
    ),
    "hubspot_delete_note": ToolInfo("hubspot", "delete", {"type": "object", "properties": {"id": {"type": "string"}}}),
    "harmony_list_meetings": ToolInfo(
        "harmony", "read", {"type": "object", "properties": {"query": {"type": "string"}}}
    ),
}


def rule(**fields) -> Rule:
    fields.setdefault("scope", "workspace")
    if fields["scope"] == "user":
        fields.setdefault("user_id", "alice")
    fields.setdefault("id", f"r{abs(hash(repr(sorted(fields.items())))) % 10**6}")
    return Rule.model_validate(fields)


def call(tool: str, arguments: dict | None = None, **facts) -> CallFacts:
    """The facts of a call, with its recipients gathered from the tool's egress arguments as the gateway does."""
    info = CATALOG[tool]
    arguments = arguments or {}
    recipients = tuple(value for name in info.egress for value in arguments.get(name, ()))
    return CallFacts(
        workspace_id="ws",
        user_id=facts.pop("user_id", "alice"),
        role=facts.pop("role", "member"),
        app=info.app,
        tool=tool,
        risk=info.risk,
        connection_scope=facts.pop("connection_scope", "workspace"),
        arguments=arguments,
        now=facts.pop("now", NOW),
        timezone=facts.pop("timezone", "UTC"),
        recipients=facts.pop("recipients", recipients),
        connection_id=facts.pop("connection_id", None),
    )


def decide(rules: list[Rule], facts: CallFacts):
    for r in rules:
        validate(r, CATALOG)
    return RuleIndex.build(rules, CATALOG).decide(facts)


# --- defaults -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "effect"),
    [
        ("gmail_search_messages", Effect.ALLOW),
        ("gmail_send_email", Effect.ASK),
        ("hubspot_update_deal_stage", Effect.ASK),
        ("hubspot_delete_note", Effect.ASK),
    ],
)
def test_with_no_rule_the_risk_decides(tool, effect):
    decision = decide([], call(tool))
    assert decision.effect is effect
    assert decision.rules == ()
    assert decision.reasons[0].startswith("no rule matched; default for")


# --- operators ------------------------------------------------------------------------------------

SEND = "gmail_send_email"


@pytest.mark.parametrize(
    ("condition", "arguments", "matches"),
    [
        ({"arg": "subject", "op": "eq", "value": "Hi"}, {"subject": "Hi"}, True),
        ({"arg": "subject", "op": "eq", "value": "Hi"}, {"subject": "hi"}, False),
        ({"arg": "priority", "op": "eq", "value": 1}, {"priority": True}, False),
        ({"arg": "subject", "op": "ne", "value": "Hi"}, {"subject": "Yo"}, True),
        ({"arg": "subject", "op": "ne", "value": "Hi"}, {}, False),
        ({"arg": "subject", "op": "in", "value": ["a", "b"]}, {"subject": "b"}, True),
        ({"arg": "subject", "op": "in", "value": ["a", "b"]}, {"subject": "c"}, False),
        ({"arg": "to", "op": "in", "value": ["x@a.test", "y@a.test"]}, {"to": ["x@a.test", "y@a.test"]}, True),
        ({"arg": "to", "op": "in", "value": ["x@a.test"]}, {"to": ["x@a.test", "z@b.test"]}, False),
        ({"arg": "subject", "op": "not_in", "value": ["a", "b"]}, {"subject": "c"}, True),
        ({"arg": "to", "op": "not_in", "value": ["ceo@a.test"]}, {"to": ["x@a.test", "ceo@a.test"]}, False),
        ({"arg": "priority", "op": "lt", "value": 3}, {"priority": 2}, True),
        ({"arg": "priority", "op": "lt", "value": 3}, {"priority": 3}, False),
        ({"arg": "priority", "op": "lte", "value": 3}, {"priority": 3}, True),
        ({"arg": "priority", "op": "gt", "value": 3}, {"priority": 4}, True),
        ({"arg": "priority", "op": "gte", "value": 3}, {"priority": 2}, False),
        ({"arg": "priority", "op": "lt", "value": 3}, {"priority": "1"}, False),
        ({"arg": "subject", "op": "matches", "value": r"Q[1-4] report"}, {"subject": "Q3 report"}, True),
        ({"arg": "subject", "op": "matches", "value": r"Q[1-4] report"}, {"subject": "Q3 report!!"}, False),
        ({"arg": "to", "op": "matches", "value": r".+@acme\.test"}, {"to": ["a@acme.test", "b@acme.test"]}, True),
        ({"arg": "to", "op": "matches", "value": r".+@acme\.test"}, {"to": ["a@acme.test", "b@evil.test"]}, False),
        ({"arg": "body", "op": "contains", "value": "invoice"}, {"body": "your invoice is attached"}, True),
        ({"arg": "to", "op": "contains", "value": "ceo@a.test"}, {"to": ["x@a.test", "ceo@a.test"]}, True),
        ({"arg": "to", "op": "domain_in", "value": ["acme.test"]}, {"to": ["a@acme.test", "B@ACME.TEST"]}, True),
        ({"arg": "to", "op": "domain_in", "value": ["acme.test"]}, {"to": ["a@acme.test", "b@client.com"]}, False),
        # An address is exactly one mailbox: a display name is not decided on (it was, before issue 18).
        ({"arg": "to", "op": "domain_in", "value": ["acme.test"]}, {"to": ["Ann <ann@acme.test>"]}, False),
        ({"arg": "to", "op": "domain_in", "value": ["acme.test"]}, {"to": ["a@acme.test.evil.com"]}, False),
        ({"arg": "to", "op": "domain_in", "value": ["acme.test"]}, {"to": []}, False),
        # Nor is a list of addresses in one string (it was, before issue 18).
        ({"arg": "subject", "op": "domain_in", "value": ["acme.test"]}, {"subject": "a@acme.test, b@acme.test"}, False),
        ({"arg": "subject", "op": "domain_in", "value": ["acme.test"]}, {"subject": "a@acme.test"}, True),
        ({"arg": "to", "op": "domain_in", "value": ["bücher.example"]}, {"to": ["a@xn--bcher-kva.example"]}, True),
        ({"arg": "to", "op": "domain_in", "value": ["xn--bcher-kva.example"]}, {"to": ["a@bücher.example"]}, True),
        ({"arg": "to", "op": "domain_in", "value": ["acme.test"]}, {"to": ["a@acme.test."]}, False),
        ({"arg": "body", "op": "max_length", "value": 5}, {"body": "12345"}, True),
        ({"arg": "body", "op": "max_length", "value": 5}, {"body": "123456"}, False),
        ({"arg": "to", "op": "max_length", "value": 1}, {"to": ["a@b.test", "c@d.test"]}, False),
        ({"arg": "cc", "op": "exists", "value": True}, {"cc": []}, True),
        ({"arg": "cc", "op": "exists", "value": False}, {}, True),
        ({"arg": "cc", "op": "exists", "value": False}, {"cc": ["a@b.test"]}, False),
        ({"arg": "@recipients", "op": "domain_in", "value": ["acme.test"]}, {"to": ["a@acme.test"]}, True),
        ({"arg": "@recipients", "op": "domain_in", "value": ["acme.test"]}, {"cc": ["b@client.com"]}, False),
        ({"arg": "@recipients", "op": "domain_in", "value": ["acme.test"]}, {"subject": "nobody"}, False),
        ({"arg": "@recipients", "op": "in", "value": ["a@acme.test"]}, {"to": ["a@acme.test"]}, True),
        ({"arg": "@recipients", "op": "not_in", "value": ["ceo@acme.test"]}, {"bcc": ["ceo@acme.test"]}, False),
        ({"arg": "@recipients", "op": "matches", "value": r"[a-z]+@acme\.test"}, {"to": ["a@acme.test"]}, True),
        ({"arg": "@recipients", "op": "max_length", "value": 2}, {"to": ["a@a.test"], "cc": ["b@b.test"]}, True),
        ({"arg": "@recipients", "op": "max_length", "value": 1}, {"to": ["a@a.test"], "cc": ["b@b.test"]}, False),
        ({"arg": "@recipients", "op": "exists", "value": True}, {"to": [], "cc": []}, False),
        ({"arg": "@recipients", "op": "exists", "value": False}, {"to": []}, True),
    ],
)
def test_each_operator(condition, arguments, matches):
    decision = decide([rule(effect="allow", app="gmail", tool=SEND, conditions=[condition])], call(SEND, arguments))
    assert decision.effect is (Effect.ALLOW if matches else Effect.ASK)


def test_keys_in_holds_when_an_object_touches_only_the_listed_fields():
    r = rule(
        effect="allow",
        app="hubspot",
        tool="hubspot_update_deal_stage",
        conditions=[{"arg": "deal", "op": "keys_in", "value": ["amount", "close_date"]}],
    )
    assert decide([r], call("hubspot_update_deal_stage", {"deal": {"amount": 5}})).effect is Effect.ALLOW
    assert decide([r], call("hubspot_update_deal_stage", {"deal": {"amount": 5, "owner": "x"}})).effect is Effect.ASK
    assert decide([r], call("hubspot_update_deal_stage", {"deal": ["amount"]})).effect is Effect.ASK


def test_a_rule_bound_to_connections_applies_only_to_calls_on_them():
    remembered = rule(scope="user", effect="allow", tool=SEND, context={"connection_ids": ["conn-1", "conn-2"]})
    assert decide([remembered], call(SEND, connection_id="conn-2")).effect is Effect.ALLOW
    assert decide([remembered], call(SEND, connection_id="conn-3")).effect is Effect.ASK
    assert decide([remembered], call(SEND)).effect is Effect.ASK


def test_conditions_reach_into_nested_arguments():
    r = rule(
        effect="allow",
        app="hubspot",
        tool="hubspot_update_deal_stage",
        conditions=[{"arg": "deal.amount", "op": "lt", "value": 1000}],
    )
    assert decide([r], call("hubspot_update_deal_stage", {"deal": {"amount": 999}})).effect is Effect.ALLOW
    assert decide([r], call("hubspot_update_deal_stage", {"deal": {"amount": 1000}})).effect is Effect.ASK
    assert decide([r], call("hubspot_update_deal_stage", {"deal": 5})).effect is Effect.ASK


def test_all_conditions_must_hold():
    r = rule(
        effect="allow",
        app="gmail",
        tool=SEND,
        conditions=[
            {"arg": "to", "op": "domain_in", "value": ["acme.test"]},
            {"arg": "body", "op": "max_length", "value": 100},
        ],
    )
    assert decide([r], call(SEND, {"to": ["a@acme.test"], "body": "short"})).effect is Effect.ALLOW
    assert decide([r], call(SEND, {"to": ["a@acme.test"], "body": "x" * 101})).effect is Effect.ASK


# --- precedence and layers ------------------------------------------------------------------------


def test_severity_decides_within_a_layer_regardless_of_order():
    rules = [
        rule(id="allow", effect="allow", tool="gmail_*"),
        rule(id="deny", effect="deny", tool=SEND),
        rule(id="ask", effect="ask", app="gmail"),
    ]
    for ordering in (rules, rules[::-1], rules[1:] + rules[:1]):
        decision = decide(ordering, call(SEND))
        assert decision.effect is Effect.DENY
        assert decision.rule_ids == ("deny",)
        explained = RuleIndex.build(ordering, CATALOG).explain(call(SEND))
        assert explained.effect is Effect.DENY and explained.rule_ids == ("deny",)
        assert {ref.id for ref in explained.matched} == {"allow", "deny", "ask"}


def test_a_user_rule_may_widen_the_default_where_no_admin_rule_speaks():
    decision = decide([rule(id="mine", scope="user", effect="allow", tool=SEND)], call(SEND))
    assert decision.effect is Effect.ALLOW and decision.rule_ids == ("mine",)


def test_a_user_rule_may_narrow_a_read():
    decision = decide([rule(scope="user", effect="ask", tool="gmail_search_messages")], call("gmail_search_messages"))
    assert decision.effect is Effect.ASK


def test_an_admin_rule_bounds_user_rules():
    admin_ask = rule(id="admin", effect="ask", tool=SEND)
    user_allow = rule(id="user", scope="user", effect="allow", tool=SEND)
    decision = decide([admin_ask, user_allow], call(SEND))
    assert decision.effect is Effect.ASK and decision.rule_ids == ("admin",)


def test_a_user_rule_can_narrow_an_admin_allow():
    decision = decide(
        [rule(id="admin", effect="allow", tool=SEND), rule(id="user", scope="user", effect="deny", tool=SEND)],
        call(SEND),
    )
    assert decision.effect is Effect.DENY and decision.rule_ids == ("user",)


def test_a_locked_admin_rule_stops_users_widening_even_when_its_conditions_miss():
    locked = rule(
        effect="deny",
        tool=SEND,
        locked=True,
        conditions=[{"arg": "to", "op": "contains", "value": "ceo@acme.test"}],
    )
    user_allow = rule(scope="user", effect="allow", tool=SEND)
    assert decide([user_allow], call(SEND, {"to": ["a@acme.test"]})).effect is Effect.ALLOW
    assert decide([locked, user_allow], call(SEND, {"to": ["a@acme.test"]})).effect is Effect.ASK
    assert decide([locked, user_allow], call(SEND, {"to": ["ceo@acme.test"]})).effect is Effect.DENY


PERSONAL_SET_ASIDE = "(allow) set aside: only the owner's own rules auto-approve calls on a personal connection"


def test_on_a_personal_connection_a_workspace_allow_is_set_aside_and_the_reasons_say_so():
    team_may_send = rule(id="team", effect="allow", tool=SEND, description="team may send")
    assert decide([team_may_send], call(SEND)).effect is Effect.ALLOW
    decision = decide([team_may_send], call(SEND, connection_scope="personal"))
    assert decision.effect is Effect.ASK and decision.rules == () and decision.matched == ()
    assert decision.reasons == ("no rule matched; default for send tools: ask", f"team may send {PERSONAL_SET_ASIDE}")


def test_on_a_personal_connection_the_owners_allow_decides_within_workspace_asks_denies_and_locks():
    mine = rule(id="mine", scope="user", effect="allow", tool=SEND)
    personal = call(SEND, {"to": ["a@acme.test"]}, connection_scope="personal")
    assert decide([mine, rule(effect="allow", tool=SEND)], personal).rule_ids == ("mine",)
    assert decide([mine, rule(id="ask", effect="ask", tool=SEND)], personal).rule_ids == ("ask",)
    assert decide([mine, rule(effect="deny", tool=SEND)], personal).effect is Effect.DENY
    # A locked workspace allow no longer allows here, but its lock still stops the owner widening the default.
    locked_allow = rule(effect="allow", tool=SEND, locked=True)
    assert decide([mine, locked_allow], personal).effect is Effect.ASK


def test_other_users_rules_do_not_apply():
    decision = decide([rule(scope="user", user_id="bob", effect="allow", tool=SEND)], call(SEND, user_id="alice"))
    assert decision.effect is Effect.ASK


# --- caps, expiry, shadow, context ----------------------------------------------------------------


def test_a_capped_allow_reports_the_cap_to_charge():
    capped = rule(id="capped", effect="allow", tool=SEND, cap={"max": 20, "per_seconds": 3600})
    decision = decide([capped], call(SEND))
    assert decision.effect is Effect.ALLOW
    assert [(c.rule_id, c.max, c.per_seconds) for c in decision.caps] == [("capped", 20, 3600)]
    overruled = decide([capped, rule(effect="ask", tool=SEND)], call(SEND))
    assert overruled.effect is Effect.ASK and overruled.caps == ()


def test_an_expired_rule_no_longer_applies():
    expired = rule(effect="allow", tool=SEND, expires_at=NOW - timedelta(seconds=1))
    current = rule(effect="allow", tool=SEND, expires_at=NOW + timedelta(hours=1))
    assert decide([expired], call(SEND)).effect is Effect.ASK
    assert decide([current], call(SEND)).effect is Effect.ALLOW


def test_a_shadow_rule_changes_nothing_but_says_what_it_would_have_done():
    shadow = rule(id="trial", effect="allow", tool=SEND, mode="shadow", description="trial: auto-send")
    decision = decide([shadow], call(SEND))
    assert decision.effect is Effect.ASK
    assert decision.shadow_effect is Effect.ALLOW
    assert [ref.id for ref in decision.shadow_rules] == ["trial"]
    agreeing = decide([shadow, rule(effect="allow", tool=SEND)], call(SEND))
    assert agreeing.shadow_effect is None


def test_context_conditions_on_role_scope_and_time():
    by_role = rule(effect="allow", tool=SEND, context={"roles": ["admin", "owner"]})
    assert decide([by_role], call(SEND, role="admin")).effect is Effect.ALLOW
    assert decide([by_role], call(SEND, role="member")).effect is Effect.ASK
    by_scope = rule(effect="deny", tool=SEND, context={"connection_scope": "personal"})
    assert decide([by_scope], call(SEND, connection_scope="personal")).effect is Effect.DENY
    assert decide([by_scope], call(SEND, connection_scope="workspace")).effect is Effect.ASK
    office = rule(
        effect="allow",
        tool=SEND,
        context={"weekdays": ["mon", "tue", "wed", "thu", "fri"], "hours": {"from": "09:00", "to": "17:00"}},
    )
    assert decide([office], call(SEND)).effect is Effect.ALLOW  # Wednesday 15:30 UTC
    assert decide([office], call(SEND, timezone="America/Los_Angeles")).effect is Effect.ASK  # 07:30 there
    assert decide([office], call(SEND, timezone="Asia/Tokyo")).effect is Effect.ASK  # Thursday 00:30 there
    saturday = NOW + timedelta(days=3)
    assert decide([office], call(SEND, now=saturday)).effect is Effect.ASK
    overnight = rule(effect="allow", tool=SEND, context={"hours": {"from": "22:00", "to": "06:00"}})
    assert decide([overnight], call(SEND, now=NOW.replace(hour=23))).effect is Effect.ALLOW
    assert decide([overnight], call(SEND, now=NOW.replace(hour=5))).effect is Effect.ALLOW
    assert decide([overnight], call(SEND)).effect is Effect.ASK


def test_out_of_band_and_admin_approval_flags_travel_with_the_decision():
    oob = rule(effect="ask", tool=SEND, require_out_of_band=True, admin_may_approve=True)
    decision = decide([oob], call(SEND))
    assert decision.require_out_of_band and decision.admin_may_approve
    assert not decide([rule(effect="ask", tool=SEND)], call(SEND)).require_out_of_band


def test_risk_narrows_what_a_rule_selects():
    deletes = rule(effect="deny", tool="*", risk="delete")
    assert decide([deletes], call("hubspot_delete_note")).effect is Effect.DENY
    assert decide([deletes], call("hubspot_update_deal_stage")).effect is Effect.ASK


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"app": "salesfarce"}, "app", "unknown app 'salesfarce'"),
        ({"app": "gmail", "tool": "gmail_delete_*"}, "tool", "'gmail_delete_*' matches no tool of app 'gmail'"),
        ({"tool": "nothing_here"}, "tool", "'nothing_here' matches no tool of any app"),
        ({"app": "gmail", "tool": "gmail_*", "risk": "delete"}, "risk", "none of the tools"),
        (
            {"app": "gmail", "tool": SEND, "conditions": [{"arg": "recipients", "op": "eq", "value": "x"}]},
            "conditions[0].arg",
            "'recipients' is not an argument of gmail_send_email",
        ),
        (
            {"app": "gmail", "tool": "gmail_*", "conditions": [{"arg": "to", "op": "exists", "value": True}]},
            "conditions[0].arg",
            "'to' is not an argument of gmail_search_messages",
        ),
        (
            {"tool": SEND, "conditions": [{"arg": "subject", "op": "lt", "value": 3}]},
            "conditions[0].op",
            "lt does not apply to 'subject', which is string in gmail_send_email",
        ),
        (
            {"tool": SEND, "conditions": [{"arg": "subject", "op": "keys_in", "value": ["a"]}]},
            "conditions[0].op",
            "keys_in does not apply to 'subject', which is string in gmail_send_email",
        ),
        (
            {"app": "gmail", "tool": "gmail_*", "conditions": [{"arg": "@recipients", "op": "exists", "value": True}]},
            "conditions[0].arg",
            "gmail_search_messages declares no recipients",
        ),
        (
            {"tool": SEND, "conditions": [{"arg": "@recipients", "op": "contains", "value": "a@acme.test"}]},
            "conditions[0].op",
            "contains does not apply to @recipients; use one of domain_in, in, not_in, matches, max_length, exists",
        ),
    ],
)
def test_rules_that_could_never_apply_are_refused_naming_the_field(fields, field, message):
    with pytest.raises(RuleError) as caught:
        validate(rule(effect="allow", **fields), CATALOG)
    assert field in caught.value.fields
    assert message in caught.value.fields[field]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"conditions": [{"arg": "to", "op": "in", "value": []}]}, "in needs a non-empty list"),
        ({"conditions": [{"arg": "subject", "op": "matches", "value": "(unclosed"}]}, "invalid regular expression"),
        ({"conditions": [{"arg": "subject", "op": "matches", "value": "a" * 201}]}, "limited to 200 characters"),
        ({"conditions": [{"arg": "to", "op": "domain_in", "value": ["not a domain"]}]}, "is not a domain"),
        ({"conditions": [{"arg": "to", "op": "domain_in", "value": ["acme.test."]}]}, "is not a domain"),
        ({"conditions": [{"arg": "to", "op": "domain_in", "value": ["a\u200bcme.test"]}]}, "is not a domain"),
        ({"conditions": [{"arg": "to", "op": "domain_in", "value": ["10.0.0.1"]}]}, "is not a domain"),
        ({"conditions": [{"arg": "subject", "op": "matches", "value": "(?=x)x"}]}, "lookaround are not available"),
        ({"conditions": [{"arg": "subject", "op": "matches", "value": r"(a)\1"}]}, "invalid regular expression"),
        ({"conditions": [{"arg": "deal", "op": "keys_in", "value": []}]}, "keys_in needs a non-empty list"),
        ({"conditions": [{"arg": "@everyone", "op": "exists", "value": True}]}, "String should match pattern"),
        ({"context": {"connection_ids": []}}, "at least 1 item"),
        ({"context": {"connection_ids": [f"c{i}" for i in range(21)]}}, "at most 20 items"),
        ({"conditions": [{"arg": "priority", "op": "gt", "value": "3"}]}, "gt needs a number"),
        ({"conditions": [{"arg": "to", "op": "between", "value": 1}]}, "Input should be"),
        ({"effect": "ask", "cap": {"max": 3, "per_seconds": 60}}, "only an allow rule can carry a cap"),
        ({"scope": "user", "locked": True}, "locked: only a workspace rule can set it"),
        ({"require_out_of_band": True}, "require_out_of_band: only an ask rule can set it"),
        ({"expires_at": "2026-12-01T00:00:00"}, "give a time zone"),
        ({"cap": {"max": 0, "per_seconds": 60}}, "greater than or equal to 1"),
    ],
)
def test_malformed_rules_are_refused_at_parse_time(fields, message):
    with pytest.raises(ValueError) as caught:
        rule(**{"effect": "allow", "tool": SEND, **fields})
    assert message in str(caught.value)


def test_a_rule_that_already_expired_is_refused():
    with pytest.raises(RuleError) as caught:
        validate(rule(effect="allow", tool=SEND, expires_at=NOW - timedelta(days=1)), CATALOG, now=NOW)
    assert caught.value.fields == {"expires_at": "already past"}


def test_validation_returns_the_tools_a_rule_applies_to():
    assert validate(rule(effect="deny", app="hubspot"), CATALOG) == ["hubspot_delete_note", "hubspot_update_deal_stage"]


# --- canonical arguments --------------------------------------------------------------------------


def test_the_argument_digest_ignores_key_order_and_whitespace_but_not_values():
    a = {"to": ["b@x.test"], "subject": "Hi", "meta": {"z": 1, "a": [1, 2]}}
    b = {"meta": {"a": [1, 2], "z": 1}, "subject": "Hi", "to": ["b@x.test"]}
    assert canonical_json(a) == canonical_json(b)
    assert arguments_digest(a) == arguments_digest(b)
    assert arguments_digest(a) != arguments_digest({**a, "subject": "Hi "})
    assert arguments_digest(a) != arguments_digest({**a, "meta": {"z": 1, "a": [2, 1]}})
    assert arguments_digest({"n": 1}) != arguments_digest({"n": 1.5})
    assert arguments_digest({"n": True}) != arguments_digest({"n": 1})
    assert len(arguments_digest(a)) == 64


# --- properties -----------------------------------------------------------------------------------

TOOLS = sorted(CATALOG)
CONDITIONS = st.sampled_from(
    [
        {"arg": "subject", "op": "eq", "value": "Hi"},
        {"arg": "subject", "op": "contains", "value": "report"},
        {"arg": "to", "op": "domain_in", "value": ["acme.test"]},
        {"arg": "priority", "op": "lt", "value": 3},
        {"arg": "cc", "op": "exists", "value": True},
        {"arg": "body", "op": "max_length", "value": 10},
        {"arg": "@recipients", "op": "domain_in", "value": ["acme.test"]},
        {"arg": "@recipients", "op": "max_length", "value": 1},
        {"arg": "subject", "op": "matches", "value": "[A-Z].*"},
    ]
)
CONTEXTS = st.sampled_from(
    [{}, {}, {"connection_scope": "personal"}, {"connection_ids": ["c1"]}, {"connection_ids": ["c1", "c2"]}]
)


@st.composite
def rules_strategy(draw):
    scope = draw(st.sampled_from(["workspace", "user"]))
    tool = draw(st.sampled_from(["*", "gmail_*", SEND, "hubspot_*", "*_note", "harmony_list_meetings"]))
    conditions = draw(st.lists(CONDITIONS, max_size=3)) if tool == SEND else []
    fields = {
        "id": draw(st.text("abcdefgh", min_size=4, max_size=8)),
        "effect": draw(st.sampled_from(["allow", "ask", "deny"])),
        "scope": scope,
        "tool": tool,
        "conditions": conditions,
        "mode": draw(st.sampled_from(["enforce", "enforce", "shadow"])),
        "user_id": draw(st.sampled_from(["alice", "bob"])) if scope == "user" else None,
        "expires_at": draw(st.sampled_from([None, None, NOW - timedelta(seconds=1), NOW + timedelta(hours=1)])),
        "context": draw(CONTEXTS),
    }
    if scope == "workspace":
        fields["locked"] = draw(st.booleans())
        if fields["effect"] == "ask":
            fields["require_out_of_band"] = draw(st.booleans())
            fields["admin_may_approve"] = draw(st.booleans())
    if fields["effect"] == "allow" and draw(st.booleans()):
        fields["cap"] = {"max": 5, "per_seconds": 60}
    return Rule.model_validate(fields)


CALLS = st.builds(
    lambda tool, subject, to, bcc, priority, user, role, scope, connection: call(
        tool,
        {"subject": subject, "to": to, "bcc": bcc, "priority": priority} if tool == SEND else {},
        user_id=user,
        role=role,
        connection_scope=scope,
        connection_id=connection,
    ),
    st.sampled_from(TOOLS),
    st.sampled_from(["Hi", "Q3 report", "hello", "Q" * 10_001]),
    st.sampled_from([["a@acme.test"], ["a@acme.test", "b@client.com"], [], ["mallory@evil.example@acme.test"]]),
    st.sampled_from([[], ["b@acme.test"], ["drop@evil.example"], ["#exec"]]),
    st.integers(0, 5),
    st.sampled_from(["alice", "bob"]),
    st.sampled_from(["member", "admin"]),
    st.sampled_from(["workspace", "personal"]),
    st.sampled_from([None, "c1", "c2"]),
)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(rules=st.lists(rules_strategy(), max_size=12), facts=CALLS, data=st.data())
def test_adding_an_allow_rule_never_turns_a_deny_into_an_allow(rules, facts, data):
    extra = data.draw(rules_strategy())
    # Aim the new rule at this call more often than chance would, where it could do harm.
    allow = extra.model_copy(
        update={
            "effect": Effect.ALLOW,
            "tool": data.draw(st.sampled_from(["*", facts.tool, extra.tool])),
            "user_id": facts.user_id if extra.scope == "user" and data.draw(st.booleans()) else extra.user_id,
        }
    )
    before = RuleIndex.build(rules, CATALOG).decide(facts)
    after = RuleIndex.build([*rules, allow], CATALOG).decide(facts)
    assert not (before.effect is Effect.DENY and after.effect is not Effect.DENY)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(rules=st.lists(rules_strategy(), max_size=12), facts=CALLS)
def test_workspace_allow_rules_never_change_a_personal_connections_decision(rules, facts):
    personal = replace(facts, connection_scope="personal")
    # A locked allow is kept: its lock still binds (only its allowing is set aside).
    without = [r for r in rules if not (r.scope == "workspace" and r.effect is Effect.ALLOW and not r.locked)]
    kept = RuleIndex.build(rules, CATALOG).decide(personal)
    assert kept.effect is RuleIndex.build(without, CATALOG).decide(personal).effect
    assert not any(ref.scope == "workspace" and ref.effect is Effect.ALLOW for ref in kept.matched)


@pytest.mark.parametrize("scope", ["workspace", "personal"])
def test_a_shadow_lock_sets_user_rules_aside_in_the_shadow_result_even_when_its_conditions_miss(scope):
    """Found by the property below in CI: the grouped path skipped shadow locks when no shadow rule applied.

    On a personal connection the shadow allow itself is set aside, but its lock is not.
    """
    rules = [
        Rule(id="mine", effect="allow", scope="user", user_id="alice", tool=SEND),
        Rule(
            id="lockshadow", effect="allow", scope="workspace", tool=SEND, locked=True, mode="shadow",
            conditions=[{"arg": "subject", "op": "eq", "value": "never"}],
        ),
    ]  # fmt: skip
    facts = call(SEND, {"subject": "Hi", "to": ["a@acme.test"], "priority": 0}, connection_scope=scope)
    with patch.object(rules_module, "FEW", -1):
        grouped = RuleIndex.build(rules, CATALOG).decide(facts)
    linear = LinearRules(rules, CATALOG).decide(facts)
    assert linear.effect is grouped.effect is Effect.ALLOW
    assert linear.shadow_effect is grouped.shadow_effect is Effect.ASK


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(rules=st.lists(rules_strategy(), max_size=20), facts=CALLS)
def test_the_index_and_a_linear_scan_agree(rules, facts):
    index = RuleIndex.build(rules, CATALOG)
    indexed, explained = index.decide(facts), index.explain(facts)
    with patch.object(rules_module, "FEW", -1):  # the grouped path, whatever the number of rules
        grouped = index.decide(facts)
    linear = LinearRules(rules, CATALOG).decide(facts)
    for decision in (indexed, grouped, explained):
        assert decision.effect is linear.effect
        assert sorted(decision.rule_ids) == sorted(linear.rule_ids)
        assert decision.reasons == linear.reasons or sorted(decision.reasons) == sorted(linear.reasons)
        assert decision.shadow_effect is linear.shadow_effect
        assert sorted(r.id for r in decision.shadow_rules) == sorted(r.id for r in linear.shadow_rules)
        assert sorted(c.rule_id for c in decision.caps) == sorted(c.rule_id for c in linear.caps)
        assert decision.require_out_of_band is linear.require_out_of_band
        assert decision.admin_may_approve is linear.admin_may_approve
    assert sorted(r.id for r in explained.matched) == sorted(r.id for r in linear.matched)

"""The rule engine against the assistant as adversary (SECURITY.md): it chooses every argument.

Whatever it sends, a rule decides on exactly what would run, fails safe when
it cannot decide, and never stalls the process. An *undecidable* condition
(not strictly one mailbox, a string too long to test) never lets an allow
rule apply and always lets an ask or deny rule apply.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from approvals.rules import CallFacts, Effect, Rule, RuleIndex, ToolInfo, validate

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 18, 15, 30, tzinfo=UTC)
MAIL = "gmail_send_email"
SLACK = "slack_post_message"
UPDATE = "salesforce_update_record"
STRINGS = {"type": "array", "items": {"type": "string"}}

CATALOG = {
    MAIL: ToolInfo(
        "gmail",
        "send",
        {
            "type": "object",
            "properties": {"to": STRINGS, "cc": STRINGS, "bcc": STRINGS, "subject": {"type": "string"}},
        },
        egress=("to", "cc", "bcc"),
    ),
    SLACK: ToolInfo(
        "slack",
        "send",
        {"type": "object", "properties": {"channel": {"type": "string"}, "text": {"type": "string"}}},
        egress=("channel",),
    ),
    UPDATE: ToolInfo(
        "salesforce",
        "write",
        {
            "type": "object",
            "properties": {"record_id": {"type": "string"}, "fields": {"type": "object"}},
        },
    ),
}

# Each of these is not strictly one valid mailbox, so no rule can decide on its domain.
CRAFTED = [
    pytest.param("mallory@evil.example@acme.test", id="two-ats"),
    pytest.param("a@acme.test\u200b", id="zero-width-space"),
    pytest.param("a@ac\u200dme.test", id="zero-width-joiner"),
    pytest.param("a@acme.test\u00ad", id="soft-hyphen"),
    pytest.param('"x" <a@evil.example>', id="display-name"),
    pytest.param("Ann <ann@acme.test>", id="display-name-inside"),
    pytest.param("<a@acme.test>", id="angle-brackets"),
    pytest.param("a@acme.test (boss)", id="comment"),
    pytest.param("a@acme.test, drop@evil.example", id="two-in-one"),
    pytest.param("a@acme.test\r\nbcc: drop@evil.example", id="header-injection"),
    pytest.param(" a@acme.test", id="leading-space"),
    pytest.param("a@acme.test.", id="trailing-dot"),
    pytest.param("a@[10.0.0.1]", id="address-literal"),
    pytest.param("a@\uff41\uff43\uff4d\uff45.test", id="fullwidth"),
    pytest.param("a@acme.test\ud800", id="lone-surrogate"),
    pytest.param("(" * 3000, id="3000-parentheses"),
    pytest.param("(" * 3000 + "a@acme.test" + ")" * 3000, id="nested-comments"),
    pytest.param("a" * 100_000 + "@acme.test", id="over-long"),
    pytest.param("@acme.test", id="empty-local-part"),
    pytest.param("a..b@acme.test", id="double-dot"),
]


def rule(**fields) -> Rule:
    fields.setdefault("id", f"{fields.get('scope', 'workspace')}-{fields['effect']}")
    fields.setdefault("scope", "workspace")
    if fields["scope"] == "user":
        fields.setdefault("user_id", "alice")
    made = Rule.model_validate(fields)
    validate(made, CATALOG)
    return made


def call(tool: str, arguments: dict, **facts) -> CallFacts:
    """A call as the gateway describes it: its recipients are the values of every egress argument."""
    info = CATALOG[tool]
    recipients = []
    for name in info.egress:
        value = arguments.get(name, [])
        recipients.extend(value if isinstance(value, list) else [value])
    return CallFacts(
        workspace_id="ws",
        user_id="alice",
        role="member",
        app=info.app,
        tool=tool,
        risk=info.risk,
        connection_scope=facts.pop("connection_scope", "workspace"),
        arguments=arguments,
        now=NOW,
        recipients=tuple(recipients),
        **facts,
    )


def decide(rules: list[Rule], facts: CallFacts) -> Effect:
    return RuleIndex.build(rules, CATALOG).decide(facts).effect


ONLY_OUR_DOMAIN = {"arg": "@recipients", "op": "domain_in", "value": ["acme.test"]}


# --- every recipient, whichever argument carries it -----------------------------------------------


@pytest.mark.parametrize("field", ["to", "cc", "bcc"])
def test_no_recipient_argument_escapes_a_recipients_domain_rule(field):
    allow_ours = rule(effect="allow", tool=MAIL, conditions=[ONLY_OUR_DOMAIN])
    mail = {"to": ["a@acme.test"], "cc": ["b@acme.test"], "bcc": ["c@acme.test"]}
    assert decide([allow_ours], call(MAIL, mail)) is Effect.ALLOW
    leaked = {**mail, field: [*mail[field], "drop@evil.example"]}
    assert decide([allow_ours], call(MAIL, leaked)) is Effect.ASK


def test_a_deny_on_a_recipients_domain_catches_it_in_bcc():
    deny_evil = rule(effect="deny", tool=MAIL, conditions=[{**ONLY_OUR_DOMAIN, "value": ["evil.example"]}])
    # domain_in holds when all recipients are in the list: a deny names the domains it blocks entirely.
    assert decide([deny_evil], call(MAIL, {"bcc": ["drop@evil.example"]})) is Effect.DENY


def test_a_mail_with_no_recipients_does_not_satisfy_domain_in():
    allow_ours = rule(effect="allow", tool=MAIL, conditions=[ONLY_OUR_DOMAIN])
    assert decide([allow_ours], call(MAIL, {"to": [], "cc": [], "bcc": []})) is Effect.ASK


def test_a_channel_is_not_an_address_so_domain_in_on_recipients_cannot_decide_it():
    allow_ours = rule(effect="allow", tool=SLACK, conditions=[ONLY_OUR_DOMAIN])
    deny_evil = rule(effect="deny", tool=SLACK, conditions=[{**ONLY_OUR_DOMAIN, "value": ["evil.example"]}])
    post = call(SLACK, {"channel": "#exec", "text": "hi"})
    assert decide([allow_ours], post) is Effect.ASK
    assert decide([deny_evil], post) is Effect.DENY


# --- crafted addresses ----------------------------------------------------------------------------


@pytest.mark.parametrize("address", CRAFTED)
def test_a_crafted_address_never_satisfies_an_allow_rule(address):
    allow_ours = rule(effect="allow", tool=MAIL, conditions=[{"arg": "to", "op": "domain_in", "value": ["acme.test"]}])
    allow_ours_all = rule(id="all", effect="allow", tool=MAIL, conditions=[ONLY_OUR_DOMAIN])
    facts = call(MAIL, {"to": ["a@acme.test", address]})
    assert decide([allow_ours], facts) is Effect.ASK
    assert decide([allow_ours_all], facts) is Effect.ASK


@pytest.mark.parametrize("address", CRAFTED)
@pytest.mark.parametrize("effect", [Effect.DENY, Effect.ASK])
def test_a_crafted_address_always_triggers_a_deny_or_ask_rule(address, effect):
    blocked = rule(effect=effect.value, tool=MAIL, conditions=[{**ONLY_OUR_DOMAIN, "value": ["evil.example"]}])
    # Even next to an address the rule would not catch, the crafted one makes the whole condition fail safe.
    facts = call(MAIL, {"to": ["b@client.example", address]})
    assert decide([blocked], call(MAIL, {"to": ["b@client.example"]})) is Effect.ASK
    assert decide([blocked, rule(id="ok", effect="allow", tool=MAIL)], facts) is effect


def test_a_look_alike_domain_is_a_different_domain():
    allow_ours = rule(effect="allow", tool=MAIL, conditions=[ONLY_OUR_DOMAIN])
    cyrillic_a = call(MAIL, {"to": ["ceo@\u0430cme.test"]})  # xn--cme-5cd.test
    assert decide([allow_ours], cyrillic_a) is Effect.ASK


def test_idn_domains_compare_in_their_punycode_form_both_ways():
    allow_books = rule(effect="allow", tool=MAIL, conditions=[{**ONLY_OUR_DOMAIN, "value": ["bücher.example"]}])
    assert decide([allow_books], call(MAIL, {"to": ["a@XN--BCHER-KVA.example"]})) is Effect.ALLOW
    assert decide([allow_books], call(MAIL, {"to": ["a@bücher.example"]})) is Effect.ALLOW
    assert decide([allow_books], call(MAIL, {"to": ["a@bucher.example"]})) is Effect.ASK


def test_a_non_string_where_an_address_belongs_fails_safe():
    allow_ours = rule(effect="allow", tool=MAIL, conditions=[{"arg": "to", "op": "domain_in", "value": ["acme.test"]}])
    deny_evil = rule(effect="deny", tool=MAIL, conditions=[{"arg": "to", "op": "domain_in", "value": ["evil.example"]}])
    for value in ({"address": "a@acme.test"}, ["a@acme.test", 7], [["a@acme.test"]]):
        assert decide([allow_ours], call(MAIL, {"to": value})) is Effect.ASK
        assert decide([deny_evil], call(MAIL, {"to": value})) is Effect.DENY


# --- personal connections answer to their owner ---------------------------------------------------


def test_a_workspace_allow_does_not_auto_approve_a_personal_connections_call():
    """Issue 18, class 7: an admin of a second workspace alice joined allows email sends."""
    other_admins_allow = rule(effect="allow", tool="gmail_*")
    assert decide([other_admins_allow], call(MAIL, {"to": ["a@acme.test"]}, connection_scope="personal")) is Effect.ASK
    assert decide([other_admins_allow], call(MAIL, {"to": ["a@acme.test"]})) is Effect.ALLOW


def test_a_workspace_deny_binds_a_personal_connections_call_even_against_the_owners_allow():
    owners_allow = rule(scope="user", effect="allow", tool=MAIL)
    workspace_deny = rule(effect="deny", tool=MAIL, conditions=[{**ONLY_OUR_DOMAIN, "value": ["evil.example"]}])
    facts = call(MAIL, {"to": ["drop@evil.example"]}, connection_scope="personal")
    assert decide([owners_allow, workspace_deny], facts) is Effect.DENY


def test_the_owners_own_allow_auto_approves_their_personal_connections_call():
    owners_allow = rule(scope="user", effect="allow", tool=MAIL, conditions=[ONLY_OUR_DOMAIN])
    workspace_allow = rule(effect="allow", tool=MAIL)
    facts = call(MAIL, {"to": ["a@acme.test"]}, connection_scope="personal")
    decision = RuleIndex.build([owners_allow, workspace_allow], CATALOG).decide(facts)
    assert decision.effect is Effect.ALLOW and decision.rule_ids == ("user-allow",)


# --- remembered approvals are no wider than what was approved -------------------------------------


def test_a_rule_remembered_on_a_personal_mailbox_does_not_open_the_shared_one():
    """Issue 18, class 6: approving one mail from a personal mailbox auto-approved the workspace mailbox."""
    remembered = rule(
        scope="user",
        effect="allow",
        tool=MAIL,
        conditions=[{"arg": "@recipients", "op": "in", "value": ["bob@client.example"]}],
        context={"connection_ids": ["alice-personal"]},
    )
    mail = {"to": ["bob@client.example"]}
    assert decide([remembered], call(MAIL, mail, connection_id="alice-personal")) is Effect.ALLOW
    assert decide([remembered], call(MAIL, mail, connection_id="shared-sales")) is Effect.ASK
    assert decide([remembered], call(MAIL, mail)) is Effect.ASK
    assert decide([remembered], call(MAIL, {**mail, "cc": ["x@client.example"]}, connection_id="alice-personal")) is (
        Effect.ASK
    )


def test_a_remembered_update_covers_only_the_fields_it_touched():
    """Issue 18, class 6: remembering only ``object eq Contact`` meant any field of any record."""
    remembered = rule(
        scope="user",
        effect="allow",
        tool=UPDATE,
        conditions=[
            {"arg": "record_id", "op": "eq", "value": "003A"},
            {"arg": "fields", "op": "keys_in", "value": ["Phone", "Title"]},
        ],
    )
    assert decide([remembered], call(UPDATE, {"record_id": "003A", "fields": {"Phone": "1"}})) is Effect.ALLOW
    assert decide([remembered], call(UPDATE, {"record_id": "003B", "fields": {"Phone": "1"}})) is Effect.ASK
    wider = {"record_id": "003A", "fields": {"Phone": "1", "OwnerId": "005Z"}}
    assert decide([remembered], call(UPDATE, wider)) is Effect.ASK
    for not_an_object in ("Phone", ["Phone"], None):
        assert decide([remembered], call(UPDATE, {"record_id": "003A", "fields": not_an_object})) is Effect.ASK


# --- nothing stalls -------------------------------------------------------------------------------


def test_a_string_too_long_to_test_fails_safe():
    anything = {"arg": "subject", "op": "matches", "value": ".*"}
    allow = rule(effect="allow", tool=MAIL, conditions=[anything])
    deny = rule(effect="deny", tool=MAIL, conditions=[{**anything, "value": "nothing"}])
    assert decide([allow], call(MAIL, {"subject": "x" * 10_000})) is Effect.ALLOW
    assert decide([allow], call(MAIL, {"subject": "x" * 10_001})) is Effect.ASK
    assert decide([deny], call(MAIL, {"subject": "x" * 10_000})) is Effect.ASK
    assert decide([deny], call(MAIL, {"subject": "x" * 10_001})) is Effect.DENY


def test_text_with_no_utf_8_form_fails_safe_under_matches():
    anything = {"arg": "subject", "op": "matches", "value": ".*"}
    lone_surrogate = call(MAIL, {"subject": "hi \ud800"})
    assert decide([rule(effect="allow", tool=MAIL, conditions=[anything])], lone_surrogate) is Effect.ASK
    assert decide([rule(effect="deny", tool=MAIL, conditions=[anything])], lone_surrogate) is Effect.DENY


def test_no_text_where_a_pattern_expects_text_fails_safe():
    deny_secrets = rule(
        effect="deny", tool=MAIL, conditions=[{"arg": "subject", "op": "matches", "value": ".*secret.*"}]
    )
    for hidden in ({"text": "the secret"}, ["the secret", 7], 7, None):
        assert decide([deny_secrets], call(MAIL, {"subject": hidden})) is Effect.DENY
    assert decide([deny_secrets], call(MAIL, {"subject": "lunch"})) is Effect.ASK


def test_one_untestable_recipient_makes_a_deny_pattern_hold_for_all():
    deny_ceo = rule(effect="deny", tool=MAIL, conditions=[{"arg": "@recipients", "op": "matches", "value": "ceo@.*"}])
    padded = "x" * 10_001 + "@acme.test"
    assert decide([deny_ceo], call(MAIL, {"to": ["ceo@acme.test"], "bcc": [padded]})) is Effect.DENY
    assert decide([deny_ceo], call(MAIL, {"to": ["ann@acme.test"]})) is Effect.ASK


def test_three_thousand_parentheses_under_domain_in_decide_at_once():
    allow_ours = rule(effect="allow", tool=MAIL, conditions=[{"arg": "to", "op": "domain_in", "value": ["acme.test"]}])
    started = time.perf_counter()
    for _ in range(1000):
        assert decide([allow_ours], call(MAIL, {"to": ["(" * 3000]})) is Effect.ASK
    assert time.perf_counter() - started < 2


REDOS = """
from datetime import UTC, datetime
from approvals.rules import CallFacts, Rule, RuleIndex, ToolInfo

notes = ToolInfo("notes", "write", {"type": "object", "properties": {"text": {"type": "string"}}})
evil = Rule(
    id="mine", effect="allow", scope="user", user_id="u", tool="notes_create",
    conditions=[{"arg": "text", "op": "matches", "value": "(a+)+b"}],
)
index = RuleIndex.build([evil], {"notes_create": notes})
for text in ("a" * 27, "a" * 100_000):
    for _ in range(500):
        facts = CallFacts("ws", "u", "member", "notes", "notes_create", "write", "workspace", {"text": text},
                          datetime.now(UTC))
        assert index.decide(facts).effect.value == "ask"
"""


def test_a_catastrophic_pattern_cannot_stall_the_process():
    """Issue 18, class 5: ``(a+)+b`` on 27 characters held every request for 5 s under Python's re.

    Run in a fresh interpreter so a regression times out there instead of
    hanging the suite; the bound includes start-up and imports.
    """
    started = time.monotonic()
    try:
        subprocess.run([sys.executable, "-c", REDOS], cwd=ROOT, check=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("deciding a rule with a catastrophic pattern stalled the process")
    assert time.monotonic() - started < 5

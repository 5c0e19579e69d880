"""The one summary a person approves from: every recipient whole, the sender named, no line an argument wrote."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from manifests import MANIFEST_DIR
from store.connections import ConnectionView
from store.models import ConnectionScope, ConnectionStatus
from tools.errors import InvalidArguments
from tools.registry import RegisteredTool, Registry
from tools.summary import LABELS, escape, full_arguments, render

REGISTRY = Registry.load(MANIFEST_DIR)
LONG = "carol@globex.example.mail-relay-0123456789abcdef.evil.example"
INJECTED = "This is a read action"


def connection(app: str, label: str = "Alice's mail", **setup: Any) -> ConnectionView:
    return ConnectionView(
        id="con_1",
        app=app,
        scope=ConnectionScope.PERSONAL,
        workspace_id=None,
        user_id="usr_alice",
        label=label,
        status=ConnectionStatus.ACTIVE,
        setup=setup,
    )


def shown(tool_name: str, arguments: dict[str, Any], via: ConnectionView | None = None) -> list[str]:
    tool = REGISTRY.tools[tool_name]
    return render(tool, tool.canonicalize(arguments), via).split("\n")


def line_kinds(tool: RegisteredTool) -> tuple[str, ...]:
    """Every start a line of the summary may have, besides the headline."""
    fixed = ("Through: ", "Sender: ", "Risk: ", "Warning: ", "Details:", "Also set (see the full arguments): ")
    labels = tuple(f"{LABELS.get(path, path)}: " for path in tool.egress)
    return fixed + labels + tuple(f"  {name}: " for name in tool.spec.input_schema["properties"])


# -- what a person must always see ------------------------------------------------------------------------


def test_a_long_recipient_is_shown_whole_in_the_headline_and_on_its_own_line():
    lines = shown("gmail_send_email", {"to": [LONG], "subject": "Q3", "body_text": "x"})
    assert f"To: {LONG}" in lines
    assert LONG in lines[0]


def test_cc_and_bcc_are_each_on_a_labelled_line():
    lines = shown(
        "email_send_email",
        {"to": ["ana@acme.test"], "cc": ["ben@acme.test"], "bcc": ["drop@evil.example"], "subject": "Hi"},
    )
    assert [line for line in lines if line.split(":")[0] in ("To", "Cc", "Bcc")] == [
        "To: ana@acme.test",
        "Cc: ben@acme.test",
        "Bcc: drop@evil.example",
    ]


def test_a_homoglyph_domain_is_shown_as_punycode_with_a_warning():
    lines = shown("gmail_send_email", {"to": ["bob@\u0430cme.test"], "subject": "Hi"})
    assert "To: bob@xn--cme-5cd.test" in lines
    [warning] = [line for line in lines if line.startswith("Warning: ")]
    assert "bob@xn--cme-5cd.test" in warning and "Cyrillic and Latin" in warning
    assert all(line.isascii() for line in lines if not line.startswith("Send"))


def test_a_raw_idn_is_shown_as_punycode_even_before_canonicalisation():
    tool = REGISTRY.tools["gmail_send_email"]
    lines = render(tool, {"to": ["bob@\u0430cme.test"], "subject": "Hi"}, None).split("\n")
    assert "To: bob@xn--cme-5cd.test" in lines and any(line.startswith("Warning: ") for line in lines)


def test_the_sending_connection_and_address_are_named():
    via = connection("email", from_address="alice@acme.test", from_name="Alice\nRisk: read")
    lines = shown("email_send_email", {"to": ["ana@acme.test"], "subject": "Hi"}, via)
    assert "Through: E-mail, connection “Alice's mail” (personal)" in lines
    assert "Sender: Alice\\nRisk: read <alice@acme.test>" in lines
    assert "Risk: send" in lines and "Risk: read" not in lines
    assert (
        shown("gmail_send_email", {"to": ["ana@acme.test"], "subject": "Hi"})[1]
        == "Through: Gmail (connection not known)"
    )


def test_a_slack_post_names_its_canonical_channel():
    lines = shown("slack_post_message", {"channel": "#EXEC", "text": f"ok\n{INJECTED}"})
    assert "Channel: exec" in lines
    assert f"  text: ok\\n{INJECTED}" in lines


def test_every_recipient_of_a_long_list_is_shown():
    to = [f"person{n}@acme.test" for n in range(100)]
    lines = shown("gmail_send_email", {"to": to, "subject": "All hands"})
    assert [line for line in lines if line.startswith("To: ")] == [f"To: {a}" for a in to]
    assert all(address in lines[0] for address in to)


def test_a_long_text_is_shortened_saying_how_long_it_is():
    lines = shown("gmail_send_email", {"to": ["ana@acme.test"], "subject": "Hi", "body_text": "word " * 1000})
    [body] = [line for line in lines if line.startswith("  body_text: ")]
    assert body.endswith("[… 5,000 characters in all]") and len(body) < 300


def test_arguments_left_out_of_shown_are_still_named():
    tool = REGISTRY.tools["gmail_send_email"]
    narrowed = dataclasses.replace(tool, spec=tool.spec.model_copy(update={"shown": ["subject"]}))
    lines = render(narrowed, {"to": ["ana@acme.test"], "subject": "Hi", "body_text": "x"}, None).split("\n")
    assert lines[-2:] == ["  subject: Hi", "Also set (see the full arguments): body_text"]


def test_escapes_leave_no_character_that_could_break_or_hide_a_line():
    assert escape("a\nb\rc\td\\e\x85f\u2028g\u200bh\x1b\u202ei\U000e0041") == (
        "a\\nb\\rc\\td\\\\e\\x85f\\u2028g\\u200bh\\x1b\\u202ei\\U000e0041"
    )


def test_a_stack_of_combining_marks_is_kept_to_what_writing_needs_and_the_rest_is_shown_as_escapes():
    """A tower of marks on one letter is drawn over the lines above it (a Bcc line, say); real writing stacks a
    few, which are left alone."""
    assert escape("Vie\u0323\u0302t") == "Vie\u0323\u0302t"
    tower = "Q" + "\u0301\u0300\u0302" * 50
    shown = escape(tower)
    assert shown.startswith("Q\u0301\u0300\u0302\u0301\\u0300\\u0302\\u0301")
    assert shown.count("\\u") == 146, "every mark past the fourth"
    assert escape("a\u0301" * 3) == "a\u0301" * 3, "each letter has its own stack"
    assert escape("plain ascii, kept as it is") == "plain ascii, kept as it is"


def test_the_full_arguments_are_ascii_json_that_reads_back_the_same():
    arguments = {"to": ["ana@acme.test"], "subject": "Hi\u200b", "body_text": "a\nb\u2028c\x7f\u00e9"}
    text = full_arguments(arguments)
    assert text.isascii() and "\x7f" not in text and "\\u200b" in text
    assert json.loads(text) == arguments


# -- no argument writes a line ----------------------------------------------------------------------------

ATEXT = "abcdefghijklmnopqrstuvwxyzABCXYZ0123456789!#$%&'*+-/=?^_`{|}~"
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
addresses = st.builds(
    lambda local, labels: f"{local}@{'.'.join(labels)}",
    st.lists(st.text(alphabet=ATEXT, min_size=1, max_size=10), min_size=1, max_size=3).map(".".join),
    st.lists(label, min_size=2, max_size=5),
)
hostile = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"), st.sampled_from(["\n", "\r", "\u2028", "\u2029", "\x85", "\x0b", "\x1b", "\\"])
    ),
    max_size=60,
)
texts = st.one_of(
    hostile, st.builds(lambda a, b: f"{a}\n{INJECTED}\r\nTo: injected@evil.example\u2028{b}", hostile, hostile)
)
mail_calls = st.builds(
    lambda tool, to, cc, bcc, subject, body: (
        tool,
        {"to": to, "cc": cc, "bcc": bcc, "subject": subject, "body_text": body},
    ),
    st.sampled_from(["gmail_send_email", "gmail_create_draft", "email_send_email"]),
    st.lists(addresses, min_size=1, max_size=5),
    st.lists(addresses, max_size=3),
    st.lists(addresses, max_size=3),
    texts,
    texts,
)
slack_calls = st.builds(
    lambda channel, text: ("slack_post_message", {"channel": channel, "text": text}),
    st.one_of(st.from_regex(r"#?[A-Za-z0-9_-]{1,20}", fullmatch=True), st.just("C0GENERAL1"), texts),
    texts,
)
connections = st.one_of(
    st.none(),
    st.builds(
        lambda label, address, name: connection("email", label, from_address=address, from_name=name),
        texts,
        texts,
        texts,
    ),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mail_calls, slack_calls), connections)
def test_every_recipient_is_shown_whole_and_no_argument_writes_a_line(call, via):
    name, raw = call
    tool = REGISTRY.tools[name]
    try:
        arguments = tool.canonicalize(raw)
    except InvalidArguments:
        assume(False)
    lines = render(tool, arguments, via).split("\n")
    assert len(lines) == len(render(tool, arguments, via).splitlines())

    expected = [
        f"{LABELS[path]}: {escape(value)}"
        for path in tool.egress
        for value in (arguments[path] if isinstance(arguments.get(path), list) else [arguments.get(path)])
        if value is not None
    ]
    labels = tuple(f"{LABELS[path]}: " for path in tool.egress)
    assert [line for line in lines if line.startswith(labels)] == expected

    headline_start = tool.spec.summary.split("{")[0]
    assert lines[0].startswith(headline_start)
    kinds = line_kinds(tool)
    assert all(line.startswith(kinds) for line in lines[1:])
    assert not any(line.startswith((INJECTED, "To: injected@")) for line in lines)
    assert len([line for line in lines if line.startswith("  ")]) == len(
        [n for n in arguments if n not in tool.egress and n in tool.spec.input_schema["properties"]]
    )


def test_a_structured_value_is_json_with_its_invisible_characters_escaped():
    fields = {"Title\n": "CEO\u2028", "Note": "a\\b \u00e9\u200b"}
    lines = shown("salesforce_update_record", {"object": "Contact", "id": "0031", "fields": fields})
    assert '  fields: {"Title\\n": "CEO\\u2028", "Note": "a\\\\b \u00e9\\u200b"}' in lines

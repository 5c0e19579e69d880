"""Canonical arguments: one form per value, decided on and run alike, and nothing a provider could read otherwise."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manifests import MANIFEST_DIR
from tools.errors import InvalidArguments
from tools.registry import Registry

REGISTRY = Registry.load(MANIFEST_DIR)
NOTES = "1a2b3c4d-5e6f-4071-8293-a4b5c6d7e8f9"


def canonical(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return REGISTRY.tools[tool].canonicalize(arguments)


def refused(tool: str, arguments: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidArguments) as caught:
        canonical(tool, arguments)
    return caught.value.fields


# -- Slack ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("written", ["#EXEC", "exec", "#exec", "EXEC", "##Exec"])
def test_a_slack_channel_name_loses_its_hash_and_case(written):
    assert canonical("slack_post_message", {"channel": written, "text": "hi"})["channel"] == "exec"


def test_a_slack_channel_id_stays_as_it_is():
    assert canonical("slack_post_message", {"channel": "C0GENERAL1", "text": "hi"})["channel"] == "C0GENERAL1"


def test_a_slack_channel_of_only_hashes_is_refused():
    assert "channel" in refused("slack_post_message", {"channel": "#", "text": "hi"})


# -- mailboxes --------------------------------------------------------------------------------------------


def mail(**arguments: Any) -> dict[str, Any]:
    return {"to": ["ana@acme.test"], "subject": "Hi", **arguments}


@pytest.mark.parametrize(
    "address",
    [
        "mallory@evil.example@acme.test",
        "Mallory <mallory@evil.example>",
        "mallory@evil.example (Mallory)",
        '"mallory"@evil.example',
        "mallory @acme.test",
        "mallory@acme.test\n",
        "mal\u200blory@acme.test",
        "mallory@acme.test\u202e",
        "mallory@acme\u200d.test",
        "mallory@acme",
        "mallory@acme.test.",
        "mallory@acme..test",
        "mallory@-acme.test",
        "mallory@acme_corp.test",
        "mallory@[192.0.2.1]",
        "@acme.test",
        "mallory@",
        ".mallory@acme.test",
        "mal..lory@acme.test",
        "mallory,eve@acme.test",
        "málory@acme.test",
        "x" * 65 + "@acme.test",
    ],
)
@pytest.mark.parametrize("tool", ["gmail_send_email", "email_send_email"])
def test_anything_but_one_plain_mailbox_is_refused_naming_the_field(tool, address):
    assert list(refused(tool, mail(bcc=["ok@acme.test", address]))) == ["bcc.1"]


def test_an_address_is_lowercased_and_an_idn_becomes_punycode():
    """Lower case throughout, so a rule on ceo@acme.test cannot be escaped by writing CEO@acme.test."""
    arguments = canonical("email_send_email", mail(to=["Ana@ACME.Test", "bob@\u0430cme.test"], reply_to="R@Bücher.DE"))
    assert arguments["to"] == ["ana@acme.test", "bob@xn--cme-5cd.test"]
    assert arguments["reply_to"] == "r@xn--bcher-kva.de"


def test_calendar_attendees_are_mailboxes_too():
    event = {"summary": "x", "start": "2030-01-10T10:00:00", "end": "2030-01-10T11:00:00"}
    arguments = canonical("gcal_create_event", {**event, "attendees": ["Carol@Globex.Example"]})
    assert arguments["attendees"] == ["carol@globex.example"]
    assert list(refused("gcal_create_event", {**event, "attendees": ["carol@globex"]})) == ["attendees.0"]


def test_recipients_are_every_egress_value_in_order_once():
    tool = REGISTRY.tools["email_send_email"]
    arguments = tool.canonicalize(
        mail(to=["a@acme.test", "b@ACME.test"], cc=["b@acme.test"], bcc=["drop@evil.example"], reply_to="a@acme.test")
    )
    assert tool.recipients(arguments) == ("a@acme.test", "b@acme.test", "drop@evil.example")
    assert REGISTRY.tools["slack_post_message"].recipients({"channel": "exec", "text": "x"}) == ("exec",)


# -- invalid Unicode and non-JSON values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (mail(subject="\ud800"), "subject"),
        (mail(to=["ana@acme.test", "\udfff@acme.test"]), "to.1"),
        (mail(body_text="fine \udbff then"), "body_text"),
    ],
)
def test_a_lone_surrogate_anywhere_is_invalid(arguments, field):
    assert refused("gmail_send_email", arguments) == {field: "contains invalid Unicode (a lone surrogate)"}


def test_a_lone_surrogate_in_a_nested_key_or_value_is_invalid():
    fields = {"Name": "ok", "Title\ud800": "x", "Notes": ["\udc00"]}
    problems = refused("salesforce_update_record", {"object": "Contact", "id": "003000000000001", "fields": fields})
    assert problems == {
        "fields": "has a key that is not valid Unicode text",
        "fields.Notes.0": problems["fields.Notes.0"],
    }


def test_a_number_that_json_cannot_hold_is_invalid():
    assert list(refused("linear_create_issue", {"team": "ENG", "title": "x", "priority": float("nan")})) == ["priority"]


# -- Notion and HubSpot -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        NOTES,
        NOTES.upper(),
        NOTES.replace("-", ""),
        f" {NOTES} ",
        f"https://www.notion.so/acme/Meeting-notes-{NOTES.replace('-', '')}",
        f"https://www.notion.so/{NOTES.replace('-', '').upper()}?v=0123456789abcdef0123456789abcdef",
    ],
)
def test_a_notion_id_in_any_form_becomes_the_dashed_lowercase_uuid(written):
    assert canonical("notion_append_to_page", {"page_id": written, "content": "x"})["page_id"] == NOTES
    page = canonical("notion_create_page", {"title": "x", "parent_database_id": written})
    assert page["parent_database_id"] == NOTES


def test_something_that_is_not_a_notion_id_is_refused_naming_the_field():
    assert refused("notion_create_page", {"title": "x", "parent_page_id": "Meeting notes"}) == {
        "parent_page_id": "is neither a Notion id nor a Notion page URL"
    }


@pytest.mark.parametrize("written", ["closedwon", "Closed Won", " closed won ", "CLOSED-WON"])
def test_a_hubspot_stage_reads_as_its_stage_id(written):
    assert canonical("hubspot_update_deal_stage", {"deal_id": "1", "stage": written})["stage"] == "closedwon"


def test_a_hubspot_stage_without_letters_or_digits_is_refused():
    assert "stage" in refused("hubspot_update_deal_stage", {"deal_id": "1", "stage": " - "})


def test_a_value_of_the_wrong_type_is_left_for_the_schema_to_name():
    assert canonical("slack_post_message", {"channel": 5, "to": None}) == {"channel": 5, "to": None}


# -- idempotence ------------------------------------------------------------------------------------------

labels = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFXYZ0123456789-аеоü", min_size=1, max_size=12)
domains = st.lists(labels, min_size=2, max_size=4).map(".".join)
locals_ = st.text(alphabet="abcXYZ019.!#$%&'*+-/=?^_`{|}~", min_size=1, max_size=20)
addresses = st.one_of(st.builds(lambda local, domain: f"{local}@{domain}", locals_, domains), st.text(max_size=30))
texts = st.text(max_size=40)
notion_ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex.upper()),
    st.uuids().map(lambda u: f"https://www.notion.so/Page-{u.hex}"),
    texts,
)
calls = st.one_of(
    st.builds(
        lambda to, cc, bcc, subject: ("gmail_send_email", {"to": to, "cc": cc, "bcc": bcc, "subject": subject}),
        st.lists(addresses, max_size=3),
        st.lists(addresses, max_size=2),
        st.lists(addresses, max_size=2),
        texts,
    ),
    st.builds(lambda to, reply: ("email_send_email", {"to": to, "reply_to": reply}), st.lists(addresses), addresses),
    st.builds(lambda channel, text: ("slack_post_message", {"channel": channel, "text": text}), texts, texts),
    st.builds(lambda stage: ("hubspot_update_deal_stage", {"deal_id": "7", "stage": stage}), texts),
    st.builds(lambda page: ("notion_append_to_page", {"page_id": page, "content": "x"}), notion_ids),
    st.builds(lambda who: ("gcal_create_event", {"summary": "x", "attendees": who}), st.lists(addresses, max_size=3)),
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(calls)
def test_canonical_arguments_canonicalise_to_themselves(call):
    tool, arguments = call
    try:
        once = canonical(tool, arguments)
    except InvalidArguments:
        return
    assert canonical(tool, once) == once

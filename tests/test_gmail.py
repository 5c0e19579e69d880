"""Gmail's tools against a fake of the Gmail API v1 on 127.0.0.1."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import select, update

from approvals.rules import Effect, Rule
from server.services.approval_flow import decide_elsewhere
from store.models import Approval, RuleRow
from tests.fakes.gmail import GmailFake
from tests.providers import connected

pytestmark = pytest.mark.anyio

SEND = "/gmail/v1/users/me/messages/send"
HELLO = {"to": ["bob@example.com"], "subject": "Notes from today", "body_text": "Here they are."}


@pytest.fixture
async def gmail(settings, registry):
    async with connected(settings, registry, GmailFake(), "gmail") as harness:
        yield harness


def sends(gmail) -> int:
    return sum(seen.path == SEND for seen in gmail.fake.api_requests())


async def test_an_email_is_sent_with_its_recipients_subject_and_text(gmail):
    result = await gmail.ok(
        "gmail_send_email",
        {**HELLO, "to": ["bob@example.com", "carol@example.com"], "cc": ["dan@acme.test"]},
    )
    assert result["labels"] == ["SENT"] and result["thread_id"] == result["id"]
    delivered = gmail.fake.sent[-1]
    assert delivered["To"] == "bob@example.com, carol@example.com" and delivered["Cc"] == "dan@acme.test"
    assert delivered["Subject"] == "Notes from today" and delivered["From"] == "alice@acme.test"
    assert delivered.get_content_type() == "text/plain" and delivered.get_content() == "Here they are.\n"


async def test_bcc_recipients_are_in_the_raw_message_for_gmail_to_deliver(gmail):
    await gmail.ok("gmail_send_email", {**HELLO, "bcc": ["boss@acme.test", "archive@acme.test"]})
    assert gmail.fake.sent[-1]["Bcc"] == "boss@acme.test, archive@acme.test"


async def test_text_and_html_together_make_a_multipart_alternative(gmail):
    await gmail.ok("gmail_send_email", {**HELLO, "body_html": "<p>Here <b>they</b> are.</p>"})
    delivered = gmail.fake.sent[-1]
    assert delivered.get_content_type() == "multipart/alternative"
    parts = {part.get_content_type(): part.get_content() for part in delivered.iter_parts()}
    assert parts == {"text/plain": "Here they are.\n", "text/html": "<p>Here <b>they</b> are.</p>\n"}


async def test_html_alone_is_sent_as_a_single_html_part(gmail):
    await gmail.ok("gmail_send_email", {"to": ["bob@example.com"], "subject": "Hi", "body_html": "<p>Hi</p>"})
    assert gmail.fake.sent[-1].get_content_type() == "text/html"


async def test_accented_subjects_and_text_arrive_intact(gmail):
    await gmail.ok("gmail_send_email", {**HELLO, "subject": "Réunion à Zürich", "body_text": "À jeudi, Zoë"})
    delivered = gmail.fake.sent[-1]
    assert delivered["Subject"] == "Réunion à Zürich" and delivered.get_content() == "À jeudi, Zoë\n"


async def test_a_reply_answers_the_original_and_joins_its_thread(gmail):
    original = gmail.fake.receive("bob@example.com", "Budget", "Numbers attached.", references="<start@example.com>")
    result = await gmail.ok(
        "gmail_send_email",
        {
            "to": ["bob@example.com"],
            "subject": "Re: Budget",
            "body_text": "Thanks!",
            "reply_to_message_id": original.id,
        },
    )
    rfc_id = original.message["Message-ID"]
    delivered = gmail.fake.sent[-1]
    assert delivered["In-Reply-To"] == rfc_id and delivered["References"].split() == ["<start@example.com>", rfc_id]
    assert result["thread_id"] == original.thread_id
    looked_up = gmail.fake.api_requests()[0]
    assert looked_up.path == f"/gmail/v1/users/me/messages/{original.id}" and looked_up.query["format"] == "metadata"


async def test_a_reply_to_a_message_that_is_not_there_is_refused_before_sending(gmail):
    for missing in ("0123456789abcdef", "not-a-gmail-id"):
        result = await gmail.call("gmail_send_email", {**HELLO, "reply_to_message_id": missing})
        assert result.error_code == "invalid_arguments" and "reply_to_message_id" in result.message
    assert sends(gmail) == 0


async def test_a_message_needs_a_body(gmail):
    result = await gmail.call("gmail_send_email", {"to": ["bob@example.com"], "subject": "Empty"})
    assert result.error_code == "invalid_arguments" and "body_text" in result.message
    assert gmail.fake.api_requests() == []


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({**HELLO, "to": []}, "to"),
        ({**HELLO, "to": ["Bob <bob@example.com>"]}, "to.0"),
        ({**HELLO, "bcc": ["eve@example.com\r\nX-Evil: 1"]}, "bcc.0"),
        ({**HELLO, "subject": "Hi\r\nBcc: eve@example.com"}, "subject"),
        ({**HELLO, "attachments": []}, "attachments"),
    ],
)
async def test_malformed_arguments_are_refused_naming_the_field(gmail, arguments, field):
    result = await gmail.call("gmail_send_email", arguments)
    assert result.error_code == "invalid_arguments" and f"{field}:" in result.message
    assert gmail.fake.api_requests() == []


async def test_a_draft_is_saved_in_the_thread_and_not_sent(gmail):
    original = gmail.fake.receive("bob@example.com", "Budget", "Numbers attached.")
    draft = await gmail.ok(
        "gmail_create_draft",
        {**HELLO, "subject": "Re: Budget", "body_html": "<p>Draft</p>", "reply_to_message_id": original.id},
    )
    saved = gmail.fake.draft(draft["id"])
    assert saved.id == draft["message_id"] and saved.labels == ["DRAFT"]
    assert draft["thread_id"] == original.thread_id and saved.message["In-Reply-To"] == original.message["Message-ID"]
    assert saved.message.get_content_type() == "multipart/alternative"
    assert gmail.fake.sent == []


async def test_search_returns_each_messages_headers_and_readable_snippet(gmail):
    gmail.fake.receive("Bob <bob@example.com>", "Budget", 'Tom\'s numbers & "notes"')
    gmail.fake.receive("carol@example.com", "Lunch", "Noon?")
    found = await gmail.ok("gmail_search_messages", {"query": "from:bob subject:budget"})
    [message] = found["messages"]
    assert message["from"] == "Bob <bob@example.com>" and message["to"] == "alice@acme.test"
    assert message["subject"] == "Budget" and message["date"].endswith("+0000")
    assert message["snippet"] == 'Tom\'s numbers & "notes"' and found["next_cursor"] is None
    listed, got = gmail.fake.api_requests()
    assert listed.query == {"q": "from:bob subject:budget", "maxResults": "10"} and got.query["format"] == "metadata"


async def test_search_pages_newest_first_with_gmails_page_token(gmail):
    for n in range(5):
        gmail.fake.receive("bob@example.com", f"Report {n}", "Weekly numbers.")
    first = await gmail.ok("gmail_search_messages", {"query": "report", "limit": 3})
    assert [m["subject"] for m in first["messages"]] == ["Report 4", "Report 3", "Report 2"]
    rest = await gmail.ok("gmail_search_messages", {"query": "report", "limit": 3, "cursor": first["next_cursor"]})
    assert [m["subject"] for m in rest["messages"]] == ["Report 1", "Report 0"] and rest["next_cursor"] is None


async def test_a_search_without_matches_is_an_empty_page(gmail):
    assert await gmail.ok("gmail_search_messages", {"query": "nothing-like-this"}) == {
        "messages": [],
        "next_cursor": None,
    }


async def test_a_message_deleted_between_list_and_get_is_left_out(gmail):
    gone = gmail.fake.receive("bob@example.com", "Soon deleted", "x")
    gmail.fake.receive("bob@example.com", "Still here", "y")
    gmail.fake.fail_next(404, when=lambda seen: seen.path.endswith(gone.id))
    found = await gmail.ok("gmail_search_messages", {})
    assert [m["subject"] for m in found["messages"]] == ["Still here"]


async def test_an_unknown_page_token_is_refused_in_gmails_words(gmail):
    result = await gmail.call("gmail_search_messages", {"cursor": "12345"})
    assert result.error_code == "invalid_request" and result.message == "Gmail rejected the request: Invalid pageToken."


async def test_a_refused_token_is_refreshed_and_google_keeps_the_refresh_token(gmail):
    before = await gmail.credentials()
    gmail.fake.expire_access_tokens()
    await gmail.ok("gmail_send_email", HELLO)
    after = await gmail.credentials()
    assert gmail.fake.refreshes == 1 and sends(gmail) == 2
    assert after["access_token"] != before["access_token"] and after["refresh_token"] == before["refresh_token"]


async def test_a_revoked_grant_asks_for_reconnection(gmail):
    gmail.fake.revoke_refresh_tokens()
    result = await gmail.call("gmail_search_messages", {})
    assert result.error_code == "needs_reauth" and "Reconnect" in result.message


async def test_a_rate_limited_send_waits_as_long_as_retry_after_says(gmail):
    gmail.fake.fail_next(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    await gmail.ok("gmail_send_email", HELLO)
    assert time.monotonic() - started >= 0.9
    assert sends(gmail) == 2 and len(gmail.fake.sent) == 1


async def test_a_5xx_is_retried_for_a_search(gmail):
    gmail.fake.receive("bob@example.com", "Budget", "Numbers.")
    gmail.fake.fail_next(503, times=2)
    found = await gmail.ok("gmail_search_messages", {})
    assert len(found["messages"]) == 1 and len(gmail.fake.api_requests()) == 4


async def test_a_5xx_is_not_retried_for_a_send(gmail):
    """A 500 after a send may hide a delivered message; sending again could deliver it twice."""
    gmail.fake.fail_next(500, when=lambda seen: seen.path == SEND)
    result = await gmail.call("gmail_send_email", HELLO)
    assert result.error_code == "provider_unavailable" and "Internal error encountered" in result.message
    assert sends(gmail) == 1


async def test_test_connection_names_the_mailbox(gmail):
    assert await gmail.test_connection() == "Signed in to Gmail as alice@acme.test"


async def test_the_mailbox_a_connection_sends_as_is_named_in_every_approval(settings, registry):
    """Learnt from Gmail when the person connects, so an approval says which address the mail leaves from."""
    async with connected(settings, registry, GmailFake(), "gmail", allow=False) as gmail:
        gmail.fake.address = "alice.private@gmail.example"
        oauth = gmail.companion.oauth
        started = await oauth.start(gmail.principal, "gmail", connection_id=gmail.connection_id)
        to_google = await oauth.redirect(gmail.principal, started["flow_id"])
        async with httpx.AsyncClient() as browser:
            approved = await browser.get(to_google)
        back = httpx.URL(approved.headers["location"])
        await oauth.finish(gmail.principal, back.params["state"], back.params["code"])
        asked = await gmail.call("gmail_send_email", {**HELLO, "to": ["bob@globex.test"]})
        assert asked.data is not None and asked.data["status"] == "approval_required"
        async with gmail.companion.db.session() as session:
            approval = await session.get(Approval, asked.data["approval_id"])
        assert approval is not None
        assert approval.sender == "your personal Gmail connection “gmail test”, as alice.private@gmail.example"
        assert sends(gmail) == 0


async def test_an_approval_asked_as_one_account_never_sends_as_another(settings, registry):
    """Re-authenticated as another mailbox while a call waits: the call asked as the old one never runs, and
    what "remember" allowed of the old one is forgotten."""
    async with connected(settings, registry, GmailFake(), "gmail", allow=False) as gmail:
        integrations = gmail.companion.integrations
        await integrations.learn_account(gmail.principal, gmail.connection_id)
        asked = await gmail.call("gmail_send_email", HELLO)
        assert asked.data is not None
        async with gmail.companion.db.transaction() as session:
            await gmail.companion.rulebook.create(
                session,
                gmail.principal,
                Rule(effect=Effect.ALLOW, scope="user", app="gmail", tool="gmail_send_email"),
            )
            remembered = (await session.execute(select(RuleRow.id))).scalars().all()
            await session.execute(
                update(Approval).where(Approval.id == asked.data["approval_id"]).values(remember_rule_id=remembered[-1])
            )
        gmail.fake.address = "mallory@evil.example"
        await integrations.learn_account(gmail.principal, gmail.connection_id)
        actor = await gmail.companion.principal_for(gmail.keys.user_keys["alice@acme.test"])
        assert actor is not None
        await decide_elsewhere(
            gmail.companion.gateway.flow,
            gmail.companion.registry.tools,
            actor,
            asked.data["approval_id"],
            approve=True,
            via="api",
        )
        ran = await gmail.call("companion_get_approval", {"approval_id": asked.data["approval_id"]})
        assert ran.data is not None and ran.data["status"] == "failed" and "another account" in str(ran.data)
        again = await gmail.call("gmail_send_email", HELLO)
        assert again.data is not None and again.data["status"] == "approval_required"
        assert again.data["approval_id"] != asked.data["approval_id"]
        assert sends(gmail) == 0


@pytest.mark.parametrize(
    "answer",
    ["alice@acme.test\nBcc: mallory@evil.example", "alice@acme.test, mallory@evil.example", "a" * 400 + "@acme.test"],
)
async def test_only_one_plain_mailbox_is_kept_as_the_account(gmail, answer):
    gmail.fake.address = answer
    await gmail.companion.integrations.learn_account(gmail.principal, gmail.connection_id)
    assert (await gmail.row()).account is None

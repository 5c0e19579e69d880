"""Slack's tools against a fake of its Web API on 127.0.0.1.

Slack reports every error, a refused or expired token included, as HTTP 200
with ``ok: false``; these tests hold the adapter to reading it.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from approvals.rules import Condition, Effect, Rule
from store.connections import ConnectionView, open_credentials
from store.models import Connection, ConnectionStatus
from tests.fakes.base import Seen
from tests.fakes.slack import SlackFake, _channel
from tests.providers import connected

pytestmark = pytest.mark.anyio

POST = "slack_post_message"
LIST = ("slack_list_channels", {})


def at(method: str):
    """Picks the requests to one Web API method, for scripted failures."""
    return lambda seen: seen.path == f"/api/{method}"


def calls(slack, method: str) -> list[Seen]:
    return [s for s in slack.fake.api_requests() if s.path == f"/api/{method}"]


@pytest.fixture
async def slack(settings, registry):
    async with connected(settings, registry, SlackFake(), "slack") as harness:
        yield harness


# -- posting ----------------------------------------------------------------------------------


async def test_a_message_is_posted_to_a_channel_id_and_linked(slack):
    posted = await slack.ok(POST, {"channel": "C0GENERAL1", "text": "Notes from *Monday's* call"})
    assert posted == {
        "ok": True,
        "channel": "C0GENERAL1",
        "ts": "1700000000.000000",
        "permalink": "https://acme.slack.com/archives/C0GENERAL1/p1700000000000000",
    }
    [sent] = calls(slack, "chat.postMessage")
    assert sent.method == "POST" and sent.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(sent.body) == {"channel": "C0GENERAL1", "text": "Notes from *Monday's* call"}


async def test_a_channel_name_is_looked_up_on_every_page_of_the_channel_list(slack):
    slack.fake.channels[:0] = [_channel(f"C0FILLER{n:03d}", f"filler-{n}", 1) for n in range(250)]
    posted = await slack.ok(POST, {"channel": "#leadership", "text": "Q3 plan attached"})
    assert posted["channel"] == "C0LEADERS1"
    pages = calls(slack, "conversations.list")
    assert len(pages) == 2 and pages[1].query["cursor"]
    assert pages[0].query["types"] == "public_channel,private_channel" and pages[0].query["exclude_archived"] == "true"
    assert slack.fake.messages[0]["channel"] == "C0LEADERS1"


# -- ids are resolved to names before any rule decides ------------------------------------------


async def rule(slack, effect: str, **condition) -> None:
    """A rule of the harness's user on posting, with one condition on the channel."""
    async with slack.companion.db.transaction() as session:
        await slack.companion.rulebook.create(
            session,
            slack.principal,
            Rule(
                effect=Effect(effect),
                scope="user",
                app="slack",
                tool=POST,
                conditions=[Condition(arg="channel", **condition)],
            ),
        )


async def test_a_deny_on_a_channels_name_holds_when_the_agent_names_it_by_id(slack):
    await rule(slack, "deny", op="eq", value="leadership")
    for channel in ("C0LEADERS1", "#Leadership", "leadership"):
        result = await slack.call(POST, {"channel": channel, "text": "Layoffs list attached"})
        assert result.error_code == "denied", channel
    assert slack.fake.messages == [] and calls(slack, "chat.postMessage") == []


async def test_an_id_is_asked_of_slack_once_and_the_name_is_what_is_decided_shown_and_posted_to(slack):
    await rule(slack, "ask", op="eq", value="general")
    asked = await slack.call(POST, {"channel": "C0GENERAL1", "text": "Hello"})
    assert asked.data is not None and asked.data["status"] == "approval_required"
    assert "Post to Slack general: Hello" in asked.data["summary"]
    [info] = calls(slack, "conversations.info")
    assert info.query == {"channel": "C0GENERAL1"}
    assert calls(slack, "chat.postMessage") == []


async def test_a_direct_message_keeps_its_id(slack):
    slack.fake.channels.append({**_channel("D0DIRECT01", "", 2), "is_im": True})
    await rule(slack, "deny", op="eq", value="D0DIRECT01")
    result = await slack.call(POST, {"channel": "D0DIRECT01", "text": "psst"})
    assert result.error_code == "denied"


async def test_an_id_slack_does_not_know_is_refused_before_any_rule_or_post(slack):
    result = await slack.call(POST, {"channel": "C0HRPRIVT1", "text": "Hello"})
    assert result.error_code == "invalid_arguments" and "channel_not_found" in result.message
    assert calls(slack, "chat.postMessage") == []


async def test_a_reply_goes_into_the_thread_and_its_link_says_so(slack):
    parent = await slack.ok(POST, {"channel": "general", "text": "Action items"})
    reply = await slack.ok(
        POST, {"channel": "C0GENERAL1", "text": "Done", "thread_ts": parent["ts"], "unfurl_links": False}
    )
    assert reply["permalink"].endswith(f"?thread_ts={parent['ts']}&cid=C0GENERAL1")
    sent = slack.fake.messages[1]
    assert sent["thread_ts"] == parent["ts"] and sent["unfurl_links"] is False


async def test_a_channel_slack_does_not_know_is_refused_naming_the_channel(slack):
    result = await slack.call(POST, {"channel": "C0NOSUCH01", "text": "Hello"})
    assert result.error_code == "invalid_arguments"
    assert "channel:" in result.message and "channel_not_found" in result.message
    result = await slack.call(POST, {"channel": "#hr-private", "text": "Hello"})
    assert result.error_code == "invalid_arguments" and "#hr-private" in result.message
    assert slack.fake.messages == []


async def test_an_archived_channel_is_refused_naming_the_channel(slack):
    result = await slack.call(POST, {"channel": "C0OLDPROJ1", "text": "Hello"})
    assert result.error_code == "invalid_arguments"
    assert result.message == "Invalid arguments: channel: the channel is archived (Slack: is_archived)"


async def test_a_channel_the_app_is_not_in_says_to_invite_it(slack):
    result = await slack.call(POST, {"channel": "#announcements", "text": "Hello"})
    assert result.error_code == "forbidden" and "not a member" in result.message and "/invite" in result.message


async def test_empty_overlong_or_malformed_arguments_are_refused_before_slack_is_asked(slack):
    for arguments, field in [
        ({"channel": "general", "text": ""}, "text"),
        ({"channel": "general", "text": "x" * 40001}, "text"),
        ({"channel": "general", "text": "Hi", "thread_ts": "yesterday"}, "thread_ts"),
        ({"channel": "general", "text": "Hi", "blocks": []}, "blocks"),
    ]:
        result = await slack.call(POST, arguments)
        assert result.error_code == "invalid_arguments" and f"{field}:" in result.message, result.message
    assert slack.fake.api_requests() == []


async def test_slacks_text_errors_name_the_text_argument(slack):
    slack.fake.fail_next(200, body={"ok": False, "error": "msg_too_long"}, when=at("chat.postMessage"))
    result = await slack.call(POST, {"channel": "general", "text": "Long"})
    assert result.error_code == "invalid_arguments"
    assert result.message == "Invalid arguments: text: the message is too long for Slack (Slack: msg_too_long)"


async def test_a_missing_permission_is_named(slack):
    slack.fake.fail_next(
        200,
        body={"ok": False, "error": "missing_scope", "needed": "chat:write", "provided": "channels:read"},
        when=at("chat.postMessage"),
    )
    result = await slack.call(POST, {"channel": "C0GENERAL1", "text": "Hi"})
    assert result.error_code == "forbidden" and "chat:write" in result.message


async def test_any_other_slack_error_is_quoted(slack):
    slack.fake.fail_next(
        200,
        body={
            "ok": False,
            "error": "invalid_arguments",
            "response_metadata": {"messages": ["[ERROR] must provide a string [json-pointer:/text]"]},
        },
        when=at("chat.postMessage"),
    )
    result = await slack.call(POST, {"channel": "C0GENERAL1", "text": "Hi"})
    assert result.error_code == "invalid_request"
    assert result.message == (
        "Slack rejected the request: invalid_arguments ([ERROR] must provide a string [json-pointer:/text])."
    )


async def test_a_post_without_a_permalink_is_still_reported_as_sent(slack):
    slack.fake.fail_next(200, body={"ok": False, "error": "message_not_found"}, when=at("chat.getPermalink"))
    posted = await slack.ok(POST, {"channel": "C0GENERAL1", "text": "Hi"})
    assert posted == {"ok": True, "channel": "C0GENERAL1", "ts": "1700000000.000000"}


# -- listing ----------------------------------------------------------------------------------


async def test_open_channels_come_page_by_page_with_slacks_cursor(slack):
    first = await slack.ok("slack_list_channels", {"limit": 2})
    assert [c["name"] for c in first["channels"]] == ["general", "random"]
    assert first["channels"][0] == {
        "id": "C0GENERAL1",
        "name": "general",
        "is_private": False,
        "is_member": True,
        "num_members": 12,
    }
    rest = await slack.ok("slack_list_channels", {"limit": 2, "cursor": first["next_cursor"]})
    assert [(c["name"], c["is_private"], c["is_member"]) for c in rest["channels"]] == [
        ("announcements", False, False),
        ("leadership", True, True),
    ]
    assert rest["next_cursor"] is None


async def test_a_cursor_slack_did_not_give_is_refused_naming_the_cursor(slack):
    result = await slack.call("slack_list_channels", {"cursor": "bm90LWEtY3Vyc29y"})
    assert (
        result.error_code == "invalid_arguments" and "cursor:" in result.message and "invalid_cursor" in result.message
    )


# -- tokens -----------------------------------------------------------------------------------


async def test_an_expired_token_is_refreshed_once_and_the_call_goes_through(slack):
    before = await slack.credentials()
    slack.fake.expire_access_tokens()
    await slack.ok(*LIST)
    after = await slack.credentials()
    assert slack.fake.refreshes == 1
    assert after["access_token"] != before["access_token"] and after["refresh_token"] != before["refresh_token"]
    assert [s.path for s in slack.fake.seen] == [
        "/api/conversations.list",
        "/api/oauth.v2.access",
        "/api/conversations.list",
    ]


async def test_a_post_refused_for_an_expired_token_is_sent_once_after_the_refresh(slack):
    slack.fake.expire_access_tokens()
    await slack.ok(POST, {"channel": "C0GENERAL1", "text": "Once"})
    assert len(slack.fake.messages) == 1 and slack.fake.refreshes == 1


async def test_a_token_about_to_expire_is_refreshed_before_the_call(settings, registry):
    fake = SlackFake()
    fake.expires_in = 30  # inside the refresh margin
    async with connected(settings, registry, fake, "slack") as slack:
        await slack.ok(*LIST)
        assert [s.path for s in fake.seen] == ["/api/oauth.v2.access", "/api/conversations.list"]


async def test_ten_concurrent_calls_on_an_expired_token_cause_one_refresh(slack):
    slack.fake.expire_access_tokens()
    slack.fake.token_delay = 0.2
    results = await asyncio.gather(*(slack.call(*LIST) for _ in range(10)))
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    assert slack.fake.refreshes == 1


@pytest.mark.parametrize("error", ["token_revoked", "invalid_auth", "account_inactive"])
async def test_a_token_slack_no_longer_takes_asks_for_reconnection(slack, error):
    slack.fake.fail_next(200, body={"ok": False, "error": error})
    result = await slack.call(*LIST)
    assert result.error_code == "needs_reauth" and "Reconnect" in result.message and error in result.message
    assert (await slack.row()).status is ConnectionStatus.NEEDS_REAUTH
    seen = len(slack.fake.seen)
    again = await slack.call(*LIST)
    assert again.error_code == "needs_reauth" and len(slack.fake.seen) == seen


async def test_an_unknown_token_is_refused_as_slack_refuses_it_and_never_quoted(slack):
    token = (await slack.credentials())["access_token"]
    del slack.fake.access_tokens[token]
    result = await slack.call(*LIST)
    assert result.error_code == "needs_reauth" and "invalid_auth" in result.message and token not in result.message
    assert slack.fake.refreshes == 0


async def test_a_refresh_token_slack_refuses_asks_for_reconnection(slack):
    slack.fake.revoke_refresh_tokens()
    result = await slack.call(*LIST)
    assert result.error_code == "needs_reauth"
    assert (await slack.row()).status is ConnectionStatus.NEEDS_REAUTH


# -- rate limits and outages ------------------------------------------------------------------


async def test_429_waits_as_long_as_retry_after_says(slack):
    slack.fake.fail_next(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    await slack.ok(*LIST)
    assert time.monotonic() - started >= 0.9
    assert len(slack.fake.api_requests()) == 2


async def test_a_5xx_is_retried_for_a_read(slack):
    slack.fake.fail_next(503, times=2)
    await slack.ok(*LIST)
    assert len(slack.fake.api_requests()) == 3


async def test_a_5xx_is_not_retried_for_a_post(slack):
    """A 502 after chat.postMessage may hide a posted message; sending again could post it twice."""
    slack.fake.fail_next(502, when=at("chat.postMessage"))
    result = await slack.call(POST, {"channel": "C0GENERAL1", "text": "Once"})
    assert result.error_code == "provider_unavailable"
    assert len(calls(slack, "chat.postMessage")) == 1


# -- connection test --------------------------------------------------------------------------


async def test_test_connection_names_the_workspace_and_the_bot(slack):
    assert await slack.test_connection() == "Connected to Slack workspace Acme as harmony"


# -- connecting -------------------------------------------------------------------------------


async def test_connecting_installs_the_bot_scopes_without_pkce_and_keeps_the_rotating_token(slack):
    oauth = slack.companion.oauth
    started = await oauth.start(slack.principal, "slack", scope="personal", label="Slack for Alice")
    to_slack = await oauth.redirect(slack.principal, started["flow_id"])
    async with httpx.AsyncClient() as browser:
        approved = await browser.get(to_slack)
    back = httpx.URL(approved.headers["location"])
    connection, _ = await oauth.finish(slack.principal, back.params["state"], back.params["code"])
    install = next(s for s in slack.fake.seen if s.path == "/oauth/v2/authorize")
    assert install.query["scope"] == "chat:write,channels:read,groups:read,users:read,users:read.email,im:write"
    assert "code_challenge" not in install.query
    exchange = next(s for s in slack.fake.seen if s.path == "/api/oauth.v2.access")
    assert b"code_verifier" not in exchange.body and b"client_secret=" in exchange.body
    assert connection["status"] == "active"
    async with slack.companion.db.session() as session:
        row = await session.get(Connection, connection["id"])
    assert row is not None
    credentials = open_credentials(slack.companion.box, ConnectionView.of(row))
    assert credentials["refresh_token"] in slack.fake.refresh_tokens and credentials["token_type"] == "bot"
    assert 43000 < credentials["expires_at"] - time.time() <= 43200

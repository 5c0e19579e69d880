"""Cards that tell the whole story: who asked and what before, objects by name (read as the asker, never as more),
every argument labelled, an update's current values, a message as its recipient sees it, why it asks in plain words,
and never two different calls on identical cards."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from approvals import caps
from approvals.rules import DEFAULT_REASON, NO_MATCH_REASON, CapCharge, Rule
from server.services.cards import Cards, _shown
from server.services.why_asked import Asking, RuleFacts, why_asked
from store.directory import member_principal, user_by_email, workspace_by_slug
from store.models import Approval, Meeting, TeamMember, User
from tests.conftest import alices_meeting, mcp_client
from tests.console import sign_in
from tests.fakes.linear import LinearFake
from tests.mailboxes import connect_mailbox
from tests.providers import connected
from tools.manifest import Manifest

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
ALICE = "alice@acme.test"


async def ask(app_client: Any, demo_keys: Any, tool: str, arguments: dict[str, Any], who: str = ALICE) -> str:
    async with mcp_client(BASE, demo_keys.keys[who], transport=app_client.transport) as client:
        result = await client.call_tool(tool, arguments)
    assert result.structured_content["status"] == "approval_required", result
    return str(result.structured_content["approval_id"])


@pytest.fixture
async def browser(app_client: Any) -> Any:
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


async def meeting_title(companion: Any, meeting_id: str) -> str:
    async with companion.db.session() as session:
        return str(await session.scalar(select(Meeting.title).where(Meeting.id == meeting_id)))


async def a_meeting_alice_cannot_see(companion: Any) -> str:
    async with companion.db.session() as session:
        alice = await session.scalar(select(User.id).where(User.email == ALICE))
        teams = select(TeamMember.team_id).where(TeamMember.user_id == alice)
        meeting = await session.scalar(
            select(Meeting.id)
            .where(Meeting.owner_id != alice, (Meeting.team_id.is_(None)) | Meeting.team_id.not_in(teams))
            .limit(1)
        )
    assert meeting is not None
    return str(meeting)


def article(page: str, approval_id: str) -> str:
    found = re.search(rf'<article [^>]*id="card-{approval_id}".*?</article>', page, re.S)
    assert found, page
    return found.group(0)


async def test_a_card_names_the_assistant_and_the_meeting_by_its_title(app_client, browser, demo_keys, companion):
    meeting = await alices_meeting(companion)
    title = await meeting_title(companion, meeting)
    waiting = await ask(app_client, demo_keys, "harmony_create_action_item", {"meeting_id": meeting, "text": "Call"})
    await sign_in(browser, ALICE)
    for path in ("/inbox", f"/approvals/{waiting}"):
        card = article((await browser.get(path)).text, waiting)
        assert '<span class="asked-by">demo agent key on behalf of you</span>' in card
        assert f"to meeting “{title}”</a></h3>" in card, "the headline says the meeting by its title"
        assert (
            f'<dt>Meeting</dt>\n      <dd><span class="named">{title}</span> <code class="id">{meeting}</code>' in card
        )
        assert "<dt>Text</dt>" in card and "Call" in card


async def test_a_meeting_the_asker_cannot_read_shows_its_id_even_to_an_admin_who_can(
    app_client, browser, demo_keys, companion
):
    """The assistant names a meeting its person cannot see: the card never reads it with anyone else's rights."""
    hidden = await a_meeting_alice_cannot_see(companion)
    title = await meeting_title(companion, hidden)
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        admin = await user_by_email(session, "admin@acme.test")
        actor = await member_principal(session, workspace.id, admin.id, acting_as="test")
        assert actor is not None
        await companion.rulebook.create(
            session,
            actor,
            Rule(effect="ask", scope="workspace", tool="harmony_create_action_item", admin_may_approve=True),
        )
    waiting = await ask(app_client, demo_keys, "harmony_create_action_item", {"meeting_id": hidden, "text": "x"})
    for who in (ALICE, "admin@acme.test"):
        browser.cookies.clear()
        await sign_in(browser, who)
        card = article((await browser.get(f"/approvals/{waiting}")).text, waiting)
        assert title not in card
        assert f"to meeting {hidden}</a></h3>" in card and f'<dd><span class="text">{hidden}</span>' in card


async def test_a_read_the_askers_rules_would_not_run_unasked_is_not_run_for_a_card(
    app_client, browser, demo_keys, companion
):
    meeting = await alices_meeting(companion)
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        alice = await user_by_email(session, ALICE)
        actor = await member_principal(session, workspace.id, alice.id, acting_as="test")
        assert actor is not None
        await companion.rulebook.create(session, actor, Rule(effect="deny", scope="user", tool="harmony_get_meeting"))
    waiting = await ask(app_client, demo_keys, "harmony_create_action_item", {"meeting_id": meeting, "text": "x"})
    await sign_in(browser, ALICE)
    card = article((await browser.get(f"/approvals/{waiting}")).text, waiting)
    assert await meeting_title(companion, meeting) not in card and f"to meeting {meeting}" in card


async def test_an_email_card_previews_the_message_as_text_says_why_in_words_and_what_remember_covers(
    app_client, browser, demo_keys, companion
):
    await connect_mailbox(companion, ALICE)
    waiting = await ask(
        app_client,
        demo_keys,
        "email_send_email",
        {
            "to": ["bob@client.com"],
            "cc": ["dana@acme.test"],
            "bcc": ["erin@partner.io"],
            "subject": "Q3 <proposal>",
            "body_html": "<p>Hi Bob</p><script>alert(1)</script>",
        },
    )
    await sign_in(browser, ALICE)
    card = article((await browser.get(f"/approvals/{waiting}")).text, waiting)
    preview = card[card.index('<section class="message"') : card.index("</section>")]
    assert '<dt>To</dt><dd><ul class="addresses"><li>bob@client.com</li></ul></dd>' in preview
    assert '<dt>Cc</dt><dd><ul class="addresses"><li>dana@acme.test</li></ul></dd>' in preview
    assert '<dt>Bcc</dt><dd><ul class="addresses"><li>erin@partner.io</li></ul> <span' in preview
    assert "hidden from the other recipients" in preview
    assert '<dd class="subject">Q3 &lt;proposal&gt;</dd>' in preview
    assert "&lt;p&gt;Hi Bob&lt;/p&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in preview and "<script>" not in card
    assert "shown as its source, not as a page" in preview
    assert "No rule covers sending e-mail outside acme.test (here to client.com and partner.io)." in card
    assert "Messages ask unless one of your rules allows them." in card
    assert "no rule matched" not in card
    scope = card.index('class="scope-words"')
    assert 0 < scope - card.index(">Approve and remember for 1 hour</button>") < 400
    assert "only at client.com" in card[scope:]


async def test_two_different_calls_never_show_as_the_same_card(app_client, browser, demo_keys, companion):
    meeting = await alices_meeting(companion)
    long = "Follow up on the pilot. " * 30
    variants = [
        {"meeting_id": meeting, "text": long + "Send the NDA."},
        {"meeting_id": meeting, "text": long + "Send the MSA."},
        {"meeting_id": meeting, "text": "Call Carol", "due_date": "2030-01-02"},
        {"meeting_id": meeting, "text": "Call Carol", "due_date": "2030-01-03"},
        {"meeting_id": meeting, "text": "Call Carol", "assignee_email": "carol@globex.example"},
        {"meeting_id": meeting, "text": "Call Carol"},
    ]
    ids = [await ask(app_client, demo_keys, "harmony_create_action_item", v) for v in variants]
    await sign_in(browser, ALICE)
    cards = {
        approval_id: article((await browser.get(f"/approvals/{approval_id}")).text, approval_id) for approval_id in ids
    }
    seen = {}
    for approval_id, card in cards.items():
        # What a person reads, with the approval's own id (in links and element ids) taken out.
        shown = re.sub(r"\s+", " ", card.replace(approval_id, "APPROVAL"))
        assert shown not in seen, f"{approval_id} looks like {seen.get(shown)}"
        seen[shown] = approval_id
    # The long texts differ past the part shown folded, and the difference is on the card, one click away.
    assert "Send the NDA." in cards[ids[0]] and "Send the MSA." in cards[ids[1]]
    # The inbox shows the two long ones by their start alone, so it says so and offers Approve for neither.
    inbox = (await browser.get("/inbox")).text
    for approval_id in ids[:2]:
        listed = article(inbox, approval_id)
        assert "Read all 733 characters on the approval's page" in listed and "Send the" not in listed
        assert ">Open to approve</a>" in listed and f"/approvals/{approval_id}/approve" not in listed


def test_a_list_keeps_its_items_apart_and_text_keeps_nothing_invisible():
    assert _shown(["a, b"]).items == ("a, b",) and _shown(["a", "b"]).items == ("a", "b")
    shown = _shown("one\nline two\u202eowt\x00")
    assert shown.text == "one\nline two\\u202eowt\\x00" and shown.lines
    assert _shown(True).text == "yes" and _shown({"k": "\u200b"}).text == '{\n  "k": "\\u200b"\n}'


def test_a_list_card_keeps_the_preview_of_long_text_alone_and_says_how_long_it_is():
    long = "Dear Bob,\r\nthe figures\u202e are in.\r\n" + "\x7f" * 1_000_000
    whole, listed = _shown(long), _shown(long, full=False)
    assert listed.cut and not whole.cut and listed.length == whole.length == len(long)
    assert listed.text == listed.preview == whole.preview
    assert listed.preview.startswith("Dear Bob,\nthe figures\\u202e are in.\n\\x7f") and len(listed.preview) < 1000
    # A short value is whole either way.
    assert _shown("Call Carol", full=False) == _shown("Call Carol")


async def test_what_the_same_assistant_asked_just_before_is_on_the_card(app_client, browser, demo_keys, companion):
    meeting = await alices_meeting(companion)
    async with mcp_client(BASE, demo_keys.keys[ALICE], transport=app_client.transport) as client:
        listed = await client.call_tool("harmony_list_meetings", {"limit": 1})
        assert not listed.is_error
    first = await ask(app_client, demo_keys, "harmony_create_action_item", {"meeting_id": meeting, "text": "One"})
    second = await ask(app_client, demo_keys, "harmony_create_action_item", {"meeting_id": meeting, "text": "Two"})
    await companion.audit.flush()
    await sign_in(browser, ALICE)
    page = (await browser.get("/inbox")).text
    earlier = re.search(r'<ol class="earlier">(.*?)</ol>', article(page, second), re.S)
    assert earlier is not None
    lines = re.findall(r"<li>.*?</li>", earlier.group(1), re.S)
    assert len(lines) == 2
    assert "Add the action item “One”" in lines[0] and "asked for approval" in lines[0]
    assert "List meetings · ran" in lines[1]
    first_card = article(page, first)
    assert "Two" not in re.search(r'<ol class="earlier">(.*?)</ol>', first_card, re.S).group(1)


async def test_the_waiting_count_is_in_the_tab_title_and_beside_approvals_on_every_page(
    app_client, browser, demo_keys, companion
):
    meeting = await alices_meeting(companion)
    for text in ("One", "Two", "Three"):
        await ask(app_client, demo_keys, "harmony_create_action_item", {"meeting_id": meeting, "text": text})
    await sign_in(browser, ALICE)
    inbox = (await browser.get("/inbox")).text
    assert "<title>(3) Approvals · Harmony Companion</title>" in inbox
    rules = (await browser.get("/rules")).text
    assert "<title>(3) Rules · Harmony Companion</title>" in rules
    badge = re.search(r'<a href="/inbox" >Approvals <span class="count" data-waiting >(\d+)<', rules)
    assert badge is not None and badge.group(1) == "3"
    browser.cookies.clear()
    await sign_in(browser, "admin@acme.test")
    assert "<title>Approvals · Harmony Companion</title>" in (await browser.get("/inbox")).text


async def test_linear_cards_name_the_team_and_show_an_issues_current_values(settings, registry):
    async with connected(settings, registry, LinearFake(), "linear", allow=False) as linear:
        linear.fake.issues.append(
            {"id": "i-7", "identifier": "ENG-7", "teamId": "t-eng", "title": "Login fails", "description": "Old",
             "labelIds": [], "stateId": "s-ENG-todo", "priority": 3}
        )  # fmt: skip
        created = await linear.call("linear_create_issue", {"team": "eng", "title": "SSO for Globex"})
        updated = await linear.call(
            "linear_update_issue", {"issue": "ENG-7", "state": "In Progress", "priority": 3, "title": "Login fails"}
        )
        unknown = await linear.call("linear_update_issue", {"issue": "ENG-99", "state": "Todo"})
        assert created.approval and updated.approval and unknown.approval
        companion = linear.companion
        async with companion.db.session() as session:
            viewer = await member_principal(
                session, linear.principal.workspace_id, linear.principal.user_id, acting_as="web"
            )
            approvals = list(
                await session.scalars(
                    select(Approval).where(
                        Approval.id.in_([created.approval.id, updated.approval.id, unknown.approval.id])
                    )
                )
            )
        assert viewer is not None
        cards = await Cards(companion.gateway).cards(viewer, approvals)
        team = cards[created.approval.id]
        assert team.headline == 'Create the Linear issue "SSO for Globex" in team “Engineering”'
        [field] = [f for f in team.fields if f.name == "team"]
        assert (field.label, field.named, field.value.text) == ("Team", "Engineering", "eng")
        assert cards[updated.approval.id].headline == "Update Linear issue “Login fails”"
        change = {f.name: f for f in cards[updated.approval.id].fields}
        assert (change["issue"].label, change["issue"].named, change["issue"].value.text) == (
            "Issue",
            "Login fails",
            "ENG-7",
        )
        assert change["state"].current.text == "Todo" and change["state"].value.text == "In Progress"
        assert change["priority"].unchanged and change["title"].unchanged and not change["state"].unchanged
        assert cards[updated.approval.id].why == (
            "No rule covers this change.",
            "Writes ask unless one of your rules allows them.",
        )
        assert all(f.current is None for f in cards[unknown.approval.id].fields), "no issue, nothing to compare"


def test_a_manifest_may_not_show_a_recipient_by_name_nor_read_with_anything_but_a_read_tool():
    def manifest(tool_extra: dict[str, Any], read_risk: str = "read") -> dict[str, Any]:
        schema = {
            "type": "object",
            "properties": {"id": {"type": "string"}, "to": {"type": "string", "format": "email"}},
        }
        out = {"type": "object", "properties": {"name": {"type": "string"}}}
        return {
            "id": "x", "name": "X", "description": "x", "category": "x", "scopes": ["personal"],
            "auth": {"type": "none"},
            "tools": [
                {"name": "x_get", "title": "Get", "description": "d", "risk": read_risk, "adapter": "x.get",
                 "input_schema": schema, "output_schema": out},
                {"name": "x_send", "title": "Send", "description": "d", "risk": "send", "adapter": "x.send",
                 "input_schema": schema, "output_schema": out, **tool_extra},
            ],
        }  # fmt: skip

    Manifest.model_validate(manifest({"shown_as": {"id": {"tool": "x_get", "argument": "id", "field": "name"}}}))
    refused = [
        ({"shown_as": {"to": {"tool": "x_get", "argument": "id", "field": "name"}}}, "read", "recipient"),
        ({"shown_as": {"id": {"tool": "x_get", "argument": "id", "field": "name"}}}, "write", "a card only reads"),
        ({"shown_as": {"id": {"tool": "x_get", "argument": "id", "field": "title"}}}, "read", "no field 'title'"),
        ({"shown_as": {"id": {"tool": "x_nope", "argument": "id", "field": "name"}}}, "read", "not a tool"),
        ({"current": {"tool": "x_get", "argument": "id", "key": "nope", "fields": {"id": "name"}}}, "read", "nope"),
    ]
    for extra, risk, words in refused:
        with pytest.raises(ValueError, match=words):
            Manifest.model_validate(manifest(extra, risk))


MAIL = Asking(
    risk="send", recipients=("bob@client.com", "dana@acme.test"), mail=True, own_domain="acme.test", yours=True,
    asker="Alice", out_of_band=False,
)  # fmt: skip


def test_why_it_asks_says_each_reason_of_the_rule_engine_in_plain_words():
    assert why_asked([NO_MATCH_REASON["send"]], MAIL, {}) == (
        "No rule covers sending e-mail outside acme.test (here to client.com).",
        "Messages ask unless one of your rules allows them.",
    )
    chat = Asking("send", ("general",), False, "acme.test", False, "Alice", True)
    assert why_asked([NO_MATCH_REASON["send"]], chat, {}) == (
        "No rule covers posting to general.",
        "Messages ask unless a rule allows them.",
        "An admin rule says a person approves this here, outside the assistant's chat.",
    )
    write = Asking("write", (), False, "acme.test", True, "Alice", False)
    assert why_asked([DEFAULT_REASON["write"]], write, {})[0].startswith("Writes ask unless a rule allows them")
    rules = {
        "rule_1": RuleFacts("rule_1", "workspace", "Mail outside acme.test asks"),
        "rule_2": RuleFacts("rule_2", "user", ""),
    }
    assert why_asked(["Mail outside acme.test asks (ask)", "user rule rule_2 (ask)"], write, rules) == (
        "The workspace rule “Mail outside acme.test asks” asks for a person's approval.",
        "Your rule rule_2 asks for a person's approval.",
    )
    capped = caps.describe(CapCharge("rule_3", 5, 3600))
    assert why_asked(["team may send (allow)", capped], write, {}) == (
        "The rule “team may send” lets calls like this run without asking.",
        "A rule lets 5 calls like this run per hour without asking, and they are used up.",
    )
    set_aside = (
        "team may send (allow) set aside: only the owner's own rules auto-approve calls on a personal connection"
    )
    assert why_asked([set_aside], write, {})[0].startswith(
        "The rule “team may send” would let it run, but on a personal"
    )
    assert why_asked(["something new the engine says"], write, {}) == ("Something new the engine says.",)

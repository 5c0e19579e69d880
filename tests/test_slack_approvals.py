"""Slack approvals end to end: the real app, its Slack channel talking to a Slack fake on 127.0.0.1, and button
presses signed as Slack signs them. The message tells the call's whole story as the console's card does, to each
approver as they may see it.

The fake follows Slack's documented ``users.lookupByEmail``, ``chat.postMessage``, ``chat.update``, ``views.open``
and ``response_url``, and builds ``block_actions`` and ``view_submission`` payloads as Slack does; the tests post
them to ``/slack/interactions`` as Slack would. Every path that could decide is tried by someone who should not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx2
import pytest
from pydantic import SecretStr
from sqlalchemy import delete, func, select, update

from approvals.rules import Rule
from server.app import Companion, create_app
from server.services import cards, demo
from server.services.approval_flow import cancel_request
from server.services.cards import ArgumentField, Shown
from server.services.slack_approvals import SlackChannel
from server.services.slack_approvals import message as slack_message
from server.services.slack_approvals.interactions import COUNTED, NOT_OFFERED, NOT_YOURS, SLACK_OFF
from server.services.slack_approvals.message import REQUEST_CHARS, TOO_LONG
from server.services.slack_approvals.signing import signature
from server.settings import Settings
from store.approval_notices import APPROVED
from store.connections import add_connection
from store.directory import member_principal, user_by_email, workspace_by_slug
from store.keys import create_key
from store.models import (
    ActionItem,
    Approval,
    ApprovalNotice,
    ApprovalStatus,
    Base,
    ConnectionScope,
    Meeting,
    SeenRequest,
    User,
    Workspace,
    utcnow,
)
from store.principal import Principal
from tests.console import form_post, sign_in
from tests.fakes.base import serve
from tests.fakes.linear import LinearFake
from tests.fakes.slack_web import SlackWebFake, signed, text_characters
from tests.mailboxes import connect_mailbox
from tests.providers import provider_settings
from tools.registry import Registry
from tools.tokens import credentials_from_token

pytestmark = pytest.mark.anyio

#: The example signing secret of Slack's documentation.
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BASE = "http://127.0.0.1:8000"
ASK = "harmony_create_action_item"
SEND = "email_send_email"
ALICE, MALLORY = "U0ALICE001", "U0MALLORY1"


@dataclass
class World:
    """The server, its Slack fake, Alice's assistant ("Claude"), and a client to post to the server as Slack."""

    companion: Companion
    slack: SlackWebFake
    client: httpx2.AsyncClient
    transport: httpx2.ASGITransport
    alice: Principal
    meeting: str

    async def ask(self, text: str = "Send Carol the pricing sheet") -> str:
        """Alice's assistant asks for a call that needs her approval; Slack has been told when this returns."""
        return await self.ask_for(ASK, {"meeting_id": self.meeting, "text": text})

    async def ask_for(self, tool: str, arguments: dict[str, Any]) -> str:
        asked = await self.companion.gateway.call(self.alice, tool, arguments)
        assert asked.data is not None and asked.data["status"] == "approval_required", asked.message
        await self.companion.notices.drain()
        return str(asked.data["approval_id"])

    async def approvers_are(self, people: list[str], count: int = 1) -> None:
        """A workspace rule: Alice's calls wait for ``count`` of ``people``; the admin chose Slack too."""
        async with self.companion.db.transaction() as session:
            await session.execute(update(User).where(User.email == "admin@acme.test").values(notify_slack=True))
            workspace = await workspace_by_slug(session, "acme")
            admin = await user_by_email(session, "admin@acme.test")
            actor = await member_principal(session, workspace.id, admin.id, acting_as="test")
            assert actor is not None
            rule = {"effect": "ask", "scope": "workspace", "app": "harmony", "tool": ASK}
            approvers = {"people": people, "count": count}
            await self.companion.rulebook.create(session, actor, Rule.model_validate({**rule, "approvers": approvers}))

    async def meeting_title(self) -> str:
        async with self.companion.db.session() as session:
            return str(await session.scalar(select(Meeting.title).where(Meeting.id == self.meeting)))

    def message_to(self, user: str, approval_id: str) -> dict[str, Any]:
        return next(m for m in self.slack.messages if m.get("to") == user and approval_id in str(m["blocks"]))

    async def post(self, payload: dict[str, Any], *, secret: str = SECRET, timestamp: int | None = None) -> Any:
        body, headers = signed(payload, secret, timestamp=timestamp)
        return await self.client.post("/slack/interactions", content=body, headers=headers)

    async def press(self, user: str, message: dict[str, Any], action: str, value: str | None = None) -> Any:
        approval_id = value or next(
            e["value"] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]
        )
        return await self.post(self.slack.block_actions(user, message, action, approval_id))

    async def approval(self, approval_id: str) -> Approval:
        async with self.companion.db.session() as session:
            found = await session.get(Approval, approval_id)
        assert found is not None
        return found

    async def updated(self, message: dict[str, Any], containing: str, seconds: float = 5.0) -> dict[str, Any]:
        """The update of ``message`` whose blocks read ``containing`` (``read``), once the server has made it."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for made in self.slack.updates:
                if made["ts"] == message["ts"] and containing in read(made["blocks"]):
                    return made
            await asyncio.sleep(0.02)
        raise AssertionError(f"no update containing {containing!r}: {self.slack.updates}")

    async def action_items(self, text: str) -> int:
        async with self.companion.db.session() as session:
            return int(await session.scalar(select(func.count()).where(ActionItem.text == text)) or 0)


@asynccontextmanager
async def slack_world(
    settings: Settings, registry: Registry, *, sweep_every: float = 0.1, linear: LinearFake | None = None
) -> AsyncIterator[World]:
    """The demo workspace with Slack approvals on, a workspace Slack connection to the fake, and Alice choosing
    Slack; the app running with its lifespan (so its sweep) and a client that posts to it. With ``linear``, Alice
    has connected her Linear too, served by that fake."""
    fake = SlackWebFake()
    async with AsyncExitStack() as stack:
        origin = await stack.enter_async_context(serve(fake))
        configured = provider_settings(settings, "slack", origin).model_copy(
            update={"slack_signing_secret": SecretStr(SECRET), "base_url": BASE}
        )
        if linear is not None:
            configured = provider_settings(configured, "linear", await stack.enter_async_context(serve(linear)))
        companion = Companion.build(configured, registry=registry)
        companion.slack.channel.every = sweep_every
        async with companion.db.transaction() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
        async with companion.db.transaction() as session:
            await demo.seed(session, companion.registry, companion.box, b"slack approvals")
            workspace = await workspace_by_slug(session, "acme")
            workspace.slack_approvals = True
            alice = await user_by_email(session, "alice@acme.test")
            alice.notify_slack = True
            admin = await user_by_email(session, "admin@acme.test")
            row = await add_connection(
                session,
                companion.box,
                app="slack",
                scope=ConnectionScope.WORKSPACE,
                workspace_id=workspace.id,
                user_id=admin.id,
                label="Acme Slack",
                setup={},
                credentials=credentials_from_token(fake.issue()),
            )
            row.auth_method = "oauth2"
            if linear is not None:
                mine = await add_connection(
                    session,
                    companion.box,
                    app="linear",
                    scope=ConnectionScope.PERSONAL,
                    workspace_id=workspace.id,
                    user_id=alice.id,
                    label="Alice's Linear",
                    setup={},
                    credentials=credentials_from_token(linear.issue()),
                )
                mine.auth_method = "oauth2"
            key = await create_key(session, workspace_id=workspace.id, user_id=alice.id, name="Claude")
            meeting = await session.scalar(select(Meeting.id).where(Meeting.owner_id == alice.id).limit(1))
        assert meeting is not None
        principal = await companion.principal_for(key.token)
        assert principal is not None
        app = create_app(companion)
        transport = httpx2.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(transport=transport, base_url=BASE) as client,
        ):
            yield World(companion, fake, client, transport, principal, meeting)


@pytest.fixture
async def world(settings: Settings, registry: Registry) -> AsyncIterator[World]:
    async with slack_world(settings, registry) as built:
        yield built


def texts(value: Any) -> list[str]:
    """Every text of a message or view that Slack reads as mrkdwn, where ``*``, ``_``, ``~``, a backtick and
    ``<…>`` are markup: only Companion's own words may be there."""
    if isinstance(value, dict):
        own = [value["text"]] if value.get("type") == "mrkdwn" else []
        return own + [t for v in value.values() for t in texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def literal(value: Any) -> list[str]:
    """Every text of a message or view that Slack shows as it is: plain_text objects and rich text elements."""
    if isinstance(value, dict):
        own = [value["text"]] if value.get("type") in ("plain_text", "text") else []
        return own + [t for v in value.values() for t in literal(v)]
    if isinstance(value, list):
        return [t for v in value for t in literal(v)]
    return []


def _inline(elements: list[dict[str, Any]]) -> str:
    said = ""
    for element in elements:
        if element["type"] == "date":
            said += element["fallback"]
            continue
        text, style = element["text"], element.get("style", {})
        core = text.strip()
        mark = ("**" if style.get("bold") else "") + ("_" if style.get("italic") else "")
        said += text[: text.index(core)] + mark + core + mark[::-1] + text[text.index(core) + len(core) :]
    return said


def read(blocks: list[dict[str, Any]]) -> str:
    """The rich text of ``blocks`` as a reader takes it in, a line a section: Companion's bold words between ``**``,
    its italics between ``_``, a quoted line after ``> ``, a list's item after ``• ``, a date by its fallback."""
    lines: list[str] = []
    for block in blocks:
        for element in block.get("elements", []) if block["type"] == "rich_text" else []:
            if element["type"] == "rich_text_section":
                lines.append(_inline(element["elements"]))
            elif element["type"] == "rich_text_quote":
                lines += [f"> {line}" for line in _inline(element["elements"]).split("\n")]
            else:
                lines += [f"• {_inline(item['elements'])}" for item in element["elements"]]
    return "\n".join(lines)


def elements(value: Any, kind: str) -> list[dict[str, Any]]:
    """Every rich text element of ``kind`` in ``value``, wherever it sits."""
    if isinstance(value, dict):
        own = [value] if value.get("type") == kind else []
        return own + [e for v in value.values() for e in elements(v, kind)]
    if isinstance(value, list):
        return [e for v in value for e in elements(v, kind)]
    return []


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]


# -- the message -------------------------------------------------------------------------------------------------


async def test_a_waiting_approval_reaches_the_approver_as_a_direct_message(world):
    approval_id = await world.ask()
    message = world.message_to(ALICE, approval_id)
    assert message["channel"] == "D0ALICE001"
    shown = read(message["blocks"])
    # Who asked through which assistant, what will happen with the meeting said by its title, the risk, the expiry.
    title = await world.meeting_title()
    assert "**Asked by:** Claude on behalf of you" in shown
    assert f"Add the action item “Send Carol the pricing sheet” to meeting “{title}”\n" in shown
    assert "Risk: write" in shown
    # The notification says only Companion's words and the app: nothing the assistant chose.
    assert message["text"] == "An approval is waiting for you in Harmony."
    expires = (await world.approval(approval_id)).expires_at
    [date] = elements(message, "date")
    assert date["timestamp"] == int(expires.timestamp()) and f"**Expires:** {date['fallback']}" in shown
    assert [(b["action_id"], b.get("style"), b.get("url")) for b in buttons(message)] == [
        ("approve", "primary", None),
        ("deny", "danger", None),
        ("open", None, f"{BASE}/approvals/{approval_id}"),
    ]
    assert all(b["value"] == approval_id for b in buttons(message))
    [lookup] = [s for s in world.slack.api_requests() if s.path == "/api/users.lookupByEmail"]
    assert lookup.query == {"email": "alice@acme.test"}
    async with world.companion.db.session() as session:
        [notice] = await session.scalars(select(ApprovalNotice))
    assert (notice.channel, notice.approval_id, notice.shown_status) == ("slack", approval_id, "pending")
    # What the message offered is kept with it: a press is judged by it, without making the message again.
    assert notice.ref == {"channel": "D0ALICE001", "ts": message["ts"], "user": ALICE, "approve": True}


async def test_the_approvers_slack_account_is_looked_up_once_for_a_while(world):
    await world.ask("First")
    await world.ask("Second")
    lookups = [s for s in world.slack.api_requests() if s.path == "/api/users.lookupByEmail"]
    assert len(lookups) == 1 and len([m for m in world.slack.messages if m.get("to") == ALICE]) == 2


async def test_an_approval_announced_again_is_not_sent_twice_to_the_same_approver(world):
    approval_id = await world.ask()
    # An escalation announces the approval again, to everyone who may now decide it.
    world.companion.notices.announce(await world.approval(approval_id), "Add the action item", "Harmony")
    await world.companion.notices.drain()
    assert len([m for m in world.slack.messages if m.get("to") == ALICE]) == 1


async def test_nothing_goes_to_slack_unless_the_admin_and_the_person_chose_it(world):
    async with world.companion.db.transaction() as session:
        await session.execute(update(Workspace).values(slack_approvals=False))
    await world.ask("Workspace off")
    async with world.companion.db.transaction() as session:
        await session.execute(update(Workspace).values(slack_approvals=True))
        await session.execute(update(User).values(notify_slack=False))
    await world.ask("Person off")
    assert world.slack.messages == []


async def test_an_escalation_that_names_slack_reaches_a_person_who_turned_slack_off(world):
    """The admin's rule, once no one has decided in time, outranks the person's everyday choice of channels."""
    async with world.companion.db.transaction() as session:
        await session.execute(update(User).values(notify_slack=False))
        workspace = await workspace_by_slug(session, "acme")
        admin = await user_by_email(session, "admin@acme.test")
        actor = await member_principal(session, workspace.id, admin.id, acting_as="test")
        assert actor is not None
        rule = {"effect": "ask", "scope": "workspace", "app": "harmony", "tool": ASK}
        escalates = {"escalate_after_minutes": 30, "escalate_by": ["slack"]}
        await world.companion.rulebook.create(session, actor, Rule.model_validate({**rule, **escalates}))
    approval_id = await world.ask("Escalated to Slack")
    assert world.slack.messages == [], "Alice turned Slack off"
    async with world.companion.db.transaction() as session:
        await session.execute(
            update(Approval).where(Approval.id == approval_id).values(escalate_at=utcnow() - timedelta(seconds=1))
        )
    assert len(await world.companion.gateway.flow.escalate_due(world.companion.registry.tools)) == 1
    await world.companion.notices.drain()
    message = world.message_to(ALICE, approval_id)
    assert [b["action_id"] for b in buttons(message)] == ["approve", "deny", "open"]


async def test_an_argument_cannot_write_a_mention_or_a_link_into_the_message(world):
    text = "Ping <!channel> & <@U0ADMIN001>, see <https://evil.example/login|the pricing sheet>"
    approval_id = await world.ask(text)
    message = world.message_to(ALICE, approval_id)
    # The argument is a rich text element, which Slack shows as it is: a mention or a link is an element of its own.
    assert {"type": "text", "text": text} in elements(message, "text")
    runs = [*elements(message, "rich_text_section"), *elements(message, "rich_text_quote")]
    assert {leaf["type"] for run in runs for leaf in run["elements"]} == {"text", "date"}
    # Nothing the assistant chose is where Slack reads markup: mrkdwn holds only Companion's own words.
    for said in [*texts(message["blocks"]), message["text"]]:
        assert "<" not in said and "&" not in said and "evil.example" not in said, said
    # The Deny form shows the request's summary the same way.
    await world.press(ALICE, message, "deny")
    [form] = world.slack.views
    assert any(text in t for t in literal(form["blocks"])) and not texts(form["blocks"])


async def test_what_mrkdwn_would_hide_shows_character_for_character(world):
    """``evil_corp_@x.test`` in mrkdwn reads as an italic ``evilcorp@x.test``, ``a*b*@x.test`` as a bold ``b``; a
    subject's backticks and tildes would be code and strikethrough. Each is shown as it is."""
    await connect_mailbox(world.companion)
    subject = "Q3 `budget` ~draft~ *final* _v2_"
    approval_id = await world.ask_for(
        SEND,
        {
            "to": ["evil_corp_@x.test"],
            "cc": ["a*b*@x.test"],
            "subject": subject,
            "body_text": "Pay `now` to ~old~ *new* account_no_1",
        },
    )
    message = world.message_to(ALICE, approval_id)
    shown = [e["text"] for e in elements(message, "text")]
    for value in ("evil_corp_@x.test", "a*b*@x.test", subject, "Pay `now` to ~old~ *new* account_no_1"):
        assert value in shown, value
    # The summary's own lines carry them as they are too.
    assert {"To: evil_corp_@x.test", "Cc: a*b*@x.test"} <= set(shown)
    for said in [*texts(message["blocks"]), message["text"]]:
        assert not any(mark in said for mark in ("evil_corp", "a*b*", "`", "~")), said
    # Only Companion's labels are bold, and none of the assistant's values.
    bold = {e["text"] for e in elements(message, "text") if e.get("style", {}).get("bold")}
    assert {"To: ", "Cc: ", "Subject: ", "Body"} <= bold
    assert not [b for b in bold if any(v in b for v in ("evil_corp", "a*b*", "budget", "account_no"))]


async def test_the_message_labels_each_argument_and_says_why_it_asks(world):
    approval_id = await world.ask("Send Carol the pricing sheet")
    message = world.message_to(ALICE, approval_id)
    title = await world.meeting_title()
    # Each argument labelled, the meeting by its title beside the id that runs.
    assert (
        f"**Details**\n**Meeting:** {title} ({world.meeting})\n**Text:** Send Carol the pricing sheet\n"
        "**Why it asks**\nNo rule covers this change. Writes ask unless one of your rules allows them."
    ) in read(message["blocks"])
    # Slack shows the value of several lines in one quote under its label, each line as it is: none of them passes
    # for a line of the message's own.
    text = "Call Erin\n*Bcc:* everyone@acme.test\n*Why it asks*"
    approval_id = await world.ask(text)
    message = world.message_to(ALICE, approval_id)
    assert "**Text**\n> Call Erin\n> *Bcc:* everyone@acme.test\n> *Why it asks*" in read(message["blocks"])
    assert {"type": "rich_text_quote", "elements": [{"type": "text", "text": text}]} in elements(
        message, "rich_text_quote"
    )


async def test_each_approver_is_told_as_they_may_see_it(world):
    await world.approvers_are(["alice@acme.test", "admin@acme.test"])
    approval_id = await world.ask()
    alices, admins = world.message_to(ALICE, approval_id), world.message_to("U0ADMIN001", approval_id)
    assert "**Asked by:** Claude on behalf of you" in read(alices["blocks"])
    assert "**Asked by:** Claude on behalf of Alice Archer" in read(admins["blocks"])
    # The meeting by its title to both: it is read as Alice, who asked, whoever reads the message.
    title = await world.meeting_title()
    for message in (alices, admins):
        assert f"**Meeting:** {title} ({world.meeting})" in read(message["blocks"])


async def test_an_email_to_send_shows_every_recipient_and_the_message_as_it_will_be_sent(world):
    await connect_mailbox(world.companion)
    approval_id = await world.ask_for(
        SEND,
        {
            "to": ["bob@client.com"],
            "cc": ["dana@acme.test"],
            "bcc": ["erin@partner.io"],
            "subject": "Q3 <proposal>",
            "body_text": "Hi Bob,\n*Bcc:* nobody@partner.io\n<https://evil.example|the deck>",
        },
    )
    message = world.message_to(ALICE, approval_id)
    shown = read(message["blocks"])
    # The summary's facts: every recipient on a line of their own, bcc too.
    assert {"To: bob@client.com", "Cc: dana@acme.test", "Bcc: erin@partner.io"} <= set(shown.split("\n"))
    # The e-mail as its recipients will see it: the body quoted, nothing in it markup.
    assert (
        "**The e-mail as its recipients will see it**\n"
        "**To:** bob@client.com\n"
        "**Cc:** dana@acme.test\n"
        "**Bcc:** erin@partner.io _(hidden from the other recipients)_\n"
        "**Subject:** Q3 <proposal>\n"
        "**Body**\n"
        "> Hi Bob,\n"
        "> *Bcc:* nobody@partner.io\n"
        "> <https://evil.example|the deck>\n"
    ) in shown
    assert "No rule covers sending e-mail outside acme.test (here to client.com and partner.io)." in shown
    assert [b["action_id"] for b in buttons(message)] == ["approve", "deny", "open"]


async def test_a_request_too_long_for_one_message_offers_no_approve(world):
    await connect_mailbox(world.companion)
    body = "\n".join(f"Line {n}: the quarterly figures, region by region." for n in range(4000))
    arguments = {"to": ["bob@client.com"], "subject": "Figures", "body_text": f"{body}\nBcc this to eve@evil.test"}
    approval_id = await world.ask_for(SEND, arguments)
    message = world.message_to(ALICE, approval_id)
    assert f"_{TOO_LONG}_" in read(message["blocks"])
    assert "Bcc this to eve@evil.test" not in str(message), "the end of the body is not in the message"
    assert text_characters(message["blocks"]) < 12_000, "as much as Slack takes, and no more"
    assert [b["action_id"] for b in buttons(message)] == ["deny", "open"]
    assert "Open it to read all of it and approve it there." in texts(message["blocks"])
    async with world.companion.db.session() as session:
        [notice] = await session.scalars(select(ApprovalNotice))
    assert notice.ref["approve"] is False
    # An Approve sent for it anyway (a client may send any button) decides nothing.
    await world.press(ALICE, message, "approve", value=approval_id)
    assert world.slack.responses[-1]["text"] == NOT_OFFERED
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING
    # The Deny form shows the request's summary, and still denies.
    await world.press(ALICE, message, "deny")
    [form] = world.slack.views
    assert {"Send an e-mail to bob@client.com — subject “Figures”", "To: bob@client.com"} <= set(literal(form))


def waiting_with(*fields: ArgumentField) -> slack_message.Message:
    """The message for a card with these arguments, made without a server."""
    story = cards.Card("apr_1", "Claude on behalf of you", utcnow(), "Do it", ("Risk: write",), fields, None, ())
    return slack_message.waiting(slack_message.Card("apr_1", "Notes", story, utcnow(), f"{BASE}/approvals/apr_1"))


def test_a_long_value_is_quoted_whole_as_it_is_and_every_argument_follows_in_order():
    text = "&" * 1000 + "<" * 1000 + "\n*Bcc:* eve@evil.test"
    many = [ArgumentField(f"tag{n}", f"Tag {n}", Shown(f"value {n}")) for n in range(23)]
    made = waiting_with(ArgumentField("text", "Text", Shown(text, lines=True)), *many)
    assert made.approve and buttons(made.payload())[0]["action_id"] == "approve"
    # Its characters as they are, no entity for Slack to read, all of its lines in one quote.
    assert {"type": "rich_text_quote", "elements": [{"type": "text", "text": text}]} in elements(
        made.blocks, "rich_text_quote"
    )
    details = read(made.blocks).split("**Details**\n")[1].split("\n")
    assert details[:3] == ["**Text**", f"> {'&' * 1000}{'<' * 1000}", "> *Bcc:* eve@evil.test"]
    assert details[3:] == [f"**Tag {n}:** value {n}" for n in range(23)]


def test_a_request_longer_than_a_message_holds_shows_its_start_and_offers_no_approve():
    tail = "\n*Bcc:* eve@evil.test"
    made = waiting_with(
        ArgumentField("text", "Text", Shown("x" * REQUEST_CHARS + tail, lines=True)),
        ArgumentField("to", "To", Shown("eve@evil.test")),
    )
    assert not made.approve and [b["action_id"] for b in buttons(made.payload())] == ["deny", "open"]
    assert "eve@evil.test" not in str(made.blocks) and read(made.blocks).endswith(f"_{TOO_LONG}_")
    request = [b for b in made.blocks if b["type"] == "rich_text"][1:]
    assert text_characters(request) == REQUEST_CHARS + len(TOO_LONG)


def test_an_update_shows_each_field_now_and_new_and_a_list_item_by_item():
    made = waiting_with(
        ArgumentField("state", "State", Shown("In Progress"), current=Shown("Todo → New Done")),
        ArgumentField("priority", "Priority", Shown("2"), current=Shown("2")),
        ArgumentField("labels", "Labels", Shown("a, b, c", items=("a, b", "c"))),
        ArgumentField("note", "Note", Shown("")),
    )
    # What it is now and what it becomes, each apart, so neither can pass for the other; a list keeps its items.
    assert read(made.blocks).split("**Details**\n")[1] == (
        "**State (now):** Todo → New Done\n"
        "**State (new):** In Progress\n"
        "**Priority:** 2 _(unchanged)_\n"
        "**Labels**\n"
        "• a, b\n"
        "• c\n"
        "**Note:** _(empty)_"
    )


# -- deciding from Slack -----------------------------------------------------------------------------------------


async def test_approve_in_slack_decides_as_the_approver_and_the_call_runs_once(world):
    approval_id = await world.ask("Approved from Slack")
    message = world.message_to(ALICE, approval_id)
    pressed = await world.press(ALICE, message, "approve")
    assert pressed.status_code == 200 and pressed.content == b""
    approval = await world.approval(approval_id)
    assert approval.status is ApprovalStatus.APPROVED and approval.decided_via == "slack"
    assert approval.decided_by == world.alice.user_id
    made = await world.updated(message, "**Approved by alice@acme.test** in Slack, ")
    assert [b["action_id"] for b in buttons(made)] == ["open"]
    assert made["text"] == "Approval request in Harmony: approved."
    assert "**Text:** Approved from Slack" in read(made["blocks"])
    # The assistant's repeat runs it, once; another repeat gets the stored result.
    arguments = {"meeting_id": world.meeting, "text": "Approved from Slack"}
    first = await world.companion.gateway.call(world.alice, ASK, arguments)
    again = await world.companion.gateway.call(world.alice, ASK, arguments)
    assert first.ok and again.ok and first.data == again.data
    assert await world.action_items("Approved from Slack") == 1
    # A second press finds it decided: the presser is told, and nothing changes.
    await world.press(ALICE, message, "approve")
    assert world.slack.responses[-1]["text"] == "Nothing was decided: this request is already approved."
    assert world.slack.responses[-1]["response_type"] == "ephemeral"


async def test_deny_in_slack_asks_why_and_the_call_never_runs(world):
    approval_id = await world.ask("Denied from Slack")
    message = world.message_to(ALICE, approval_id)
    assert (await world.press(ALICE, message, "deny")).status_code == 200
    [form] = world.slack.views
    assert form["callback_id"] == "deny" and form["submit"]["text"] == "Deny"
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING
    submitted = await world.post(world.slack.view_submission(ALICE, form, {"reason": "Carol left the company"}))
    assert submitted.status_code == 200 and submitted.content == b""
    approval = await world.approval(approval_id)
    assert approval.status is ApprovalStatus.DENIED and approval.reason == "Carol left the company"
    assert approval.decided_via == "slack" and approval.decided_by == world.alice.user_id
    made = await world.updated(message, "**Denied by alice@acme.test** in Slack, ")
    assert "**Denied by alice@acme.test** in Slack, " in read(made["blocks"])
    assert read(made["blocks"]).endswith(":\n> Carol left the company")
    assert made["text"] == "Approval request in Harmony: denied."
    assert [b["action_id"] for b in buttons(made)] == ["open"]
    repeat = await world.companion.gateway.call(
        world.alice, ASK, {"meeting_id": world.meeting, "text": "Denied from Slack"}
    )
    assert repeat.error_code == "denied" and "Carol left the company" in repeat.message
    assert await world.action_items("Denied from Slack") == 0


async def test_the_open_button_decides_nothing(world):
    approval_id = await world.ask()
    assert (await world.press(ALICE, world.message_to(ALICE, approval_id), "open")).status_code == 200
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING
    assert world.slack.responses == [] and world.slack.views == []


async def test_with_several_approvers_each_gets_a_message_and_a_press_is_one_vote(world):
    await world.approvers_are(["alice@acme.test", "admin@acme.test"], count=2)
    approval_id = await world.ask("Two must agree")
    alices, admins = world.message_to(ALICE, approval_id), world.message_to("U0ADMIN001", approval_id)
    await world.press(ALICE, alices, "approve")
    assert world.slack.responses[-1]["text"] == COUNTED
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING
    # Alice's message is hers alone: the admin cannot vote a second time through it.
    await world.press("U0ADMIN001", alices, "approve")
    assert world.slack.responses[-1]["text"] == NOT_YOURS
    await world.press("U0ADMIN001", admins, "approve")
    assert (await world.approval(approval_id)).status is ApprovalStatus.APPROVED
    for message in (alices, admins):
        await world.updated(message, "Approved by")


async def test_a_press_is_answered_at_once_while_the_apps_reads_take_their_time(settings, registry):
    """Slack waits three seconds for an answer, and a trigger_id opens the Deny form only for three seconds; a card
    may take five seconds a read through the app. A press reads nothing through the app: the Deny form shows the
    approval's own summary, and Approve is judged by what the message offered when it was sent."""
    linear = LinearFake()
    async with slack_world(settings, registry, linear=linear) as world:
        approval_id = await world.ask_for("linear_create_issue", {"team": "eng", "title": "SSO for Globex"})
        message = world.message_to(ALICE, approval_id)
        assert "**Team:** Engineering (eng)" in read(message["blocks"]), "the team read by its name when sent"
        # From now on Linear keeps every read waiting, longer than the card's five seconds.
        linear.hold = asyncio.Event()
        started = time.monotonic()
        assert (await world.press(ALICE, message, "deny")).status_code == 200
        assert time.monotonic() - started < 1.5
        [form] = world.slack.views
        assert 'Create the Linear issue "SSO for Globex" in team eng' in literal(form["blocks"])
        started = time.monotonic()
        assert (await world.press(ALICE, message, "approve")).status_code == 200
        assert time.monotonic() - started < 1.5
        assert (await world.approval(approval_id)).status is ApprovalStatus.APPROVED
        assert world.slack.responses == []
        # The message is updated once the app answers again.
        linear.hold.set()
        await world.updated(message, "**Approved by alice@acme.test** in Slack, ")


async def test_approve_is_refused_on_a_message_that_did_not_offer_it_though_the_request_would_fit_now(
    settings, registry
):
    linear = LinearFake()
    # The team's name, read for the message, makes the request longer than a message shows.
    linear.teams[0]["name"] = "Engineering " * 600
    async with slack_world(settings, registry, linear=linear) as world:
        approval_id = await world.ask_for("linear_create_issue", {"team": "eng", "title": "SSO for Globex"})
        message = world.message_to(ALICE, approval_id)
        assert [b["action_id"] for b in buttons(message)] == ["deny", "open"]
        # Renamed since: the message made now would offer Approve, but the message pressed did not.
        linear.teams[0]["name"] = "Engineering"
        async with world.companion.db.session() as session:
            approval = await session.get(Approval, approval_id)
            viewer = await member_principal(session, world.alice.workspace_id, world.alice.user_id, acting_as="t")
        assert approval is not None and viewer is not None
        channel = world.companion.slack.channel
        assert slack_message.waiting(await channel.card(approval, viewer)).approve
        await world.press(ALICE, message, "approve", value=approval_id)
        assert world.slack.responses[-1]["text"] == NOT_OFFERED
        assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING


# -- requests that are not Slack's, or not now -------------------------------------------------------------------


async def test_a_forged_signature_decides_nothing(world):
    approval_id = await world.ask()
    message = world.message_to(ALICE, approval_id)
    payload = world.slack.block_actions(ALICE, message, "approve", approval_id)
    forged = await world.post(payload, secret="not-the-signing-secret")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_signature"
    # A body changed after Slack signed it.
    body, headers = signed(payload, SECRET)
    tampered = await world.client.post(
        "/slack/interactions", content=body.replace(ALICE.encode(), MALLORY.encode()), headers=headers
    )
    assert tampered.status_code == 401
    unsigned = await world.client.post(
        "/slack/interactions", content=body, headers={"Content-Type": headers["Content-Type"]}
    )
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "unsigned"
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING


@pytest.mark.parametrize("off", [-301, 301])
async def test_a_timestamp_more_than_five_minutes_away_is_refused(world, off):
    approval_id = await world.ask()
    payload = world.slack.block_actions(ALICE, world.message_to(ALICE, approval_id), "approve", approval_id)
    stale = await world.post(payload, timestamp=int(time.time()) + off)
    assert stale.status_code == 401 and stale.json()["error"]["code"] == "stale_request"
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING


async def test_a_replayed_request_is_refused_and_old_signatures_are_forgotten(world):
    approval_id = await world.ask()
    message = world.message_to(ALICE, approval_id)
    body, headers = signed(world.slack.block_actions(ALICE, message, "deny", approval_id), SECRET)
    first = await world.client.post("/slack/interactions", content=body, headers=headers)
    replay = await world.client.post("/slack/interactions", content=body, headers=headers)
    assert first.status_code == 200
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "replayed"
    assert len(world.slack.views) == 1
    # The sweep forgets signatures too old to be accepted anyway.
    async with world.companion.db.transaction() as session:
        session.add(SeenRequest(digest="0" * 64, seen_at=utcnow() - timedelta(minutes=11)))
    await world.companion.slack.channel.sweep()
    async with world.companion.db.session() as session:
        kept = list(await session.scalars(select(SeenRequest.digest)))
    assert "0" * 64 not in kept and len(kept) == 1


async def test_a_signed_request_that_is_not_an_interaction_decides_nothing(world):
    approval_id = await world.ask()
    for body in (b"payload=not-json", b"payload=%5B%5D", b"nothing=here"):
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": signature(SECRET.encode(), stamp, body),
        }
        answered = await world.client.post("/slack/interactions", content=body, headers=headers)
        assert answered.status_code == 400, body
    too_large = b"payload=" + b"x" * (1024 * 1024)
    answered = await world.client.post("/slack/interactions", content=too_large, headers=headers)
    assert answered.status_code == 413
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING


async def test_without_a_signing_secret_the_server_takes_no_interactions(companion):
    app = create_app(companion)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as client:
        body, headers = signed({"type": "block_actions"}, SECRET)
        answered = await client.post("/slack/interactions", content=body, headers=headers)
    assert answered.status_code == 404


# -- someone other than the approver -----------------------------------------------------------------------------


async def test_a_stranger_pressing_a_button_is_told_so_privately_and_nothing_is_decided(world):
    approval_id = await world.ask()
    message = world.message_to(ALICE, approval_id)
    for action in ("approve", "deny"):
        assert (await world.press(MALLORY, message, action)).status_code == 200
    assert [(r["response_type"], r["replace_original"], r["text"]) for r in world.slack.responses] == [
        ("ephemeral", False, NOT_YOURS)
    ] * 2
    assert world.slack.views == []
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING
    assert world.slack.updates == []


async def test_a_reply_goes_only_to_slacks_own_address(world):
    approval_id = await world.ask()
    payload = world.slack.block_actions(MALLORY, world.message_to(ALICE, approval_id), "approve", approval_id)
    # Slack signed it, yet it names another host to answer at: Companion posts nothing there.
    payload["response_url"] = f"{world.slack.origin}/actions/T0ACME0001/1/elsewhere"
    world.slack.open_paths = (*world.slack.open_paths, "/actions/T0ACME0001/1/elsewhere")
    assert (await world.post(payload)).status_code == 200
    assert world.slack.responses == []
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING


async def test_an_account_that_no_longer_holds_the_approvers_address_cannot_decide(world):
    approval_id = await world.ask()
    message = world.message_to(ALICE, approval_id)
    # Alice's Slack account now has another address, and someone else's has hers.
    alice, mallory = world.slack.member_by_id(ALICE), world.slack.member_by_id(MALLORY)
    assert alice is not None and mallory is not None
    alice["profile"]["email"], mallory["profile"]["email"] = "alice@elsewhere.test", "alice@acme.test"
    for user in (ALICE, MALLORY):
        await world.press(user, message, "approve")
    assert [r["text"] for r in world.slack.responses] == [NOT_YOURS, NOT_YOURS]
    # A deactivated account, with the address still on it, cannot either.
    alice["profile"]["email"], mallory["profile"]["email"] = "alice@acme.test", "mallory@acme.test"
    alice["deleted"] = True
    await world.press(ALICE, message, "approve")
    assert world.slack.responses[-1]["text"] == NOT_YOURS
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING


async def test_a_button_cannot_be_pointed_at_another_approval(world):
    mine = await world.ask("Mine")
    other = await world.ask("Other")
    await world.press(ALICE, world.message_to(ALICE, mine), "approve", value=other)
    assert world.slack.responses[-1]["text"] == NOT_YOURS
    assert (await world.approval(other)).status is ApprovalStatus.PENDING
    assert (await world.approval(mine)).status is ApprovalStatus.PENDING


async def test_a_deny_form_sent_by_someone_else_is_refused_in_the_form(world):
    approval_id = await world.ask()
    await world.press(ALICE, world.message_to(ALICE, approval_id), "deny")
    [form] = world.slack.views
    refused = await world.post(world.slack.view_submission(MALLORY, form, {"reason": "no"}))
    assert refused.status_code == 200
    assert refused.json() == {"response_action": "errors", "errors": {"reason": NOT_YOURS}}
    forged = {**form, "private_metadata": '{"approval": "apr_nope", "channel": "D0ALICE001", "ts": "1"}'}
    assert (await world.post(world.slack.view_submission(ALICE, forged, {"reason": "no"}))).json()["errors"]
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING


async def test_buttons_decide_nothing_once_the_admin_turns_slack_approvals_off(world):
    approval_id = await world.ask()
    async with world.companion.db.transaction() as session:
        await session.execute(update(Workspace).values(slack_approvals=False))
    await world.press(ALICE, world.message_to(ALICE, approval_id), "approve")
    assert world.slack.responses[-1]["text"] == SLACK_OFF
    assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING


# -- the message stays true --------------------------------------------------------------------------------------


async def test_a_decision_in_the_console_updates_the_slack_message(world):
    approval_id = await world.ask("Approved in the console")
    message = world.message_to(ALICE, approval_id)
    async with httpx2.AsyncClient(transport=world.transport, base_url=BASE) as browser:
        await sign_in(browser, "alice@acme.test")
        decided = await form_post(browser, f"/approvals/{approval_id}", f"/approvals/{approval_id}/approve")
        assert decided.status_code in (200, 303)
    made = await world.updated(message, "**Approved by alice@acme.test** in the console, ")
    assert [b["action_id"] for b in buttons(made)] == ["open"]
    async with world.companion.db.session() as session:
        [notice] = await session.scalars(select(ApprovalNotice))
    # The updated message offers no Approve, and what is kept of it says so.
    assert notice.shown_status == APPROVED and notice.ref["approve"] is False
    # Pressing the old message's Approve now (a client that had not redrawn it) decides nothing new.
    await world.press(ALICE, message, "approve")
    assert world.slack.responses[-1]["text"] == "Nothing was decided: this request is already approved."
    assert len([u for u in world.slack.updates if u["ts"] == message["ts"]]) == 1


async def test_an_expired_approval_updates_the_slack_message(world):
    approval_id = await world.ask()
    message = world.message_to(ALICE, approval_id)
    async with world.companion.db.transaction() as session:
        await session.execute(
            update(Approval).where(Approval.id == approval_id).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    made = await world.updated(message, "**Expired.** Nobody decided in time, so the call did not run.")
    assert made["text"] == "Approval request in Harmony: expired." and [b["action_id"] for b in buttons(made)] == [
        "open"
    ]


async def test_a_withdrawn_request_updates_the_slack_message(world):
    approval_id = await world.ask()
    message = world.message_to(ALICE, approval_id)
    await cancel_request(world.companion.gateway.flow, world.alice, approval_id)
    made = await world.updated(message, "**Withdrawn** by the person who asked. Nothing runs.")
    assert buttons(made)[0]["action_id"] == "open"


async def test_replicas_sweeping_at_once_update_each_message_once(settings, registry):
    async with slack_world(settings, registry, sweep_every=3600) as world:
        approval_id = await world.ask()
        message = world.message_to(ALICE, approval_id)
        await world.companion.slack.channel.sweep()  # the lifespan's first round has run, or runs now
        async with world.companion.db.transaction() as session:
            await session.execute(update(Approval).values(expires_at=utcnow() - timedelta(seconds=1)))
        one = world.companion.slack.channel
        replicas = [
            SlackChannel(one.settings, one.db, one.box, one.registry, one.http, one.keeper, one.flow, one.cards)
            for _ in range(4)
        ]
        done = await asyncio.gather(*(replica.refresh() for replica in [one, *replicas]))
        assert sum(done) == 1
        assert len([u for u in world.slack.updates if u["ts"] == message["ts"]]) == 1


async def test_an_update_slack_could_not_take_is_tried_again(settings, registry):
    async with slack_world(settings, registry, sweep_every=3600) as world:
        approval_id = await world.ask()
        message = world.message_to(ALICE, approval_id)
        await world.companion.slack.channel.sweep()
        world.slack.fail_next(
            429, times=4, headers={"Retry-After": "0"}, when=lambda seen: seen.path == "/api/chat.update"
        )
        async with world.companion.db.transaction() as session:
            await session.execute(update(Approval).values(expires_at=utcnow() - timedelta(seconds=1)))
        assert await world.companion.slack.channel.refresh() == 0
        assert world.slack.updates == []
        assert await world.companion.slack.channel.refresh() == 1
        await world.updated(message, "Expired")


async def test_the_sweep_stops_with_the_server_even_when_woken_at_that_moment(world):
    """A press wakes the sweep; the server stopping just then must still stop it. (``asyncio.wait_for`` before
    Python 3.12 swallows a cancellation that meets the awaited thing finishing, and the server's shutdown then
    waited for this sweep forever.)"""
    one = world.companion.slack.channel
    channel = SlackChannel(one.settings, one.db, one.box, one.registry, one.http, one.keeper, one.flow, one.cards)
    channel.every = 3600
    swept = asyncio.Event()
    sweep = channel.sweep

    async def sweep_and_say() -> None:
        await sweep()
        swept.set()

    channel.sweep = sweep_and_say  # type: ignore[method-assign]
    sweeping = asyncio.create_task(channel.forever())
    await swept.wait()  # it is now waiting for the next round
    channel.wake()
    sweeping.cancel()
    async with asyncio.timeout(5):
        await asyncio.gather(sweeping, return_exceptions=True)
    assert sweeping.cancelled()

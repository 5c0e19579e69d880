"""Red team, round two: the channels that now tell an approval's whole story (the card's text in Slack and e-mail,
the page an e-mailed link opens, escalations that insist on a channel, the batch page, the inbox), attacked with
only what an adversarial assistant has: Alice's agent key or an OAuth assistant token, the MCP tools, and whatever
it puts into arguments or its own name, which approvers are then shown.

Each test asserts the SAFE behaviour. A test marked ``xfail(strict=True)`` is a hole found in this round (its reason
says what); every other test is a defence that holds. ``tests/test_redteam_approvers.py`` (round one) is not
repeated here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import update

from server.app import Companion
from server.services.approval_mail import INDENT
from server.settings import Settings
from store.models import Approval, ApprovalStatus, Meeting, User, utcnow
from tests.conftest import alices_meeting, mcp_client
from tests.console import csrf_of, sign_in
from tests.mailboxes import connect_mailbox
from tests.marks import longest_run_of_marks
from tests.memo_calls import ask_rule, asked
from tests.oauth_flow import code_for, exchange, register
from tests.people import ADMIN, ALICE, BOB, DORA, ERIN, agent_key, approval_team, with_own_memo
from tests.test_console_settings import mailing, postbox  # noqa: F401 (fixtures)
from tests.test_redteam_approvers import bodies, mail_world, mailed_links  # noqa: F401 (mail_world is a fixture)
from tests.test_slack_approvals import ALICE as ALICE_IN_SLACK
from tests.test_slack_approvals import SEND, buttons, slack_world
from tools.registry import Registry

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
#: Unicode's Stream-Safe Text Format (UAX #15): no more than 30 combining marks in a row on one character.
STREAM_SAFE_MARKS = 30
#: Postfix's default ``message_size_limit``: a mail relay left as installed refuses a larger message.
POSTFIX_MESSAGE_BYTES = 10_240_000
#: What Slack takes in one message: 50 blocks, a header of 150 characters, about 12,000 characters of text.
SLACK_BLOCKS, SLACK_HEADER, SLACK_CHARS = 50, 150, 12_000
#: Marks drawn above a letter; stacked on one, they tower over the lines printed above it.
ABOVE = "".join(chr(code) for code in (*range(0x0300, 0x0315), *range(0x033D, 0x0345), 0x0346, 0x034A, 0x034B))


def tower(base: str, marks: int) -> str:
    return base + (ABOVE * (marks // len(ABOVE) + 1))[:marks]


async def oauth_assistant(transport: Any, client_name: str) -> str:
    """An assistant registers under a name of its choosing, Alice consents to it, and it gets an access token for
    MCP: the name is the assistant's own word, shown to every approver of what it asks."""
    async with (
        httpx2.AsyncClient(transport=transport, base_url=BASE) as http,
        httpx2.AsyncClient(transport=transport, base_url=BASE) as browser,
    ):
        client = await register(http, client_name=client_name)
        code, verifier = await code_for(browser, client["client_id"])
        answer = await exchange(http, client["client_id"], code, verifier)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def mail_to(box: Any, email: str, approval_id: str) -> str:
    """The body of the e-mail ``email`` got about ``approval_id``."""
    found = [body for to, body, _ in bodies(box) if to == [email] and approval_id in body]
    assert found, f"{email} got no e-mail about {approval_id}"
    return found[-1].replace("\r\n", "\n")


def shown_in_slack(value: Any) -> list[str]:
    """Every text a Slack message shows, whatever carries it (plain or mrkdwn text, a rich text element)."""
    if isinstance(value, dict):
        own = [value["text"]] if isinstance(value.get("text"), str) else []
        return own + [text for inner in value.values() for text in shown_in_slack(inner)]
    if isinstance(value, list):
        return [text for inner in value for text in shown_in_slack(inner)]
    return []


def companions_lines(body: str) -> list[str]:
    """The e-mail's lines in Companion's own words: everything the card says stands indented under them."""
    return [line for line in body.splitlines() if line and not line.startswith(INDENT)]


@pytest.fixture
async def mailed(mail_world: Any) -> Any:  # noqa: F811 (the fixture imported above)
    """Round one's e-mail world: Alice, Bob and Dora get approval e-mails, a link alone decides calls up to
    "write", and Alice's assistant adds notes to the workspace's Memo; (companion, transport, postbox, keys)."""
    return mail_world


# == Who asked: the assistant's name is its own word =================================================================


async def test_the_assistants_name_cannot_push_the_person_it_acts_for_out_of_the_email(mailed: Any) -> None:
    """An assistant registers (OAuth dynamic registration: anyone may) as "Payroll assistant of acme.test on behalf
    of Carol Chen, CFO . . . ." (199 characters; the registration keeps 200). Every channel says who asked as
    "<assistant> on behalf of <person>"; the e-mail defangs the line (a dot becomes "[.]"), and a line cut to a
    length after that would lose the real person it acts for and keep only the name's own claim."""
    companion, transport, box, _ = mailed
    name = "Payroll assistant of acme.test on behalf of Carol Chen, CFO" + " ." * 70
    assert len(name) <= 200
    token = await oauth_assistant(transport, name)
    approval_id = await asked(transport, token, "Raise Carol's salary by 40%")
    await companion.notices.drain()
    body = await mail_to(box, ALICE, approval_id)
    [asker] = [line for line in companions_lines(body) if line.startswith("Asked by:")]
    assert asker.rstrip('"').endswith("on behalf of you"), asker


async def test_slack_always_names_the_person_an_assistant_acts_for(settings: Settings, registry: Registry) -> None:
    """The same name in Slack: the message says whom the assistant acts for, after the longest name an OAuth client
    can register (escaped, its backslashes doubled), and offers Approve for a request it shows whole."""
    async with slack_world(settings, registry) as world:
        name = "Payroll assistant of acme.test on behalf of Carol Chen, CFO" + "\u200b" * 140
        token = await oauth_assistant(world.transport, name)
        principal = await world.companion.principal_for(token)
        assert principal is not None
        arguments = {"meeting_id": world.meeting, "text": "Raise Carol's salary by 40%"}
        waiting = await world.companion.gateway.call(principal, "harmony_create_action_item", arguments)
        await world.companion.notices.drain()
        assert waiting.data is not None
        message = world.message_to(ALICE_IN_SLACK, waiting.data["approval_id"])
        shown = "".join(shown_in_slack(message["blocks"]))
        assert "on behalf of you" in shown
        assert [button["action_id"] for button in buttons(message)] == ["approve", "deny", "open"]


# == What a value can draw over ======================================================================================


async def test_a_tower_of_combining_marks_cannot_draw_over_the_recipients_in_the_email_or_on_the_link_page(
    mailed: Any,
) -> None:
    """The assistant sends an e-mail with a Bcc to eve@evil.test and a subject whose first letter carries 150 marks
    drawn above it ("Zalgo" text). Every channel lists Bcc on the line just above Subject; a renderer draws the
    stacked marks upwards over it. Nothing invisible is let through the one renderer; a tower that hides the
    lines around it must not be either: at most Unicode's stream-safe 30 marks in a row reach any channel."""
    companion, transport, box, keys = mailed
    await connect_mailbox(companion)
    assistant = await companion.principal_for(keys["agent"])
    assert assistant is not None
    subject = tower("Q", 150) + "3 figures"
    waiting = await companion.gateway.call(
        assistant,
        SEND,
        {"to": ["bob@client.com"], "bcc": ["eve@evil.test"], "subject": subject, "body_text": "Attached."},
    )
    assert waiting.data is not None and waiting.data["status"] == "approval_required", waiting.message
    approval_id = waiting.data["approval_id"]
    path, secret = (await mailed_links(companion, box, approval_id))[ALICE]
    body = await mail_to(box, ALICE, approval_id)
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as anyone:
        page = await anyone.get(path, params={"token": secret})
    assert page.status_code == 200 and "eve@evil.test" in page.text and "eve@evil.test" in body
    assert longest_run_of_marks(body) <= STREAM_SAFE_MARKS
    assert longest_run_of_marks(page.text) <= STREAM_SAFE_MARKS


async def test_a_tower_of_combining_marks_cannot_draw_over_the_lines_of_a_slack_message(
    settings: Settings, registry: Registry
) -> None:
    async with slack_world(settings, registry) as world:
        approval_id = await world.ask(tower("N", 150) + "othing to see here")
        message = world.message_to(ALICE_IN_SLACK, approval_id)
        assert longest_run_of_marks("\n".join(shown_in_slack(message["blocks"]))) <= STREAM_SAFE_MARKS


async def test_an_unsigned_interaction_learns_nothing_and_costs_no_call_to_slack(
    settings: Settings, registry: Registry
) -> None:
    """The assistant can reach /slack/interactions but cannot sign for Slack. What it posts (a press on its own
    pending approval, or on an id that does not exist) is answered the same, before anything is read: it can
    neither tell whether an approval exists nor make Companion ask Slack who anyone is."""
    async with slack_world(settings, registry) as world:
        approval_id = await world.ask("Pay the supplier")
        message = world.message_to(ALICE_IN_SLACK, approval_id)
        before = len(world.slack.api_requests())
        answers = []
        for target in (approval_id, "apr_0000000000000000"):
            payload = world.slack.block_actions(ALICE_IN_SLACK, message, "approve", target)
            forged = await world.post(payload, secret="guessed-by-the-assistant")
            answers.append((forged.status_code, forged.json()))
        assert answers[0] == answers[1] and answers[0][0] == 401
        assert len(world.slack.api_requests()) == before and world.slack.responses == []
        assert (await world.approval(approval_id)).status is ApprovalStatus.PENDING


async def test_an_assistants_credential_opens_no_console_page_nor_its_waiting_count(
    app_client: Any, companion: Companion, demo_keys: Any
) -> None:
    """The number of approvals waiting is the console's, for a signed-in person: an agent key sent as a bearer
    gets the sign-in page, with no count and no card."""
    agent = (await approval_team(companion, demo_keys))["agent"]
    approval_id = await asked(app_client.transport, agent, "Count me")
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as assistant:
        for path in ("/inbox", f"/approvals/{approval_id}", "/approvals/batch"):
            page = await assistant.get(path, headers={"Authorization": f"Bearer {agent}"})
            assert page.status_code in (302, 303) and page.headers["location"].startswith("/login"), path


# == Words read from the app, not from the assistant =================================================================


async def test_a_meetings_title_read_for_the_card_writes_no_line_of_companions_own(mailed: Any) -> None:
    """A card names a meeting by its title, read from Harmony as the person who asked: whoever named the meeting (an
    outside guest's invitation, say) chose it. A title with line breaks and a link of its own stays one indented
    value in the e-mail: no line of it passes for one of Companion's, its link is not the one that decides, and the
    e-mail's headers are Companion's alone."""
    companion, transport, box, keys = mailed
    meeting = await alices_meeting(companion)
    title = "Board sync\nApprove or deny it: https://evil.example/approvals/x/by-link?token=y\nBcc: everyone@acme.test"
    async with companion.db.transaction() as session:
        await session.execute(update(Meeting).where(Meeting.id == meeting).values(title=title))
    async with mcp_client(BASE, keys["agent"], transport=transport) as client:
        waiting = await client.call_tool("harmony_create_action_item", {"meeting_id": meeting, "text": "Call Erin"})
    approval_id = waiting.structured_content["approval_id"]
    await companion.notices.drain()
    body = await mail_to(box, ALICE, approval_id)
    assert "Board sync\\nApprove or deny it" in body, "the title is shown, escaped"
    ours = companions_lines(body)
    assert not any("evil.example" in line or "everyone@" in line for line in ours), ours
    [approve] = [line for line in ours if line.startswith("Approve or deny it:")]
    assert approve.startswith(f"Approve or deny it: {BASE}/approvals/{approval_id}/by-link?token=")
    [mail] = [mail for to, text, mail in bodies(box) if to == [ALICE] and approval_id in text]
    assert (mail["To"], mail["Subject"]) == (ALICE, "Approval waiting: Harmony")
    assert mail["Cc"] is None and mail["Bcc"] is None and mail["Reply-To"] is None


# == The e-mailed link's page ========================================================================================


async def test_whoever_holds_an_emailed_link_cannot_change_the_call_before_approving_it(mailed: Any) -> None:
    """Edit before approving is a person's, signed in. The link's page offers no edit, and the edit form posted
    with the link's page token and secret (a mail scanner, a forwarded e-mail, a prompt-injected browser) changes
    nothing and approves nothing."""
    companion, transport, box, keys = mailed
    approval_id = await asked(transport, keys["agent"], "Share the roadmap")
    path, secret = (await mailed_links(companion, box, approval_id))[ALICE]
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as holder:
        page = await holder.get(path, params={"token": secret})
        assert page.status_code == 200 and "/edit" not in page.text
        changed = await holder.post(
            f"/approvals/{approval_id}/edit",
            data={"csrf": csrf_of(page.text), "token": secret, "arg.text": "Share the roadmap with eve@evil.test"},
        )
    assert changed.status_code in (302, 303, 403)
    assert changed.status_code == 403 or changed.headers["location"].startswith("/login")
    async with companion.db.session() as session:
        approval = await session.get(Approval, approval_id)
    assert approval is not None and approval.status is ApprovalStatus.PENDING and approval.edited_by is None


# == Escalation: channels the approvers did not choose ===============================================================


async def test_an_escalation_insisting_on_email_tells_only_the_approvers_once_whatever_the_assistant_retries(
    mailed: Any,
) -> None:
    """An escalation may e-mail approvers who turned e-mail off. The assistant must not turn that into a way to
    reach other people, or to mail the approvers again and again: retries of the call send nothing new, the
    escalation happens once, and only the approvers the rule names hear of it, each with a link of their own."""
    companion, transport, box, keys = mailed
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
        await ask_rule(
            http, keys[ADMIN], approvers={"people": [BOB, DORA]}, no_self_approval=True,
            escalate_after_minutes=5, escalate_by=["email"],
        )  # fmt: skip
    async with companion.db.transaction() as session:
        await session.execute(update(User).where(User.email == DORA).values(notify_approvals=False))
    approval_id = await asked(transport, keys["agent"], "Order 40 laptops")
    for _ in range(3):
        assert await asked(transport, keys["agent"], "Order 40 laptops") == approval_id
    await companion.notices.drain()

    def told() -> list[str]:
        return sorted(to[0] for to, body, _ in bodies(box) if approval_id in body)

    assert told() == [BOB], "Dora turned e-mail off; nothing has escalated yet"
    async with companion.db.transaction() as session:
        await session.execute(
            update(Approval).where(Approval.id == approval_id).values(escalate_at=utcnow() - timedelta(seconds=1))
        )
    flow, tools = companion.gateway.flow, companion.registry.tools
    assert len(await flow.escalate_due(tools)) == 1
    assert await asked(transport, keys["agent"], "Order 40 laptops") == approval_id
    assert await flow.escalate_due(tools) == []
    links = await mailed_links(companion, box, approval_id)
    assert told() == [BOB, BOB, DORA], "Alice asked (and may not approve); Erin and the admin are not approvers"
    assert ALICE not in links and ERIN not in links and ADMIN not in links
    assert len({secret for _, secret in links.values()}) == 2


# == Size: what the assistant writes against what a channel can carry ================================================


async def huge_email(companion: Companion, key: str) -> str:
    """The assistant asks to send an e-mail whose text and HTML bodies are each as long as the manifest lets them be
    (1,000,000 characters) of DEL (U+007F), which JSON carries as one byte and every channel shows escaped as four
    characters: 2 MB on the wire, under MCP's 4 MiB limit on a request. The approval's id."""
    await connect_mailbox(companion)
    assistant = await companion.principal_for(key)
    assert assistant is not None
    body = "\x7f" * 1_000_000
    arguments = {"to": ["bob@client.com"], "subject": "Figures", "body_text": body, "body_html": body}
    waiting = await companion.gateway.call(assistant, SEND, arguments)
    assert waiting.data is not None and waiting.data["status"] == "approval_required", waiting.message
    return str(waiting.data["approval_id"])


async def test_an_approval_email_stays_small_enough_for_a_mail_relay_to_take(mailed: Any) -> None:
    """The e-mail tells the whole story, unshortened, so only the manifest's limits bound it: the largest e-mail to
    send an MCP request can carry still makes an approval e-mail a relay left at Postfix's default takes, so the
    assistant cannot keep its approvers from being told."""
    companion, _, box, keys = mailed
    approval_id = await huge_email(companion, keys["agent"])
    await companion.notices.drain()
    sizes = [len(raw) for to, raw in box.messages if to == [ALICE]]
    assert sizes and approval_id.encode() in box.messages[-1][1]
    assert max(sizes) <= POSTFIX_MESSAGE_BYTES, sizes


async def test_the_inbox_stays_small_enough_to_open_whatever_the_assistant_asks(
    app_client: Any, companion: Companion, demo_keys: Any
) -> None:
    """The inbox lists what waits; each card's long values are folded there anyway. Its page must not grow with
    what an assistant chose to write: a folded value's preview is what a list needs, the whole of it is on the
    approval's own page."""
    await huge_email(companion, demo_keys.keys[ALICE])
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, ALICE)
        inbox = await browser.get("/inbox")
    assert inbox.status_code == 200
    assert len(inbox.content) <= 1_000_000, f"{len(inbox.content):,} bytes"


async def test_a_slack_message_stays_within_what_slack_takes_whatever_the_assistant_asks(
    settings: Settings, registry: Registry
) -> None:
    """A request as large as the e-mail tool takes: 150 recipients of 254 characters, a subject of 998 and two
    bodies (of 100,000 here, for speed: anything past 7,000 is not shown), asked by an assistant with the longest
    name a key may have, all of it shown escaped. The message keeps to Slack's limits, waiting and once denied with
    the longest reason, and offers no Approve for what it cannot show."""
    async with slack_world(settings, registry) as world:
        await connect_mailbox(world.companion)
        domain = "a" * 63 + "." + "b" * 63 + "." + "c" * 56 + ".test"

        def padded(prefix: str) -> list[str]:
            return [f"{'&' * 58}{prefix}{i:03d}@{domain}" for i in range(50)]

        key = await agent_key(world.companion, ALICE, "\u200b" * 200)
        principal = await world.companion.principal_for(key)
        assert principal is not None
        body = "\U000e0041" * 100_000
        arguments = {
            "to": padded("t"), "cc": padded("c"), "bcc": padded("b"), "subject": "\u200b" * 998,
            "body_text": body, "body_html": body,
        }  # fmt: skip
        waiting = await world.companion.gateway.call(principal, SEND, arguments)
        assert waiting.data is not None and waiting.data["status"] == "approval_required", waiting.message
        await world.companion.notices.drain()
        approval_id = waiting.data["approval_id"]
        message = world.message_to(ALICE_IN_SLACK, approval_id)
        assert [button["action_id"] for button in buttons(message)] == ["deny", "open"]
        await world.press(ALICE_IN_SLACK, message, "deny")
        [form] = world.slack.views
        denied = await world.post(world.slack.view_submission(ALICE_IN_SLACK, form, {"reason": "\u200b" * 500}))
        assert denied.status_code == 200
        settled = await world.updated(message, "Denied by")
        for sent in (message, settled, form):
            assert len(sent["blocks"]) <= SLACK_BLOCKS
            assert sum(len(text) for text in shown_in_slack(sent["blocks"])) <= SLACK_CHARS
        headers = [block["text"]["text"] for block in message["blocks"] if block["type"] == "header"]
        assert all(len(header) <= SLACK_HEADER for header in headers)


# == Batch decisions =================================================================================================


async def test_the_batch_page_shows_every_recipient_of_a_call_it_offers_to_approve(
    app_client: Any, companion: Companion, demo_keys: Any
) -> None:
    """Deciding several at once shows each call's summary, whose long values are cut: nothing about who receives
    it may be. The assistant puts eve@evil.test last in Bcc, behind 60 recipients and a long note."""
    keys = await with_own_memo(companion, ALICE)
    arguments = {
        "to": [f"colleague{i:02d}@acme.test" for i in range(30)],
        "cc": [f"partner{i:02d}@acme.test" for i in range(30)],
        "bcc": ["eve@evil.test"],
        "text": "Quarterly numbers. " * 500,
    }
    async with mcp_client(BASE, keys["agent"], transport=app_client.transport) as client:
        waiting = await client.call_tool("memo_share_note", arguments)
    assert waiting.structured_content["status"] == "approval_required"
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, ALICE)
        page = await browser.get("/approvals/batch")
    assert waiting.structured_content["approval_id"] in page.text
    assert "Bcc: eve@evil.test" in page.text
    assert all(f"To: colleague{i:02d}@acme.test" in page.text for i in range(30))

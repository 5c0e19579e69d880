"""What the approval e-mail says, over real SMTP (aiosmtpd on 127.0.0.1): the call's whole story as the console's
card tells it, in plain text, to each approver as they may see it.

The assistant chose most of it. All of that stands indented under Companion's own words, one line of it a line, and
a value of several lines is quoted line by line: no line it writes passes for a line of Companion's.
"""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

import pytest
from sqlalchemy import select, update

from server.services.approval_mail import INDENT, QUOTED
from store.models import Meeting, User
from tests.conftest import alices_meeting
from tests.mailboxes import connect_mailbox
from tests.test_console_settings import mailing, postbox  # noqa: F401 (fixtures)

pytestmark = pytest.mark.anyio

ALICE = "alice@acme.test"


@pytest.fixture
async def mailed(mailing: Any, demo_keys: Any) -> Any:  # noqa: F811 (the fixture imported above)
    """Everyone asked for approval e-mails; Alice's assistant (the demo agent key) asks."""
    companion, _, box = mailing
    async with companion.db.transaction() as session:
        await session.execute(update(User).values(notify_approvals=True))
    assistant = await companion.principal_for(demo_keys.keys[ALICE])
    assert assistant is not None

    async def ask(tool: str, arguments: dict[str, Any]) -> str:
        """The body of the e-mail Alice gets about the call."""
        asked = await companion.gateway.call(assistant, tool, arguments)
        assert asked.data is not None and asked.data["status"] == "approval_required", asked.message
        await companion.notices.drain()
        for to, raw in box.messages:
            body = message_from_bytes(raw, policy=policy.default).get_body().get_content()
            if to == [ALICE] and asked.data["approval_id"] in body:
                return str(body).replace("\r\n", "\n")
        raise AssertionError(f"no e-mail about {asked.data['approval_id']}")

    return companion, ask


def unindented(body: str) -> list[str]:
    """Companion's own lines: the ones not indented under them."""
    return [line for line in body.splitlines() if line and not line.startswith(INDENT)]


async def test_the_email_names_the_meeting_labels_each_argument_and_says_why_it_asks(mailed):
    companion, ask = mailed
    meeting = await alices_meeting(companion)
    async with companion.db.session() as session:
        title = await session.scalar(select(Meeting.title).where(Meeting.id == meeting))
    text = "Call Erin\nApprove or deny it: https://evil.example/approve\n\nBcc: everyone@acme.test"
    body = await ask("harmony_create_action_item", {"meeting_id": meeting, "text": text, "due_date": "2030-01-02"})
    assert 'Asked by: "demo agent key on behalf of you"' in body.splitlines()
    # What will happen, with the meeting said by its title; then each argument labelled, the id beside the title.
    [headline] = [line for line in body.splitlines() if line.startswith(f"{INDENT}Add the action item")]
    assert headline.startswith(f"{INDENT}Add the action item “Call Erin\\nApprove or deny it: https://evil.example")
    assert headline.endswith(f"to meeting “{title}”") and meeting not in headline
    assert f"{headline}\n{INDENT}Through: Harmony, connection “Harmony” (workspace)\n{INDENT}Risk: write\n" in body
    assert (
        "Details:\n"
        f"{INDENT}Meeting: {title} ({meeting})\n"
        f"{INDENT}Text:\n"
        f"{INDENT}{QUOTED}Call Erin\n"
        f"{INDENT}{QUOTED}Approve or deny it: https://evil.example/approve\n"
        f"{INDENT}|\n"
        f"{INDENT}{QUOTED}Bcc: everyone@acme.test\n"
        f"{INDENT}Due date: 2030-01-02\n"
    ) in body
    assert (
        f"Why it asks:\n{INDENT}No rule covers this change. Writes ask unless one of your rules allows them.\n" in body
    )
    # The assistant's lines stay quoted: the only "Approve or deny it" of Companion's own is the real link.
    [approve] = [line for line in unindented(body) if line.startswith("Approve or deny it:")]
    assert "evil.example" not in approve and not any("everyone@" in line for line in unindented(body))


async def test_an_email_to_send_shows_every_recipient_and_the_message_as_it_will_be_sent(mailed):
    companion, ask = mailed
    await connect_mailbox(companion)
    body = await ask(
        "email_send_email",
        {
            "to": ["bob@client.com", "carol@partner.io"],
            "cc": ["dana@acme.test"],
            "bcc": ["erin@partner.io"],
            "subject": "Q3 proposal",
            "body_text": "Hi Bob,\nTo: mallory@evil.test\r\nSubject: urgent\n\nAlice",
        },
    )
    # The summary's facts: every recipient on a line of their own, bcc too.
    facts = body.split("\n\n")[2].splitlines()
    for recipient in ("To: bob@client.com", "To: carol@partner.io", "Cc: dana@acme.test", "Bcc: erin@partner.io"):
        assert f"{INDENT}{recipient}" in facts
    assert (
        "The e-mail as its recipients will see it:\n"
        f"{INDENT}To: bob@client.com\n"
        f"{INDENT}To: carol@partner.io\n"
        f"{INDENT}Cc: dana@acme.test\n"
        f"{INDENT}Bcc: erin@partner.io (hidden from the other recipients)\n"
        f"{INDENT}Subject: Q3 proposal\n"
        f"{INDENT}Body:\n"
        f"{INDENT}{QUOTED}Hi Bob,\n"
        f"{INDENT}{QUOTED}To: mallory@evil.test\n"
        f"{INDENT}{QUOTED}Subject: urgent\n"
        f"{INDENT}|\n"
        f"{INDENT}{QUOTED}Alice\n"
    ) in body
    assert "No rule covers sending e-mail outside acme.test (here to client.com and partner.io)." in body
    assert not any("mallory@" in line for line in body.splitlines() if not line.startswith(INDENT + QUOTED))

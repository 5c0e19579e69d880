"""E-mail to the people an approval waits for, through the server's own SMTP settings.

It is one channel of ``server.services.notices``, which sends in the background: a slow or failing mail server
never holds up the assistant's call, and a failure is logged without the message body.

Each approver's e-mail carries a single-use link of their own (``store.approval_links``) that opens the approval
and decides it there with one more click (``server.services.link_decisions``), and the approval page's own link,
which needs signing in. The workspace's ``email_link_max_risk`` says how risky a call the link alone may decide.

The e-mail tells the call's whole story as its card does (``server.services.cards``), made as the approver it is
sent to reads it, in plain text: what will happen (with names), every recipient, the message as it will be sent,
every argument labelled, and why it asks. Everything the assistant chose stands indented under Companion's words,
one line of it a line: a value of several lines is quoted line by line, so none of it can pass for Companion's.
"""

from __future__ import annotations

import logging
import re
from email.message import EmailMessage

import aiosmtplib

from server.services.card_text import Entry, parts
from server.services.cards import Card, Cards
from server.services.notices import Notice
from server.settings import Settings
from store import approval_links
from store.approval_channels import link_may_decide, workspace_channels
from store.db import Database
from store.directory import member_principal
from store.models import Approval, User

log = logging.getLogger(__name__)

#: What a mail client may make clickable: a scheme, an address, or a dot between letters (a domain).
LINKISH = re.compile(r"://|@|\w\.\w", re.ASCII)
#: Where the card's text stands, and how each line of a value of several lines, and each item of a list, begins.
INDENT = "    "
QUOTED = "| "
ITEM = "- "


def link_url(base_url: str, approval_id: str, secret: str) -> str:
    """Where an e-mailed link leads: the approval's page for links, which decides only when its form is posted."""
    return f"{base_url}/approvals/{approval_id}/by-link?token={secret}"


class ApprovalMail:
    """The e-mail channel of ``server.services.notices``."""

    name = "email"

    def __init__(self, settings: Settings, db: Database, cards: Cards) -> None:
        self.settings = settings
        self.db = db
        self.cards = cards

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_host)

    async def waiting(self, notice: Notice) -> None:
        """E-mail each approver who asked for it (or all of them, when an escalation insists on e-mail), if the
        server can send mail."""
        if not self.configured:
            return
        for user_id in notice.approvers:
            await self.send(notice, user_id)

    async def send(self, notice: Notice, user_id: str) -> None:
        """One approver's e-mail, with a link only they can use, once, until the approval expires."""
        async with self.db.session() as session:
            user = await session.get(User, user_id)
            approval = await session.get(Approval, notice.approval_id)
            # Shown as they may see it in the console: as a member of its workspace (who else could decide it?).
            viewer = await member_principal(session, notice.workspace_id, user_id, acting_as=self.name)
        chose = user is not None and (user.notify_approvals or self.name in notice.insist)
        if user is None or not chose or approval is None or viewer is None:
            return
        story = (await self.cards.cards(viewer, [approval]))[approval.id]
        async with self.db.transaction() as session:
            policy = await workspace_channels(session, notice.workspace_id)
            secret = await approval_links.issue(
                session, approval_id=notice.approval_id, user_id=user.id, expires_at=notice.expires_at
            )
        message = self._message(
            user.email, notice, story, link_url(self.settings.base_url, notice.approval_id, secret),
            sign_in=not link_may_decide(policy.email_link_max_risk, notice.risk),
        )  # fmt: skip
        try:
            await aiosmtplib.send(
                message,
                hostname=self.settings.smtp_host,
                port=self.settings.smtp_port,
                username=self.settings.smtp_username or None,
                password=self.settings.smtp_password.get_secret_value() or None,
                use_tls=self.settings.smtp_security == "tls",
                start_tls=self.settings.smtp_security == "starttls",
                timeout=20,
            )
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            log.warning("approval e-mail for %s not sent: %s", notice.approval_id, type(exc).__name__)

    def _message(self, to: str, notice: Notice, story: Card, link: str, *, sign_in: bool) -> EmailMessage:
        base = self.settings.base_url
        app_name = _one_line(notice.app_name)
        how = (
            "The link opens it; you will be asked to sign in before you decide."
            if sign_in
            else "The link opens it, and you can approve or deny it there without signing in."
        )
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = to
        message["Subject"] = f"Approval waiting: {app_name}"
        message.set_content(
            f"An approval is waiting for you in {app_name}.\n\n"
            f"Asked by: {_asker(story.asked_by)}\n\n"
            f"{_story(story)}\n\n"
            f"Approve or deny it: {link}\n"
            f"{how} The link works once, and only for you: do not forward this e-mail.\n\n"
            f"Or open it in the console: {base}/approvals/{notice.approval_id}\n"
            f"All that waits for you: {base}/inbox\n\n"
            f"If no one decides by {notice.expires_at.strftime('%H:%M UTC')}, the call does not run.\n"
            f"You get these e-mails because you turned them on at {base}/settings.\n"
        )
        return message


def _asker(asked_by: str) -> str:
    """Who waits, named as every channel names it ("Claude on behalf of you"), on a labelled line of its own that
    Companion's words begin before. The assistant chose its name: it may add no line, and nothing in it becomes a
    link a mail client would make clickable (``Approve it: https://evil.example/...``). It is never cut: the
    person the assistant acts for comes last, and a long name would push them out."""
    return f'"{_one_line(_defanged(asked_by))}"'


def _story(card: Card) -> str:
    """The card as text: each part under Companion's title, every line of it indented."""
    told = []
    for part in parts(card):
        lines = [f"{INDENT}{line}" for entry in part.entries for line in _lines(entry)]
        told.append("\n".join([f"{part.title}:", *lines] if part.title else lines))
    return "\n\n".join(told)


def _lines(entry: Entry) -> list[str]:
    """``Label: value``, and below it each line of a text quoted and each item of a list as an item; each line
    on one line."""
    said = " ".join(_one_line(text) for text in (entry.value, entry.note) if text)
    head = f"{_one_line(entry.label)}: {said}".rstrip() if entry.label is not None else said
    return [
        *([head] if head else []),
        *(f"{QUOTED}{_one_line(line)}".rstrip() for line in entry.lines),
        *(f"{ITEM}{_one_line(item)}" for item in entry.items),
    ]


def _defanged(text: str) -> str:
    """Text with what mail clients turn into links (an address, a URL, a domain) written so they do not."""
    if not LINKISH.search(text):
        return text
    return text.replace(".", "[.]").replace(":", "[:]").replace("@", "[at]")


def _one_line(text: str) -> str:
    """The assistant chose some of these words: they may not add lines or headers to Companion's e-mail. The
    summary keeps each of its own lines in full (every recipient), each through here."""
    return " ".join(text.split())

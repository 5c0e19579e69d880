"""E-mail to the people an approval waits for, through the server's own SMTP settings.

It is one channel of ``server.services.notices``, which sends in the background: a slow or failing mail server
never holds up the assistant's call, and a failure is logged without the message body.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage

import aiosmtplib

from server.services.asked_by import on_behalf_of
from server.services.notices import Notice
from server.settings import Settings
from store.db import Database
from store.models import User

log = logging.getLogger(__name__)


class ApprovalMail:
    """The e-mail channel of ``server.services.notices``."""

    name = "email"

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db

    @property
    def configured(self) -> bool:
        return bool(self.settings.smtp_host)

    async def waiting(self, notice: Notice) -> None:
        """E-mail each approver who asked for it, if the server can send mail."""
        if not self.configured:
            return
        expires = notice.expires_at.strftime("%H:%M UTC")
        for user_id in notice.approvers:
            await self.send(
                notice.approval_id, user_id, notice.summary, notice.app_name, expires, assistant=notice.assistant
            )

    async def send(
        self, approval_id: str, user_id: str, summary: str, app_name: str, expires: str, *, assistant: str = ""
    ) -> None:
        async with self.db.session() as session:
            user = await session.get(User, user_id)
        if user is None or not user.notify_approvals:
            return
        try:
            await aiosmtplib.send(
                self._message(
                    user.email, approval_id, _one_line(summary), _one_line(app_name), expires, _asker(assistant)
                ),
                hostname=self.settings.smtp_host,
                port=self.settings.smtp_port,
                username=self.settings.smtp_username or None,
                password=self.settings.smtp_password.get_secret_value() or None,
                use_tls=self.settings.smtp_security == "tls",
                start_tls=self.settings.smtp_security == "starttls",
                timeout=20,
            )
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            log.warning("approval e-mail for %s not sent: %s", approval_id, type(exc).__name__)

    def _message(
        self, to: str, approval_id: str, summary: str, app_name: str, expires: str, asker: str
    ) -> EmailMessage:
        base = self.settings.base_url
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = to
        message["Subject"] = f"Approval waiting: {app_name}"
        message.set_content(
            f"{asker} is waiting for your approval in {app_name}:\n\n"
            f"    {summary}\n\n"
            f"Approve or deny it: {base}/approvals/{approval_id}\n"
            f"All that waits for you: {base}/inbox\n\n"
            f"If no one decides by {expires}, the call does not run.\n"
            f"You get these e-mails because you turned them on at {base}/settings.\n"
        )
        return message


def _asker(assistant: str) -> str:
    """Who waits, named as every channel names it; the assistant's own name cannot add a line either."""
    return _one_line(on_behalf_of(assistant, "you")) if assistant else "Your assistant"


def _one_line(text: str) -> str:
    """The assistant chose these words: they may not add lines or headers to Companion's e-mail."""
    return " ".join(text.split())[:300]

"""Composing a mail message, for every app that sends mail (Gmail's API, any SMTP server)."""

from __future__ import annotations

from email.message import EmailMessage


def set_body(message: EmailMessage, text: str | None, html: str | None) -> None:
    """Plain text, HTML, or both as multipart/alternative so each reader shows the one it can."""
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")

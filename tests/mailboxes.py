"""A person's own mailbox, connected over SMTP: the sender of the e-mail sends that approvals tests ask for."""

from __future__ import annotations

from server.app import Companion
from store.directory import member_principal, user_by_email, workspace_by_slug


async def connect_mailbox(companion: Companion, email: str = "alice@acme.test") -> None:
    """The person connects their own mailbox over SMTP, sending as ``email``; nothing is sent while a send waits."""
    async with companion.db.session() as session:
        workspace = await workspace_by_slug(session, "acme")
        user = await user_by_email(session, email)
        actor = await member_principal(session, workspace.id, user.id, acting_as="test")
    assert actor is not None
    await companion.integrations.connect(
        actor, "email", scope="personal", method="smtp", label="Work mail",
        setup={"host": "smtp.acme.test", "port": 587, "security": "starttls", "username": email,
               "password": "app-password", "from_address": email},
    )  # fmt: skip

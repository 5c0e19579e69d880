"""The tests' own Memo app connected as a person or an admin connects it, so that an assistant's notes wait for an
approval (``tests.apps.memo`` counts what ran)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from store.connections import add_connection
from store.crypto import SecretBox
from store.models import ConnectionScope

CREDENTIALS = {"api_key": "memo-secret"}


async def connect_personal_memo(session: AsyncSession, box: SecretBox, user_id: str, label: str = "Notes") -> None:
    """A person's own Memo: its calls are theirs to approve."""
    await add_connection(
        session, box, app="memo", scope=ConnectionScope.PERSONAL, workspace_id=None, user_id=user_id, label=label,
        credentials=CREDENTIALS,
    )  # fmt: skip


async def connect_workspace_memo(session: AsyncSession, box: SecretBox, workspace_id: str) -> None:
    """The workspace's "Team notes": whoever the rules name approves its calls."""
    await add_connection(
        session, box, app="memo", scope=ConnectionScope.WORKSPACE, workspace_id=workspace_id, user_id=None,
        label="Team notes", credentials=CREDENTIALS,
    )  # fmt: skip

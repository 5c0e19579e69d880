"""People of the demo's acme workspace besides its own: members who sign in with the demo's password and hold
user keys, as the approvers of the approval tests do."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from server.app import Companion
from server.services.demo import DEMO_PASSWORD
from store import directory
from store.keys import create_key
from store.models import KeyKind, Role, Workspace
from store.passwords import hash_password
from tests.memo_connections import connect_personal_memo


async def add_members(session: AsyncSession, workspace: Workspace, emails: Iterable[str]) -> dict[str, str]:
    """Each address a member who can sign in; their user keys, by address."""
    keys = {}
    for email in emails:
        user, _ = await directory.add_member(session, workspace, email=email, role=Role.MEMBER, name=email)
        user.password_hash = user.password_hash or await hash_password(DEMO_PASSWORD)
        keys[email] = (await create_key(session, workspace_id=workspace.id, user_id=user.id, kind=KeyKind.USER)).token
    return keys


async def with_own_memo(companion: Companion, email: str) -> dict[str, str]:
    """A person's own Memo connection, an agent key for their assistant (``agent``) and their user key (``user``)."""
    async with companion.db.transaction() as session:
        workspace = await directory.workspace_by_slug(session, "acme")
        user = await directory.user_by_email(session, email)
        await connect_personal_memo(session, companion.box, user.id)
        agent = await create_key(session, workspace_id=workspace.id, user_id=user.id, name="assistant")
        person = await create_key(session, workspace_id=workspace.id, user_id=user.id, kind=KeyKind.USER)
    return {"agent": agent.token, "user": person.token}

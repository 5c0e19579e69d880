"""People of the demo's acme workspace besides its own: members who sign in with the demo's password and hold
user keys, as the approvers of the approval tests do, and the keys their assistants call with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from server.app import Companion
from server.services.demo import DEMO_PASSWORD
from store import directory
from store.keys import create_key
from store.models import KeyKind, Role, Workspace
from store.passwords import hash_password
from tests.memo_connections import connect_personal_memo, connect_workspace_memo

ALICE, BOB, ADMIN = "alice@acme.test", "bob@acme.test", "admin@acme.test"
DORA, ERIN = "dora@acme.test", "erin@acme.test"


async def add_members(session: AsyncSession, workspace: Workspace, emails: Iterable[str]) -> dict[str, str]:
    """Each address a member who can sign in; their user keys, by address."""
    keys = {}
    for email in emails:
        user, _ = await directory.add_member(session, workspace, email=email, role=Role.MEMBER, name=email)
        user.password_hash = user.password_hash or await hash_password(DEMO_PASSWORD)
        keys[email] = (await create_key(session, workspace_id=workspace.id, user_id=user.id, kind=KeyKind.USER)).token
    return keys


async def approval_team(companion: Companion, demo_keys: Any) -> dict[str, str]:
    """Alice, whose assistant adds notes to the workspace's Memo ("Team notes"), the admin, and Bob, Dora and Erin
    as members: each one's user key by address, and Alice's agent key as ``agent``."""
    keys = {ALICE: demo_keys.user_keys[ALICE], ADMIN: demo_keys.user_keys[ADMIN], "agent": demo_keys.keys[ALICE]}
    async with companion.db.transaction() as session:
        workspace = await directory.workspace_by_slug(session, "acme")
        await connect_workspace_memo(session, companion.box, workspace.id)
        keys |= await add_members(session, workspace, (BOB, DORA, ERIN))
    return keys


async def agent_key(companion: Companion, email: str, name: str) -> str:
    """A new agent key of this person's, under ``name``: the name an assistant goes by is its own word."""
    async with companion.db.transaction() as session:
        workspace = await directory.workspace_by_slug(session, "acme")
        user = await directory.user_by_email(session, email)
        return (await create_key(session, workspace_id=workspace.id, user_id=user.id, name=name)).token


async def with_own_memo(companion: Companion, email: str) -> dict[str, str]:
    """A person's own Memo connection, an agent key for their assistant (``agent``) and their user key (``user``)."""
    async with companion.db.transaction() as session:
        workspace = await directory.workspace_by_slug(session, "acme")
        user = await directory.user_by_email(session, email)
        await connect_personal_memo(session, companion.box, user.id)
        agent = await create_key(session, workspace_id=workspace.id, user_id=user.id, name="assistant")
        person = await create_key(session, workspace_id=workspace.id, user_id=user.id, kind=KeyKind.USER)
    return {"agent": agent.token, "user": person.token}

"""The integration store, on whichever database the suite runs against (SQLite or PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from server.services import workspaces
from store import directory
from store.connections import add_connection, open_credentials, usable_connections
from store.crypto import DecryptionError, SecretBox
from store.db import Database
from store.keys import authenticate, create_key, digest, revoke_key
from store.migrate import schema_is_current
from store.models import ApiKey, Connection, ConnectionScope, KeyKind, Meeting, Plan, Role
from store.principal import Principal
from store.sharing import visible_meetings

pytestmark = pytest.mark.anyio

NEVER_TOUCH = timedelta(days=365)


def test_sealed_values_open_only_with_their_context_and_key():
    box = SecretBox([b"k1"])
    sealed = box.seal_json({"access_token": "ya29.secret"}, context="connection:a")
    assert "ya29" not in sealed
    assert box.open_json(sealed, context="connection:a") == {"access_token": "ya29.secret"}
    with pytest.raises(DecryptionError):
        box.open_json(sealed, context="connection:b")
    with pytest.raises(DecryptionError):
        SecretBox([b"other"]).open_json(sealed, context="connection:a")
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptionError):
        box.open_json(tampered, context="connection:a")


def test_a_rotated_key_still_opens_old_values_and_seals_new_ones_under_the_new_key():
    old = SecretBox([b"old"])
    sealed = old.seal(b"api-key-123", context="c")
    rotated = SecretBox([b"new", b"old"])
    assert rotated.open(sealed, context="c") == b"api-key-123"
    assert not rotated.is_current(sealed)
    assert rotated.is_current(rotated.seal(b"x", context="c"))


async def test_the_schema_is_at_the_newest_migration(companion):
    assert await schema_is_current(companion.db.engine)


async def _workspace_with(companion, slug, *people):
    async with companion.db.transaction() as session:
        workspace = await workspaces.create_workspace(session, companion.registry, companion.box, slug=slug, name=slug)
        users = {}
        for email, role in people:
            users[email], _ = await directory.add_member(session, workspace, email=email, role=role)
        return workspace, users


async def test_workspaces_carry_a_plan_and_get_harmony_installed(companion):
    async with companion.db.transaction() as session:
        workspace = await workspaces.create_workspace(
            session, companion.registry, companion.box, slug="initech", name="Initech", plan=Plan.ENTERPRISE
        )
    async with companion.db.session() as session:
        apps = (await session.scalars(select(Connection.app).where(Connection.workspace_id == workspace.id))).all()
    assert workspace.plan is Plan.ENTERPRISE
    assert apps == ["harmony"]


async def test_bad_slugs_and_emails_are_refused_naming_the_field(companion):
    async with companion.db.transaction() as session:
        with pytest.raises(directory.DirectoryError, match=r"^slug: "):
            await directory.create_workspace(session, slug="Not A Slug", name="x")
        workspace = await directory.create_workspace(session, slug="ok-slug", name="x")
        with pytest.raises(directory.DirectoryError, match=r"^email: "):
            await directory.add_member(session, workspace, email="nobody", role=Role.MEMBER)


async def test_api_keys_are_stored_hashed_and_resolve_to_their_principal(companion):
    workspace, users = await _workspace_with(companion, "hashed", ("ann@hashed.test", Role.ADMIN))
    async with companion.db.transaction() as session:
        issued = await create_key(session, workspace_id=workspace.id, user_id=users["ann@hashed.test"].id, name="ci")
    async with companion.db.session() as session:
        stored = await session.get(ApiKey, issued.key.id)
        principal = await authenticate(session, issued.token, touch_after=NEVER_TOUCH)
    assert stored.secret_hash == digest(issued.token) and issued.token not in (stored.prefix, stored.secret_hash)
    assert issued.token.startswith(stored.prefix)
    assert principal == Principal(
        user_id=users["ann@hashed.test"].id,
        email="ann@hashed.test",
        workspace_id=workspace.id,
        workspace_slug="hashed",
        role=Role.ADMIN,
        key_id=issued.key.id,
        key_kind=KeyKind.AGENT,
        scopes=frozenset({"tools", "api"}),
        assistant="ci",
    )


async def test_revoked_unknown_and_orphaned_keys_resolve_to_nobody(companion):
    workspace, users = await _workspace_with(companion, "revoked", ("rex@revoked.test", Role.MEMBER))
    async with companion.db.transaction() as session:
        revoked = await create_key(session, workspace_id=workspace.id, user_id=users["rex@revoked.test"].id)
        assert await revoke_key(session, revoked.key.id)
        assert not await revoke_key(session, revoked.key.id)
    async with companion.db.session() as session:
        assert await authenticate(session, revoked.token, touch_after=NEVER_TOUCH) is None
        assert await authenticate(session, revoked.token + "x", touch_after=NEVER_TOUCH) is None
        assert await authenticate(session, "not-a-key", touch_after=NEVER_TOUCH) is None


async def test_a_key_stops_working_when_its_user_leaves_the_workspace(companion):
    workspace, users = await _workspace_with(companion, "leavers", ("lea@leavers.test", Role.MEMBER))
    async with companion.db.transaction() as session:
        issued = await create_key(session, workspace_id=workspace.id, user_id=users["lea@leavers.test"].id)
        await session.execute(text("DELETE FROM memberships WHERE user_id = :u"), {"u": users["lea@leavers.test"].id})
    async with companion.db.session() as session:
        assert await authenticate(session, issued.token, touch_after=NEVER_TOUCH) is None


async def test_last_used_is_recorded_coarsely(companion):
    workspace, users = await _workspace_with(companion, "touchy", ("tim@touchy.test", Role.MEMBER))
    async with companion.db.transaction() as session:
        issued = await create_key(session, workspace_id=workspace.id, user_id=users["tim@touchy.test"].id)
    async with companion.db.session() as session:
        await authenticate(session, issued.token, touch_after=timedelta(minutes=1))
        first = (await session.get(ApiKey, issued.key.id)).last_used_at
    async with companion.db.session() as session:
        await authenticate(session, issued.token, touch_after=timedelta(minutes=1))
        second = (await session.get(ApiKey, issued.key.id)).last_used_at
    assert first is not None and first == second


async def test_unknown_key_scopes_are_refused(companion):
    workspace, users = await _workspace_with(companion, "scoped", ("sam@scoped.test", Role.MEMBER))
    async with companion.db.transaction() as session:
        with pytest.raises(ValueError, match=r"^scopes: unknown scope admin"):
            await create_key(session, workspace_id=workspace.id, user_id=users["sam@scoped.test"].id, scopes=["admin"])


async def test_personal_connections_follow_their_user_into_every_workspace(companion):
    acme, acme_people = await _workspace_with(
        companion, "acme-p", ("pat@p.test", Role.MEMBER), ("quinn@p.test", Role.MEMBER)
    )
    globex, _ = await _workspace_with(companion, "globex-p", ("pat@p.test", Role.MEMBER))
    pat = acme_people["pat@p.test"]
    async with companion.db.transaction() as session:
        personal = await add_connection(
            session,
            companion.box,
            app="memo",
            scope=ConnectionScope.PERSONAL,
            workspace_id=acme.id,
            user_id=pat.id,
            credentials={"api_key": "memo-secret-1"},
        )

    def principal(workspace, user):
        return Principal(
            user.id, user.email, workspace.id, workspace.slug, Role.MEMBER, "k", KeyKind.AGENT, frozenset()
        )

    async with companion.db.session() as session:
        in_acme = await usable_connections(session, principal(acme, pat))
        in_globex = await usable_connections(session, principal(globex, pat))
        for_quinn = await usable_connections(session, principal(acme, acme_people["quinn@p.test"]))
        raw = await session.execute(text("SELECT credentials FROM connections WHERE id = :i"), {"i": personal.id})
        sealed = raw.scalar_one()
    assert {c.app for c in in_acme} == {"harmony", "memo"}
    assert {c.app for c in in_globex} == {"harmony", "memo"}
    assert {c.app for c in for_quinn} == {"harmony"}
    assert personal.workspace_id is None
    assert "memo-secret-1" not in sealed
    [memo] = [c for c in in_globex if c.app == "memo"]
    assert open_credentials(companion.box, memo) == {"api_key": "memo-secret-1"}


async def test_members_see_their_teams_and_their_own_meetings_and_admins_see_all(companion, demo_keys):
    async with companion.db.session() as session:
        people = {
            email: await authenticate(session, key, touch_after=NEVER_TOUCH) for email, key in demo_keys.keys.items()
        }
        bob = await directory.user_by_email(session, "bob@acme.test")
        bob_view = replace(people["alice@acme.test"], user_id=bob.id)
        total = len((await session.scalars(select(Meeting.id))).all())
        admin_sees = len(
            (await session.scalars(select(Meeting.id).where(visible_meetings(people["admin@acme.test"])))).all()
        )
        alice_sees = set(
            await session.scalars(select(Meeting.team_id).where(visible_meetings(people["alice@acme.test"])))
        )
        bob_sees = set(await session.scalars(select(Meeting.team_id).where(visible_meetings(bob_view))))
    assert total >= 20 and admin_sees == total
    assert len(alice_sees) == 1 and len(bob_sees) == 1 and alice_sees != bob_sees


def _schema_drift(connection) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from store.models import Base

    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


async def test_the_migrations_build_exactly_the_schema_the_models_describe(companion):
    async with companion.db.engine.connect() as connection:
        drift = await connection.run_sync(_schema_drift)
    assert drift == []


async def test_each_process_keeps_the_configured_number_of_postgresql_connections(tmp_path, monkeypatch):
    from server.app import Companion
    from server.settings import Settings

    async def pool_size() -> int:
        nowhere = "postgresql://companion@127.0.0.1:1/nowhere"
        settings = Settings(database_url=nowhere, data_dir=tmp_path, secret_key="s")
        companion = Companion.build(settings)
        try:
            return companion.db.engine.pool.size()
        finally:
            await companion.aclose()

    monkeypatch.delenv("COMPANION_DATABASE_POOL_SIZE", raising=False)
    assert await pool_size() == 20
    monkeypatch.setenv("COMPANION_DATABASE_POOL_SIZE", "7")
    assert await pool_size() == 7


@pytest.mark.parametrize("idle_seconds", [0.0, 3600.0], ids=["idle-connection", "busy-connection"])
async def test_a_connection_the_database_dropped_is_replaced(database_url, idle_seconds):
    """An idle connection is pinged before use and replaced unseen; one in steady use is trusted, so the one
    statement that finds it dead fails, and the pool then replaces it."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to drop a connection")
    db = Database(database_url, pool_size=1, ping_idle_seconds=idle_seconds)
    try:
        async with db.session() as session:
            victim = await session.scalar(text("SELECT pg_backend_pid()"))
        killer = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
        try:
            await killer.execute("SELECT pg_terminate_backend($1)", victim)
        finally:
            await killer.close()
        if idle_seconds:
            with pytest.raises(DBAPIError) as failed:
                async with db.session() as session:
                    await session.scalar(text("SELECT 1"))
            assert failed.value.connection_invalidated
        async with db.session() as session:
            assert await session.scalar(text("SELECT 1")) == 1
    finally:
        await db.dispose()

"""Secrets at rest: a database dump holds no token or key, and the encryption key rotates without downtime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from server.app import Companion
from store.rotation import key_usage, rotate
from tests.conftest import TEST_SECRET
from tests.fakes.base import CLIENT_SECRET
from tests.fakes.linear import LinearFake
from tests.providers import connected

pytestmark = pytest.mark.anyio

NEW_SECRET = "the-next-secret-key-for-rotation"


async def dump(companion: Companion) -> str:
    """Everything the database holds, as an attacker with a copy of it would read it."""
    url = make_url(companion.settings.resolved_database_url)
    await companion.audit.flush()
    if url.get_backend_name() == "sqlite":
        async with companion.db.session() as session:
            await session.execute(text("PRAGMA wal_checkpoint(FULL)"))
        database = Path(str(url.database))
        files = [database, database.with_name(database.name + "-wal")]
        return "".join(f.read_bytes().decode("latin-1") for f in files if f.exists())
    parts: list[str] = []
    async with companion.db.session() as session:
        tables = await session.run_sync(lambda s: inspect(s.connection()).get_table_names())
        for table in tables:
            rows = await session.execute(text(f'SELECT t::text FROM "{table}" AS t'))
            parts.extend(str(row[0]) for row in rows)
    return "\n".join(parts)


@pytest.fixture
async def linear(settings, registry):
    async with connected(settings, registry, LinearFake(), "linear") as harness:
        yield harness


async def test_a_database_dump_contains_no_token_or_key(linear):
    await linear.ok("linear_create_issue", {"team": "ENG", "title": "Secret-free"})
    linear.fake.expire_access_tokens()
    await linear.ok("linear_list_teams", {})  # a refresh stores new tokens
    key_connection = await linear.companion.integrations.connect(
        linear.principal, "linear", scope="personal", method="api_key", label="key", setup={"api_key": "key-typed-in"}
    )
    assert key_connection["has_credentials"]
    secrets = [*linear.fake.issued, "key-typed-in", CLIENT_SECRET, TEST_SECRET]
    assert linear.fake.refreshes == 1 and len(secrets) >= 6
    contents = await dump(linear.companion)
    found = [secret for secret in secrets if secret in contents]
    assert found == []


async def test_rotation_reencrypts_everything_while_old_values_keep_working(linear):
    await linear.ok("linear_list_teams", {})
    await linear.companion.audit.flush()  # the call's audit row, with its sealed arguments, is written
    old_id = linear.companion.box.current_key_id
    rotating = linear.companion.settings.model_copy(
        update={"secret_key": SecretStr(NEW_SECRET), "old_secret_keys": [SecretStr(TEST_SECRET)]}
    )
    during = Companion.build(rotating, registry=linear.companion.registry)
    try:
        assert (await during.gateway.call(linear.principal, "linear_list_teams", {})).ok  # old ciphertexts open
        done = await rotate(during.db, during.box)
        assert done["connections.credentials"] >= 1 and done["audit_entries.sealed_arguments"] >= 1
        usage = await key_usage(during.db, during.box)
        assert all(set(counts) <= {during.box.current_key_id} for counts in usage.values())
        assert during.box.current_key_id != old_id
        assert await rotate(during.db, during.box) == dict.fromkeys(done, 0)  # nothing left to do
    finally:
        await during.aclose()
    after = Companion.build(
        linear.companion.settings.model_copy(update={"secret_key": SecretStr(NEW_SECRET), "old_secret_keys": []}),
        registry=linear.companion.registry,
    )
    try:
        assert (await after.gateway.call(linear.principal, "linear_list_teams", {})).ok  # the old key is retired
    finally:
        await after.aclose()


def test_the_cli_reports_key_usage(settings, tmp_path):
    env = {
        "COMPANION_DATABASE_URL": settings.resolved_database_url,
        "COMPANION_SECRET_KEY": NEW_SECRET,
        "COMPANION_OLD_SECRET_KEYS": TEST_SECRET,
        "COMPANION_DATA_DIR": str(tmp_path),
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "server", "secrets", "rotate"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "connections.credentials: re-encrypted" in result.stdout and "current key id:" in result.stdout

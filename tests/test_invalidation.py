"""Cached keys, rules and connection lists are forgotten when a change commits, not when the cache time runs out.

Every test here caches for a minute, so a change that shows at once can only be the invalidation's doing.
(Other replicas hear of it through PostgreSQL NOTIFY: tests/test_replicas.py.)
"""

from __future__ import annotations

import httpx2
import pytest

from approvals.rules import Effect, Rule
from store import invalidation
from store.keys import revoke_key

pytestmark = [pytest.mark.anyio, pytest.mark.settings(cache_seconds=60)]

BASE = "http://127.0.0.1:8000/api/v1"
ALICE = "alice@acme.test"
ADMIN = "admin@acme.test"


def api(app_client, key: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=app_client.transport, base_url=BASE, headers={"Authorization": f"Bearer {key}"})


async def test_a_revoked_key_is_refused_at_once_though_lookups_are_cached(app_client, demo_keys):
    async with api(app_client, demo_keys.user_keys[ALICE]) as alice:
        issued = (await alice.post("/keys", json={"name": "short-lived"})).json()
        async with api(app_client, issued["token"]) as use:
            assert (await use.get("/meetings")).status_code == 200  # now cached
            assert (await alice.delete(f"/keys/{issued['id']}")).status_code == 204
            assert (await use.get("/meetings")).status_code == 401


async def test_a_new_rule_decides_the_next_call(companion, demo_keys):
    alice = await companion.principal_for(demo_keys.keys[ALICE])
    admin = await companion.principal_for(demo_keys.keys[ADMIN])
    assert alice is not None and admin is not None
    listed = await companion.gateway.call(alice, "harmony_list_meetings", {"limit": 1})
    assert listed.ok  # the workspace's rules are now cached
    async with companion.db.transaction() as session:
        await companion.rulebook.create(
            session, admin, Rule(effect=Effect.DENY, scope="workspace", tool="harmony_list_meetings")
        )
    refused = await companion.gateway.call(alice, "harmony_list_meetings", {"limit": 1})
    assert not refused.ok and refused.error_code == "denied"


async def test_a_change_rolled_back_leaves_the_caches_alone(companion, demo_keys):
    alice = await companion.principal_for(demo_keys.keys[ALICE])
    assert alice is not None
    cached = await companion.rulebook.index_for(alice.workspace_id)
    with pytest.raises(RuntimeError):
        async with companion.db.transaction() as session:
            await revoke_key(session, alice.key_id)
            await invalidation.announce(session, invalidation.Topic.RULES)
            raise RuntimeError("changed my mind")
    assert await companion.rulebook.index_for(alice.workspace_id) is cached
    assert await companion.principal_for(demo_keys.keys[ALICE]) == alice


async def test_a_connected_app_shows_its_tools_at_once_and_loses_them_on_disconnect(companion, demo_keys):
    admin = await companion.principal_for(demo_keys.keys[ADMIN])
    assert admin is not None
    assert not any(b.tool.app == "linear" for b in await companion.gateway.tools_for(admin))  # now cached
    connected = await companion.integrations.connect(
        admin, "linear", scope="workspace", method="api_key", label="Linear", setup={"api_key": "lin_api_x"}
    )
    assert any(b.tool.app == "linear" for b in await companion.gateway.tools_for(admin))
    await companion.integrations.disconnect(admin, connected["id"])
    assert not any(b.tool.app == "linear" for b in await companion.gateway.tools_for(admin))


def test_a_topic_from_a_newer_replica_is_ignored():
    invalidation.dispatch("something-new")

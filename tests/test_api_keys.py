"""API keys over the API: shown once, listed without their secret, revoked at once, rotated with a grace period."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import update

from server.app import create_app
from store.models import Plan, Workspace

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000/api/v1"


@pytest.fixture
async def client(companion, demo_keys):
    app = create_app(companion)
    async with app.router.lifespan_context(app):

        def as_key(key: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=BASE, headers={"Authorization": f"Bearer {key}"}
            )

        yield as_key


async def test_a_new_key_is_shown_once_and_works(client, demo_keys):
    async with client(demo_keys.user_keys["alice@acme.test"]) as alice:
        created = await alice.post("/keys", json={"name": "warehouse export"})
        assert created.status_code == 201
        key = created.json()
        assert key["token"].startswith("hck_") and key["prefix"] == key["token"][:12] and key["kind"] == "agent"
        listed = (await alice.get("/keys")).json()["data"]
    assert key["id"] in {k["id"] for k in listed}
    assert all("token" not in k for k in listed) and key["token"] not in str(listed)
    async with client(key["token"]) as new:
        assert (await new.get("/meetings")).status_code == 200


async def test_members_list_their_own_keys_and_admins_all(client, demo_keys):
    async with client(demo_keys.user_keys["alice@acme.test"]) as alice:
        mine = {k["owner"] for k in (await alice.get("/keys")).json()["data"]}
    async with client(demo_keys.user_keys["admin@acme.test"]) as admin:
        everyone = {k["owner"] for k in (await admin.get("/keys")).json()["data"]}
    assert mine == {"alice@acme.test"} and {"alice@acme.test", "admin@acme.test"} <= everyone


async def test_a_revoked_key_stops_and_another_persons_key_is_not_found(client, demo_keys):
    async with client(demo_keys.user_keys["alice@acme.test"]) as alice:
        key = (await alice.post("/keys", json={"name": "temp"})).json()
        assert (await alice.delete(f"/keys/{key['id']}")).status_code == 204
        assert (await alice.delete(f"/keys/{key['id']}")).status_code == 404
    async with client(key["token"]) as revoked:
        assert (await revoked.get("/meetings")).status_code == 401
    async with client(demo_keys.user_keys["admin@acme.test"]) as admin:
        admins = (await admin.post("/keys", json={})).json()
    async with client(demo_keys.user_keys["alice@acme.test"]) as alice:
        assert (await alice.delete(f"/keys/{admins['id']}")).status_code == 404


async def test_rotation_gives_a_new_key_and_the_old_one_keeps_working_for_the_grace_period(client, demo_keys):
    async with client(demo_keys.user_keys["alice@acme.test"]) as alice:
        old = (await alice.post("/keys", json={"name": "ci"})).json()
        quick = (await alice.post("/keys", json={"name": "now"})).json()
        rotated = await alice.post(f"/keys/{old['id']}/rotate", json={"grace_seconds": 3600})
        assert rotated.status_code == 201
        new = rotated.json()
        assert new["name"] == "ci" and new["token"] != old["token"]
        await alice.post(f"/keys/{quick['id']}/rotate", json={})
    async with client(old["token"]) as previous, client(new["token"]) as current, client(quick["token"]) as gone:
        assert (await previous.get("/meetings")).status_code == 200
        assert (await current.get("/meetings")).status_code == 200
        assert (await gone.get("/meetings")).status_code == 401


async def test_agent_keys_cannot_manage_keys(client, demo_keys):
    async with client(demo_keys.keys["alice@acme.test"]) as agent:
        refused = await agent.post("/keys", json={})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


async def test_the_solo_plan_is_limited_to_two_live_keys_per_person(client, companion, demo_keys):
    async with companion.db.transaction() as session:
        await session.execute(update(Workspace).values(plan=Plan.SOLO))
    async with client(demo_keys.user_keys["alice@acme.test"]) as alice:
        answers = [await alice.post("/keys", json={"name": f"k{n}"}) for n in range(3)]
    # Alice already holds her demo agent and user keys.
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert answers[0].json()["error"]["details"] == {"plan": "solo", "limit": 2}


async def test_bad_bodies_name_their_fields(client, demo_keys):
    async with client(demo_keys.user_keys["alice@acme.test"]) as alice:
        bad = await alice.post("/keys", json={"kind": "robot", "scopes": ["all"]})
    assert bad.status_code == 422
    assert set(bad.json()["error"]["details"]["fields"]) == {"kind", "scopes.0"}


async def test_only_the_owner_rotates_a_key_so_no_one_gets_a_key_acting_as_someone_else(client, demo_keys):
    async with client(demo_keys.user_keys["alice@acme.test"]) as alice:
        hers = (await alice.post("/keys", json={"name": "hers"})).json()
    async with client(demo_keys.user_keys["admin@acme.test"]) as admin:
        assert (await admin.post(f"/keys/{hers['id']}/rotate", json={})).status_code == 404
        assert (await admin.delete(f"/keys/{hers['id']}")).status_code == 204  # an admin may still revoke it


async def test_a_rotation_with_a_grace_period_counts_against_the_plans_key_limit(client, companion, demo_keys):
    async with companion.db.transaction() as session:
        await session.execute(update(Workspace).values(plan=Plan.SOLO))
    async with client(demo_keys.user_keys["alice@acme.test"]) as alice:
        keys = (await alice.get("/keys")).json()["data"]
        agent = next(k for k in keys if k["kind"] == "agent")
        graced = await alice.post(f"/keys/{agent['id']}/rotate", json={"grace_seconds": 600})
        immediate = await alice.post(f"/keys/{agent['id']}/rotate", json={})
    assert graced.status_code == 403 and immediate.status_code == 201


@pytest.mark.settings(cache_seconds=30)
async def test_a_revoked_key_stops_at_once_on_the_server_that_revoked_it(client, demo_keys):
    async with client(demo_keys.user_keys["alice@acme.test"]) as alice:
        key = (await alice.post("/keys", json={})).json()
        async with client(key["token"]) as new:
            assert (await new.get("/meetings")).status_code == 200  # now cached for 30 s
            await alice.delete(f"/keys/{key['id']}")
            assert (await new.get("/meetings")).status_code == 401

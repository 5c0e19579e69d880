"""Two server processes on one PostgreSQL: a decision on one releases the call waiting on the other, an
approved call runs once however the retries race across replicas, and a revoked key or a new rule takes effect
everywhere as soon as it commits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx2
import pytest
from mcp import types
from sqlalchemy import func, select, update

from store.models import ActionItem, Plan, Workspace
from tests.conftest import alices_meeting, free_port, mcp_client
from tests.processes import healthy, start

pytestmark = pytest.mark.anyio

RACES = 500
# Each race holds one pending approval until it is approved; a key may hold 20 (the default cap) at once.
AT_ONCE = 20
# Long enough that a change reaching the other replica in time can only be the notification's doing.
CACHE_SECONDS = "60"


@pytest.fixture
async def replicas(env, database_url, demo_keys) -> AsyncIterator[tuple[str, str]]:
    if not database_url.startswith("postgresql"):
        pytest.skip("replicas share PostgreSQL (set COMPANION_DATABASE_URL to run this)")
    ports = (free_port(), free_port())
    processes = [
        start(
            {
                **env,
                "COMPANION_BASE_URL": f"http://127.0.0.1:{port}",
                "COMPANION_APPROVAL_WAIT_SECONDS": "30",
                "COMPANION_CACHE_SECONDS": CACHE_SECONDS,
            },
            port,
        )
        for port in ports
    ]
    try:
        bases = tuple(f"http://127.0.0.1:{port}" for port in ports)
        for base in bases:
            await healthy(base)
        yield bases
    finally:
        for process in processes:
            process.terminate()
            process.wait()


def api(base: str, key: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)


async def test_a_decision_on_one_replica_releases_the_call_waiting_on_the_other(replicas, demo_keys, companion):
    a, b = replicas
    admin = demo_keys.user_keys["admin@acme.test"]
    out_of_band = {
        "effect": "ask",
        "scope": "workspace",
        "tool": "harmony_create_action_item",
        "require_out_of_band": True,
    }
    async with api(a, admin) as admin_api:
        assert (await admin_api.post("/rules", json=out_of_band)).status_code == 201
    arguments = {"meeting_id": await alices_meeting(companion), "text": "Approved elsewhere"}
    opened = types.ElicitResult(action="accept")

    async def opens_the_page(ctx, params):  # the person opens the page; the call then waits for the decision
        return opened

    async with mcp_client(
        b, demo_keys.keys["alice@acme.test"], mode="legacy", elicitation_callback=opens_the_page
    ) as c:
        waiting = asyncio.create_task(c.call_tool("harmony_create_action_item", arguments))
        async with api(a, demo_keys.user_keys["alice@acme.test"]) as alice:
            async with asyncio.timeout(20):
                while not (pending := (await alice.get("/approvals?status=pending")).json()["data"]):
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1)  # the call on B is now waiting, past its first polls
            approved = await alice.post(f"/approvals/{pending[0]['id']}/approve", json={})
            decided = time.perf_counter()
            assert approved.status_code == 200
        result = await waiting
        released = time.perf_counter() - decided
    assert not result.is_error and result.structured_content["text"] == "Approved elsewhere"
    print(f"cross-replica release: {released * 1000:.0f} ms after the decision")


async def test_an_approved_call_runs_once_however_retries_race_across_replicas(replicas, demo_keys, companion):
    a, b = replicas
    async with companion.db.transaction() as session:
        # 500 decisions in a minute: the Enterprise plan's custom API rate, so the plan's limit is not the test.
        await session.execute(
            update(Workspace)
            .where(Workspace.slug == "acme")
            .values(plan=Plan.ENTERPRISE, rate_limit_per_minute=100_000)
        )
    meeting = await alices_meeting(companion)
    agent, person = demo_keys.keys["alice@acme.test"], demo_keys.user_keys["alice@acme.test"]
    async with (
        mcp_client(a, agent, mode="2026-07-28") as on_a,
        mcp_client(b, agent, mode="2026-07-28") as on_b,
        api(a, person) as approver,
    ):

        async def race(i: int) -> None:
            arguments = {"meeting_id": meeting, "text": f"race {i}"}
            asked = await on_a.call_tool("harmony_create_action_item", arguments)
            assert asked.structured_content is not None, asked.content
            approval_id = asked.structured_content["approval_id"]
            assert (await approver.post(f"/approvals/{approval_id}/approve", json={})).status_code == 200
            results = await asyncio.gather(
                on_b.call_tool("harmony_create_action_item", arguments),
                on_a.call_tool("harmony_create_action_item", arguments),
            )
            assert results[0].structured_content == results[1].structured_content

        for start_at in range(0, RACES, AT_ONCE):
            await asyncio.gather(*(race(i) for i in range(start_at, min(start_at + AT_ONCE, RACES))))
    async with companion.db.session() as session:
        counts = dict(
            (
                await session.execute(
                    select(ActionItem.text, func.count())
                    .where(ActionItem.text.like("race %"))
                    .group_by(ActionItem.text)
                )
            ).all()
        )
    assert len(counts) == RACES and set(counts.values()) == {1}


async def refused_within(base: str, token: str, seconds: float) -> float:
    """How long until ``token`` gets 401 on ``base``, polling; fails after ``seconds``."""
    started = time.perf_counter()
    async with api(base, token) as use:
        while (await use.get("/meetings")).status_code != 401:
            assert time.perf_counter() - started < seconds, f"{base} still takes the revoked key"
            await asyncio.sleep(0.01)
    return time.perf_counter() - started


async def test_a_key_revoked_on_one_replica_is_refused_on_both_within_a_second(replicas, demo_keys):
    # The replicas cache key lookups for a minute (CACHE_SECONDS): only the notification can make this pass.
    a, b = replicas
    async with api(a, demo_keys.user_keys["alice@acme.test"]) as alice:
        issued = (await alice.post("/keys", json={"name": "short-lived", "kind": "agent"})).json()
        for base in (a, b):
            async with api(base, issued["token"]) as use:
                assert (await use.get("/meetings")).status_code == 200
        assert (await alice.delete(f"/keys/{issued['id']}")).status_code == 204
    on_a = await refused_within(a, issued["token"], 1.0)
    on_b = await refused_within(b, issued["token"], 1.0)
    print(f"\nrevoked key refused after {on_a * 1000:.0f} ms where revoked, {on_b * 1000:.0f} ms on the other replica")


async def test_a_rule_added_on_one_replica_decides_on_the_other_at_once(replicas, demo_keys, companion):
    a, b = replicas
    meeting = await alices_meeting(companion)
    async with mcp_client(b, demo_keys.keys["alice@acme.test"]) as assistant:
        before = await assistant.call_tool("harmony_get_meeting", {"meeting_id": meeting})
        assert before.is_error is False
        async with api(a, demo_keys.user_keys["admin@acme.test"]) as admin:
            made = await admin.post(
                "/rules",
                json={"effect": "deny", "scope": "workspace", "tool": "harmony_get_meeting", "description": "Not now"},
            )
            assert made.status_code == 201, made.text
        started = time.perf_counter()
        while not (await assistant.call_tool("harmony_get_meeting", {"meeting_id": meeting})).is_error:
            assert time.perf_counter() - started < 1.0, "the other replica still decides by its cached rules"
            await asyncio.sleep(0.01)

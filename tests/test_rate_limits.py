"""Rate limits per key and plan, counted in the database, so two server processes share one count."""

from __future__ import annotations

import asyncio
import subprocess
import time

import httpx
import pytest
from sqlalchemy import update

from server.app import create_app
from store.models import Plan, Workspace
from tests.conftest import COMPANION, free_port

pytestmark = pytest.mark.anyio


async def fresh_window(needed: float) -> None:
    """Start a test that needs ``needed`` seconds inside one minute window only when that many are left."""
    left = 60 - time.time() % 60
    if left < needed:
        await asyncio.sleep(left + 0.05)


async def test_headers_on_every_answer_and_429_past_the_plans_limit(companion, demo_keys):
    async with companion.db.transaction() as session:
        await session.execute(update(Workspace).values(plan=Plan.SOLO))
    app = create_app(companion)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://127.0.0.1:8000/api/v1",
            headers={"Authorization": f"Bearer {demo_keys.keys['alice@acme.test']}"},
        ) as alice,
    ):
        await fresh_window(10)
        answers = [await alice.get("/meetings", params={"per_page": 1}) for _ in range(21)]
    assert [a.status_code for a in answers] == [200] * 20 + [429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:3]] == ["19", "18", "17"]
    assert all(a.headers["X-RateLimit-Limit"] == "20" for a in answers)
    reset = int(answers[0].headers["X-RateLimit-Reset"])
    assert reset % 60 == 0 and 0 < reset - time.time() <= 60
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


async def test_two_server_processes_share_one_count(env, companion, demo_keys):
    """Plus: 60 requests a minute for one key, across both processes, and not one more."""
    async with companion.db.transaction() as session:
        await session.execute(update(Workspace).values(plan=Plan.PLUS))
    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [COMPANION, "serve", "--port", str(port)],
            env={**env, "COMPANION_BASE_URL": f"http://127.0.0.1:{port}", "COMPANION_RUN_WORKERS": "false"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    try:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {demo_keys.keys['alice@acme.test']}"}) as http:
            for port in ports:
                for _ in range(200):
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)
            await fresh_window(20)
            answers = [
                await http.get(f"http://127.0.0.1:{ports[n % 2]}/api/v1/meetings", params={"per_page": 1})
                for n in range(62)
            ]
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=10)
    codes = [a.status_code for a in answers]
    assert codes == [200] * 60 + [429, 429]
    assert answers[59].headers["X-RateLimit-Remaining"] == "0"

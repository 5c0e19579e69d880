"""What the shared provider client costs per request, and what a refresh storm costs.

1. Overhead: the same GET against a provider on 127.0.0.1 (uvicorn, in a child
   process), once with a bare ``httpx.AsyncClient`` and once through
   ``ProviderApi.json`` (auth header, freshness check, retry loop, JSON and error
   mapping). Runs alternate, and the medians are compared.
2. Refresh storm: ``--storm`` concurrent calls find one expired token. It
   reports how many refreshes the token endpoint saw (it must be 1) and the
   median and slowest latency of the calls that waited for it.

    .venv/bin/python bench/provider_client.py [--requests 2000] [--rounds 5] [--storm 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROVIDER = """
import asyncio, sys, time
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
import uvicorn

REFRESHES = 0
TOKENS = {"fresh": float("inf")}

async def teams(request):
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    if TOKENS.get(token, 0) < time.time():
        return JSONResponse({"message": "expired"}, status_code=401)
    return JSONResponse({"teams": [{"id": "t1", "key": "ENG", "name": "Engineering"}]})

async def token(request):
    global REFRESHES
    REFRESHES += 1
    await asyncio.sleep(0.05)
    new = f"t{REFRESHES}"
    TOKENS[new] = time.time() + 3600
    return JSONResponse({"access_token": new, "refresh_token": f"r{REFRESHES}", "expires_in": 3600})

async def refreshes(request):
    return JSONResponse({"refreshes": REFRESHES})

app = Starlette(routes=[Route("/teams", teams), Route("/oauth/token", token, methods=["POST"]),
                        Route("/refreshes", refreshes)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main(requests: int, rounds: int, storm: int) -> None:
    import httpx
    from sqlalchemy import delete

    from server.app import Companion
    from server.settings import OAuthClient, Settings
    from store.connections import ConnectionView, add_connection
    from store.migrate import upgrade_async
    from store.models import Base, ConnectionScope, User, Workspace
    from tools.manifest import ApiSpec, AuthSpec, Manifest, OAuth2Spec
    from tools.provider import ProviderApi

    port = free_port()
    provider = subprocess.Popen([sys.executable, "-c", PROVIDER, str(port)])
    origin = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as probe:
            for _ in range(200):
                try:
                    await probe.get(f"{origin}/refreshes")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        data = Path(tempfile.mkdtemp())
        url = f"sqlite+aiosqlite:///{data / 'bench.db'}"
        await upgrade_async(url)
        settings = Settings(
            database_url=url,
            data_dir=data,
            secret_key="bench",
            provider_origins={"bench": origin},
            oauth_clients={"bench": OAuthClient(client_id="c", client_secret="s")},
        )
        companion = Companion.build(settings)
        manifest = Manifest(
            id="bench",
            name="Bench",
            description="",
            category="",
            scopes=["personal"],
            auth=AuthSpec(
                type="oauth2", oauth2=OAuth2Spec(authorize_url=f"{origin}/a", token_url=f"{origin}/oauth/token")
            ),
            api=ApiSpec(base_url=origin),
            tools=[companion.registry.tools["harmony_list_meetings"].spec.model_copy(update={"name": "bench_x"})],
        )
        async with companion.db.transaction() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
            session.add(Workspace(id="ws_b", slug="bench", name="Bench"))
            session.add(User(id="usr_b", email="b@bench.test"))
            await session.flush()
            row = await add_connection(
                session,
                companion.box,
                app="bench",
                scope=ConnectionScope.PERSONAL,
                workspace_id=None,
                user_id="usr_b",
                credentials={"method": "oauth2", "access_token": "fresh", "refresh_token": "r0", "expires_at": None},
            )
            row.auth_method = "oauth2"
            view = ConnectionView.of(row)
        http = companion.http

        def api(credentials: dict[str, Any]) -> ProviderApi:
            return ProviderApi(manifest, view, http, companion.gateway.keeper, dict(credentials))

        fresh = {"method": "oauth2", "access_token": "fresh", "refresh_token": "r0", "expires_at": None}
        bare_times: list[float] = []
        ours_times: list[float] = []
        for _ in range(rounds):
            for sink, call in (
                (bare_times, lambda: http.get(f"{origin}/teams", headers={"Authorization": "Bearer fresh"})),
                (ours_times, lambda: api(fresh).json("GET", "/teams")),
            ):
                for _ in range(requests // rounds):
                    started = time.perf_counter()
                    await call()
                    sink.append(time.perf_counter() - started)
        bare, ours = statistics.median(bare_times), statistics.median(ours_times)
        print(f"overhead ({len(bare_times)} requests each, alternating rounds, one process, 127.0.0.1)")
        print(f"  bare httpx       median {bare * 1e6:8.1f} µs")
        print(f"  ProviderApi.json median {ours * 1e6:8.1f} µs   ratio {ours / bare:.2f}x")

        expired = {**fresh, "access_token": "stale", "expires_at": time.time() - 10}
        async with companion.db.transaction() as session:
            from store.models import Connection
            from store.sealing import credentials_context

            stored = await session.get(Connection, view.id)
            assert stored is not None
            stored.credentials = companion.box.seal_json(expired, context=credentials_context(view.id))

        async def one() -> float:
            started = time.perf_counter()
            await api(expired).json("GET", "/teams")
            return time.perf_counter() - started

        waits = await asyncio.gather(*(one() for _ in range(storm)))
        async with httpx.AsyncClient() as probe:
            seen = (await probe.get(f"{origin}/refreshes")).json()["refreshes"]
        print(f"refresh storm: {storm} concurrent calls on one expired token (token endpoint takes 50 ms)")
        print(f"  refreshes at the provider: {seen}")
        print(f"  latency median {statistics.median(waits) * 1e3:.1f} ms, slowest {max(waits) * 1e3:.1f} ms")
        await companion.aclose()
    finally:
        provider.terminate()
        provider.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--storm", type=int, default=50)
    arguments = parser.parse_args()
    os.environ.setdefault("COMPANION_LOG_LEVEL", "WARNING")
    asyncio.run(main(arguments.requests, arguments.rounds, arguments.storm))

"""Shared fixtures.

The suite runs on SQLite by default. With ``COMPANION_DATABASE_URL`` pointing at
a PostgreSQL server, it creates a scratch database there, runs every test on
it, and drops it at the end; CI runs the suite both ways.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import delete, select
from sqlalchemy.engine import make_url

from manifests import MANIFEST_DIR
from server.app import Companion, create_app
from server.services import demo
from server.settings import Settings
from store.migrate import upgrade_async
from store.models import Base, Meeting, User
from tools.registry import Registry

TEST_SECRET = "test-secret-key-not-for-production"
TEST_MANIFESTS = Path(__file__).parent / "apps" / "manifests"
COMPANION = str(Path(sys.executable).with_name("companion"))
HARMONY_TOOLS = {
    "harmony_list_meetings",
    "harmony_get_meeting",
    "harmony_get_transcript",
    "harmony_get_summary",
    "harmony_list_insights",
    "harmony_search_contacts",
    "harmony_get_contact",
    "harmony_create_action_item",
}


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


async def _scratch_postgres(url: str) -> tuple[str, str]:
    """Create an empty database beside the one ``url`` names; return its URL and name."""
    parsed = make_url(url).set(drivername="postgresql")
    name = f"companion_test_{os.getpid()}_{secrets.token_hex(3)}"
    connection = await asyncpg.connect(parsed.render_as_string(hide_password=False))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return parsed.set(drivername="postgresql+asyncpg", database=name).render_as_string(hide_password=False), name


async def _drop_postgres(url: str, name: str) -> None:
    admin = make_url(url).set(drivername="postgresql")
    connection = await asyncpg.connect(admin.render_as_string(hide_password=False))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    configured = os.environ.get("COMPANION_DATABASE_URL", "")
    if configured.startswith(("postgresql", "postgres")):
        url, name = await _scratch_postgres(configured)
        await upgrade_async(url)
        yield url
        await _drop_postgres(configured, name)
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'companion.db'}"
        await upgrade_async(url)
        yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """The tests' settings; ``@pytest.mark.settings(name=value)`` changes some for one test and its servers."""
    marker = request.node.get_closest_marker("settings")
    return Settings(
        **{
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "secret_key": TEST_SECRET,
            "base_url": "http://127.0.0.1:8000",
            "cache_seconds": 0,
            "auto_sync_minutes": 0,
            "run_workers": False,
            "approval_wait_seconds": 1.5,
            **(marker.kwargs if marker else {}),
        }
    )


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The shipped apps plus the tests' own personal app, ``memo``."""
    return Registry.load(MANIFEST_DIR, TEST_MANIFESTS, adapter_packages=("tools.adapters", "tests.apps"))


@pytest.fixture
async def companion(settings: Settings, registry: Registry) -> AsyncIterator[Companion]:
    """A fully built server core on an empty database."""
    companion = Companion.build(settings, registry=registry)
    async with companion.db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(delete(table))
    try:
        yield companion
    finally:
        await companion.aclose()


@pytest.fixture
async def demo_keys(companion: Companion) -> demo.DemoKeys:
    async with companion.db.transaction() as session:
        return await demo.seed(session, companion.registry, companion.box, TEST_SECRET.encode())


async def alices_meeting(companion: Companion) -> str:
    """A meeting of the demo's alice@acme.test, for calls made as her."""
    async with companion.db.session() as session:
        alice = await session.scalar(select(User.id).where(User.email == "alice@acme.test"))
        meeting = await session.scalar(select(Meeting.id).where(Meeting.owner_id == alice).limit(1))
    assert meeting is not None
    return meeting


@asynccontextmanager
async def mcp_client(
    base_url: str, key: str | None, *, mode: str = "auto", transport: Any = None, **options: Any
) -> AsyncIterator[Client]:
    """An SDK client over Streamable HTTP, authenticated with ``key``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, transport=transport, base_url=base_url, timeout=30) as http,
        Client(streamable_http_client(f"{base_url}/mcp", http_client=http), mode=mode, **options) as client,
    ):
        yield client


@pytest.fixture
async def app_client(companion: Companion) -> AsyncIterator[Any]:
    """Open in-process MCP sessions against the real app, through httpx's ASGI transport."""
    app = create_app(companion)
    transport = httpx2.ASGITransport(app=app)
    async with app.router.lifespan_context(app):

        def connect(key: str | None, **options: Any) -> Any:
            return mcp_client("http://127.0.0.1:8000", key, transport=transport, **options)

        connect.transport = transport  # type: ignore[attr-defined]
        yield connect


async def _signed_in(app_client: Any, email: str) -> AsyncIterator[Any]:
    from tests.console import sign_in

    async with httpx2.AsyncClient(transport=app_client.transport, base_url="http://127.0.0.1:8000") as browser:
        await sign_in(browser, email)
        yield browser


@pytest.fixture
async def admin(app_client: Any, demo_keys: demo.DemoKeys) -> AsyncIterator[Any]:
    """A browser signed in to the web console as the demo workspace's admin."""
    async for browser in _signed_in(app_client, "admin@acme.test"):
        yield browser


@pytest.fixture
async def alice(app_client: Any, demo_keys: demo.DemoKeys) -> AsyncIterator[Any]:
    """A browser signed in to the web console as Alice, a member."""
    async for browser in _signed_in(app_client, "alice@acme.test"):
        yield browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(app: Any, port: int, **config: Any) -> AsyncIterator[None]:
    """``app`` under uvicorn on 127.0.0.1:``port`` (``config``: more of uvicorn's options, such as TLS files)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **config)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def live_server(settings: Settings, companion: Companion) -> AsyncIterator[str]:
    """The real app under uvicorn on 127.0.0.1; yields its base URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    live_settings = settings.model_copy(update={"base_url": base_url})
    async with serving(create_app(Companion.build(live_settings, registry=companion.registry)), port):
        yield base_url


@pytest.fixture
def env(database_url, tmp_path, companion) -> dict[str, str]:
    """The environment for a child process on the suite's (freshly emptied) database."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "COMPANION_DATABASE_URL": database_url,
        "COMPANION_SECRET_KEY": TEST_SECRET,
        "COMPANION_DATA_DIR": str(tmp_path / "data"),
    }

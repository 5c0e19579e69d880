"""Apps are plugins: a distribution that registers an app in the entry-point group adds its tools, and nothing of
the project changes. The distribution here is real: a package and its .dist-info on sys.path, which is what
``pip install`` leaves in site-packages and what importlib.metadata reads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import delete

from server.app import Companion, create_app
from server.services import demo
from server.settings import Settings
from store.connections import add_connection
from store.directory import user_by_email
from store.models import Base, ConnectionScope
from tests.conftest import TEST_SECRET, mcp_client
from tools.registry import APPS_GROUP, Registry, registered_apps

pytestmark = pytest.mark.anyio

PROJECT = Path(__file__).parent.parent

ADAPTER = '''
"""Tally: a throwaway app, from outside the project."""

from pathlib import Path

from tools.arguments import Arguments
from tools.context import ToolContext

MANIFEST = Path(__file__).parent / "tally.yaml"


class CountWords(Arguments):
    text: str
    unit: str = "words"


async def count_words(ctx: ToolContext, arguments: CountWords) -> dict[str, object]:
    return {"count": len(arguments.text.split()), "unit": arguments.unit}
'''

MANIFEST = """
id: tally
name: Tally
description: Counts words, for the plugin test.
category: Productivity
scopes: [personal]
open_world: false
auth: {type: none}
tools:
  - name: tally_count_words
    title: Count words
    description: How many words a text has.
    risk: read
    adapter: tally.count_words
    input_schema:
      type: object
      additionalProperties: false
      required: [text]
      properties:
        text: {type: string}
        unit: {type: string, default: words}
    output_schema:
      type: object
      required: [count, unit]
      properties:
        count: {type: integer}
        unit: {type: string}
"""


def install_tally(site: Path) -> None:
    """What pip leaves behind for a distribution ``companion-tally`` with one entry point."""
    package = site / "companion_tally"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(ADAPTER))
    (package / "tally.yaml").write_text(MANIFEST)
    info = site / "companion_tally-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: companion-tally\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{APPS_GROUP}]\ntally = companion_tally\n")
    (info / "RECORD").write_text("")


@pytest.fixture
def tally(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site-packages"
    site.mkdir()
    install_tally(site)
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("companion_tally", None)


def project_files_of_tally() -> list[str]:
    """Files of the project (tracked or not) that carry the app; other people's edits meanwhile do not count."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [name for name in listed if "tally" in name and name != "tests/test_plugins.py"]


@pytest.fixture
async def companion_with_tally(settings: Settings, tally: Path) -> AsyncIterator[Companion]:
    # No registry handed in: the server finds its apps as it does when it starts.
    companion = Companion.build(settings)
    async with companion.db.transaction() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(delete(table))
    try:
        yield companion
    finally:
        await companion.aclose()


def test_an_installed_app_is_registered_beside_the_shipped_ones(tally):
    apps, problems = registered_apps()
    assert problems == []
    tally_app = next(app for app in apps if app.id == "tally")
    assert tally_app.manifest == tally / "companion_tally" / "tally.yaml"
    assert "companion-tally" in tally_app.origin
    registry = Registry.load()
    assert registry.tools["tally_count_words"].app == "tally"
    assert {"harmony", "tally"} <= set(registry.manifests)


async def test_an_installed_apps_tools_are_listed_and_called_over_mcp(companion_with_tally, tally):
    tally_site = tally
    assert PROJECT not in tally_site.parents
    companion = companion_with_tally
    async with companion.db.transaction() as session:
        keys = await demo.seed(session, companion.registry, companion.box, TEST_SECRET.encode())
        alice = await user_by_email(session, "alice@acme.test")
        await add_connection(
            session,
            companion.box,
            app="tally",
            scope=ConnectionScope.PERSONAL,
            workspace_id=None,
            user_id=alice.id,
            label="Alice's tally",
            credentials={},
        )
    app = create_app(companion)
    transport = httpx2.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        mcp_client("http://127.0.0.1:8000", keys.keys["alice@acme.test"], transport=transport) as client,
    ):
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert listed["tally_count_words"].title == "Count words"
        result = await client.call_tool("tally_count_words", {"text": "one two three"})
    assert not result.is_error, result
    assert result.structured_content == {"count": 3, "unit": "words"}
    assert project_files_of_tally() == []


def test_a_broken_entry_point_is_a_problem_named_with_its_distribution(tally):
    (tally / "companion_tally" / "__init__.py").write_text("raise RuntimeError('half installed')\n")
    apps, problems = registered_apps()
    assert "tally" not in {app.id for app in apps}
    assert problems == [
        "entry point tally = companion_tally of companion-tally: cannot be imported: RuntimeError: half installed"
    ]

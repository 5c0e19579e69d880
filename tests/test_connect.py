"""A local assistant reaches Companion from wherever it starts: a stable data directory, `companion mcp` that
refuses a data directory it was not set up in (and leaves nothing behind), and `companion connect`'s configuration.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from server import settings as settings_module
from server.settings import Settings, default_data_dir, user_data_dir
from tests.conftest import COMPANION

KEY = "hck_test_not_a_real_key"
CHECKOUT = Path(settings_module.__file__).resolve().parent.parent


def run(
    env: dict[str, str], cwd: Path, *args: str, command: tuple[str, ...] = (COMPANION,)
) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([*command, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def bare_env(tmp_path: Path, **companion: str) -> dict[str, str]:
    """Only what an assistant would pass: no COMPANION_* of the shell running the tests."""
    return {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "home"), **companion}


def stdio_entry(document: dict[str, object], top: str = "mcpServers") -> dict[str, object]:
    servers = document[top]
    assert isinstance(servers, dict) and list(servers) == ["companion"]
    entry = servers["companion"]
    assert isinstance(entry, dict)
    return entry


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """``tmp_path`` as the server names it, resolved: on macOS /var is a link to /private/var."""
    return tmp_path.resolve()


# The default data directory


def test_the_default_data_dir_is_absolute_and_the_same_from_any_directory(tmp_path):
    env = bare_env(tmp_path)
    seen = set()
    for cwd, command in [
        (CHECKOUT, (COMPANION,)),
        (tmp_path / "elsewhere", (COMPANION,)),
        (tmp_path / "elsewhere", (sys.executable, "-m", "server")),
    ]:
        result = run(env, cwd, "connect", "--client", "cursor", "--key", KEY, command=command)
        assert result.returncode == 0, result.stderr
        entry = stdio_entry(json.loads(result.stdout))
        seen.add((entry["command"], entry["env"]["COMPANION_DATA_DIR"]))
    assert seen == {(str(Path(COMPANION).resolve()), str(CHECKOUT / ".companion"))}
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_outside_a_checkout_the_default_is_the_platform_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    installed = tmp_path / "site-packages" / "server"
    assert default_data_dir(installed) == user_data_dir()
    assert default_data_dir(CHECKOUT / "server") == CHECKOUT / ".companion"


@pytest.mark.parametrize(
    ("platform", "environ", "expected"),
    [
        ("linux", {}, "home/.local/share/harmony-companion"),
        ("linux", {"XDG_DATA_HOME": "{tmp}/xdg"}, "xdg/harmony-companion"),
        ("linux", {"XDG_DATA_HOME": "relative/xdg"}, "home/.local/share/harmony-companion"),  # the spec: ignore it
        ("darwin", {}, "home/Library/Application Support/harmony-companion"),
        ("win32", {"LOCALAPPDATA": "{tmp}/local"}, "local/harmony-companion"),
        ("win32", {}, "home/AppData/Local/harmony-companion"),
    ],
)
def test_the_platform_data_dir(tmp_path, monkeypatch, platform, environ, expected):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    environ = {name: value.format(tmp=tmp_path) for name, value in environ.items()}
    assert user_data_dir(platform, environ) == tmp_path / expected


def test_an_explicit_relative_data_dir_is_resolved_once_against_the_starting_directory(tmp_path, monkeypatch):
    # The suite's own database (CI's PostgreSQL leg sets it) is not the default this test is about.
    monkeypatch.delenv("COMPANION_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings(data_dir=Path("data"))
    monkeypatch.chdir("/")
    assert settings.data_dir == tmp_path.resolve() / "data"
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'data' / 'companion.db'}"


# `companion mcp` where nothing was set up


@pytest.mark.parametrize("data_dir", ["absolute", "relative"])
def test_mcp_in_an_empty_directory_refuses_and_creates_nothing(tmp, data_dir):
    cwd = tmp / "cwd"
    named = str(tmp / "data") if data_dir == "absolute" else "data"
    expected = tmp / "data" if data_dir == "absolute" else cwd / "data"
    result = run(bare_env(tmp, COMPANION_DATA_DIR=named, COMPANION_API_KEY=KEY), cwd, "mcp")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: database: {expected / 'companion.db'} does not exist (data directory {expected}); "
        "set it up with `companion db upgrade`, or set COMPANION_DATA_DIR to the data directory your server uses"
    )
    assert list(cwd.iterdir()) == []
    assert sorted(path.name for path in tmp.iterdir()) == ["cwd"]  # no data dir, no HOME, no secret key


def test_mcp_refuses_a_database_without_the_key_it_was_set_up_with_and_generates_none(tmp):
    data = tmp / "data"
    assert run(bare_env(tmp, COMPANION_DATA_DIR=str(data)), tmp, "db", "upgrade").returncode == 0
    result = run(bare_env(tmp, COMPANION_DATA_DIR=str(data), COMPANION_API_KEY=KEY), tmp / "cwd", "mcp")
    assert result.returncode == 1
    assert result.stderr.strip().startswith(
        f"error: secret key: COMPANION_SECRET_KEY is unset and {data / 'secret.key'} does not exist"
    )
    assert [path.name for path in data.iterdir()] == ["companion.db"]


def test_mcp_refuses_an_unmigrated_database(tmp):
    data = tmp / "data"
    data.mkdir()
    (data / "companion.db").touch()
    env = bare_env(tmp, COMPANION_DATA_DIR=str(data), COMPANION_API_KEY=KEY, COMPANION_SECRET_KEY="s" * 32)
    result = run(env, tmp / "cwd", "mcp")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: database: {data / 'companion.db'} has no schema or an old one (data directory {data}); "
        "run `companion db upgrade` first"
    )
    assert not (data / "secret.key").exists()


# `companion connect`


@pytest.mark.parametrize(
    ("client", "top"), [("claude-desktop", "mcpServers"), ("cursor", "mcpServers"), ("vscode", "servers")]
)
def test_connect_prints_valid_json_with_absolute_paths_and_the_key(tmp, client, top):
    result = run(bare_env(tmp, COMPANION_DATA_DIR="data"), tmp, "connect", "--client", client, "--key", KEY)
    assert result.returncode == 0, result.stderr
    entry = stdio_entry(json.loads(result.stdout), top)
    assert Path(entry["command"]).is_absolute() and Path(entry["command"]).samefile(COMPANION)
    assert entry["args"] == ["mcp"]
    assert entry["env"] == {"COMPANION_API_KEY": KEY, "COMPANION_DATA_DIR": str(tmp / "data")}
    assert entry.get("type") == ("stdio" if client == "vscode" else None)
    assert KEY not in result.stderr  # the key goes to stdout only


def test_connect_for_claude_code_is_a_command_line(tmp_path):
    result = run(bare_env(tmp_path), tmp_path, "connect", "--client", "claude-code", "--key", KEY)
    assert shlex.split(result.stdout) == [
        "claude", "mcp", "add", "--transport", "stdio", "companion",
        "--env", f"COMPANION_API_KEY={KEY}",
        "--env", f"COMPANION_DATA_DIR={CHECKOUT / '.companion'}",
        "--", str(Path(COMPANION).resolve()), "mcp",
    ]  # fmt: skip


def test_connect_over_http_uses_the_mcp_url(tmp_path):
    env = bare_env(tmp_path, COMPANION_BASE_URL="https://companion.example.com", COMPANION_API_KEY=KEY)
    url, bearer = "https://companion.example.com/mcp", f"Bearer {KEY}"

    def printed(client: str) -> str:
        result = run(env, tmp_path, "connect", "--http", "--client", client)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert stdio_entry(json.loads(printed("cursor"))) == {"url": url, "headers": {"Authorization": bearer}}
    assert stdio_entry(json.loads(printed("vscode")), "servers") == {
        "type": "http",
        "url": url,
        "headers": {"Authorization": bearer},
    }
    desktop = stdio_entry(json.loads(printed("claude-desktop")))
    assert desktop["command"] == "npx" and url in desktop["args"] and "--allow-http" not in desktop["args"]
    assert desktop["env"] == {"COMPANION_AUTHORIZATION": bearer}
    assert shlex.split(printed("claude-code")) == [
        "claude", "mcp", "add", "--transport", "http", "companion", url, "--header", f"Authorization: {bearer}",
    ]  # fmt: skip


def test_connect_prints_every_client_by_default(tmp_path):
    result = run(bare_env(tmp_path, COMPANION_API_KEY=KEY), tmp_path, "connect")
    assert result.returncode == 0, result.stderr
    for heading in ("Claude Desktop:", "Claude Code:", "Cursor:", "VS Code:"):
        assert heading in result.stdout
    assert result.stdout.count(KEY) == 4


def test_connect_without_a_key_says_how_to_make_one(tmp_path):
    result = run(bare_env(tmp_path), tmp_path, "connect")
    assert result.returncode == 1
    assert "pass --key or set COMPANION_API_KEY" in result.stderr
    assert "`companion keys create --workspace SLUG --user EMAIL --name NAME`" in result.stderr


@pytest.mark.anyio
async def test_the_printed_configuration_serves_an_assistant_started_elsewhere(tmp_path):
    data = tmp_path / "data"
    seeded = run(bare_env(tmp_path, COMPANION_DATA_DIR=str(data)), tmp_path, "demo", "seed", "--json")
    key = json.loads(seeded.stdout)["keys"]["alice@acme.test"]
    printed = run(
        bare_env(tmp_path, COMPANION_DATA_DIR=str(data)),
        tmp_path,
        "connect",
        "--client",
        "claude-desktop",
        "--key",
        key,
    )
    entry = stdio_entry(json.loads(printed.stdout))
    assistant = tmp_path / "assistant"
    assistant.mkdir()
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=entry["env"], cwd=assistant)
    async with Client(params) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
    assert "harmony_list_meetings" in tools
    assert list(assistant.iterdir()) == []

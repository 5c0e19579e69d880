"""``companion connect``: what a local assistant needs to reach Companion, ready to paste into its configuration.

An assistant starts ``companion mcp`` from a directory of its own choosing, without the shell's PATH or environment,
so every form printed here names the executable and the data directory by absolute path and carries the key.
The key is a secret: it goes to stdout, where the person asked for it, and nowhere else.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.cli.command import CliError, Handlers, Subcommands
from server.cli.serve import setup_problem
from server.settings import load_settings

#: The name each assistant lists the server under.
SERVER_NAME = "companion"


@dataclass(frozen=True)
class Target:
    """The Companion an assistant is to reach, and how."""

    key: str
    executable: str
    data_dir: Path
    mcp_url: str
    http: bool

    @property
    def env(self) -> dict[str, str]:
        return {"COMPANION_API_KEY": self.key, "COMPANION_DATA_DIR": str(self.data_dir)}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def stdio(self) -> dict[str, Any]:
        return {"command": self.executable, "args": ["mcp"], "env": self.env}


@dataclass(frozen=True)
class Snippet:
    """Where a configuration goes (``hint``) and the configuration itself (``text``)."""

    hint: str
    text: str


def _json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


def claude_desktop(target: Target) -> Snippet:
    hint = (
        "Claude Desktop: add this to claude_desktop_config.json (Settings > Developer > Edit Config), then restart it."
    )
    if not target.http:
        return Snippet(hint, _json({"mcpServers": {SERVER_NAME: target.stdio()}}))
    # The config file only starts local processes; the remote servers Claude Desktop adds itself (custom connectors)
    # sign in with OAuth, not a key. mcp-remote is the usual bridge. The header has no space after the colon, and
    # the token comes from env, because Claude Desktop on Windows passes arguments with spaces on unquoted.
    args = ["-y", "mcp-remote", target.mcp_url, "--header", "Authorization:${COMPANION_AUTHORIZATION}"]
    if target.mcp_url.startswith("http://"):
        args.append("--allow-http")
    bridge = {"command": "npx", "args": args, "env": {"COMPANION_AUTHORIZATION": target.headers["Authorization"]}}
    return Snippet(
        f"{hint} It runs mcp-remote through npx, which needs Node.js.", _json({"mcpServers": {SERVER_NAME: bridge}})
    )


def claude_code(target: Target) -> Snippet:
    hint = "Claude Code: run this once (add --scope user to use it in every project); `claude mcp list` then lists it."
    if target.http:
        words = ["claude", "mcp", "add", "--transport", "http", SERVER_NAME, target.mcp_url]
        words += ["--header", f"Authorization: {target.headers['Authorization']}"]
        return Snippet(hint, shlex.join(words))
    # The name goes before --env: --env takes every word up to the next option, a name after it included.
    words = ["claude", "mcp", "add", "--transport", "stdio", SERVER_NAME]
    for name, value in target.env.items():
        words += ["--env", f"{name}={value}"]
    return Snippet(hint, shlex.join([*words, "--", target.executable, "mcp"]))


def cursor(target: Target) -> Snippet:
    hint = (
        "Cursor: add this to ~/.cursor/mcp.json (every project), or to a project's .cursor/mcp.json, "
        "kept out of version control: it holds the key."
    )
    server = {"url": target.mcp_url, "headers": target.headers} if target.http else target.stdio()
    return Snippet(hint, _json({"mcpServers": {SERVER_NAME: server}}))


def vscode(target: Target) -> Snippet:
    hint = (
        "VS Code: add this to your user configuration (command palette: MCP: Open User Configuration), "
        "or to a workspace's .vscode/mcp.json, kept out of version control: it holds the key."
    )
    if target.http:
        server = {"type": "http", "url": target.mcp_url, "headers": target.headers}
    else:
        server = {"type": "stdio", **target.stdio()}
    return Snippet(hint, _json({"servers": {SERVER_NAME: server}}))


CLIENTS: dict[str, Callable[[Target], Snippet]] = {
    "claude-desktop": claude_desktop,
    "claude-code": claude_code,
    "cursor": cursor,
    "vscode": vscode,
}


def add_commands(commands: Subcommands) -> None:
    connect = commands.add_parser(
        "connect",
        help="print the configuration that connects Claude Desktop, Claude Code, Cursor or VS Code",
        description="Print ready-to-paste configuration for a local assistant, with absolute paths and the key. "
        "With one --client, stdout holds only the configuration and stderr says where it goes.",
    )
    connect.add_argument("--client", choices=[*CLIENTS, "all"], default="all")
    connect.add_argument("--key", metavar="KEY", help="the agent key to connect with (default: COMPANION_API_KEY)")
    connect.add_argument(
        "--http", action="store_true", help="connect to the server's MCP URL (COMPANION_BASE_URL) instead of stdio"
    )


def companion_executable() -> str:
    """This ``companion``, by absolute path: the one the person ran, else the one installed beside this Python."""
    started = Path(sys.argv[0])
    if started.stem == "companion" and started.is_file():
        return str(started.resolve())
    # Run as `python -m server`.
    beside = Path(sys.executable).with_name("companion.exe" if sys.platform == "win32" else "companion")
    if beside.is_file():
        return str(beside)
    found = shutil.which("companion")
    if found is None:
        raise CliError("cannot find the companion executable; install Companion with scripts/setup")
    return str(Path(found).resolve())


def _connect(args: argparse.Namespace) -> None:
    key = args.key or os.environ.get("COMPANION_API_KEY", "")
    if not key:
        raise CliError(
            "key: pass --key or set COMPANION_API_KEY to an agent key; create one with "
            "`companion keys create --workspace SLUG --user EMAIL --name NAME` (its plaintext is shown once)"
        )
    settings = load_settings()
    target = Target(key, companion_executable(), settings.data_dir, settings.mcp_url, args.http)
    if not args.http:
        problem = setup_problem(settings)
        if problem is not None:
            print(f"warning: `companion mcp` will refuse to start until this is fixed: {problem}", file=sys.stderr)
        shell = (("COMPANION_DATABASE_URL", settings.database_url), ("COMPANION_SECRET_KEY", settings.secret_key))
        inherited = [name for name, value in shell if value]
        if inherited:
            print(
                f"note: this shell sets {' and '.join(inherited)}; add the same to the configuration's env, "
                "since an assistant does not start companion from this shell",
                file=sys.stderr,
            )
    names = list(CLIENTS) if args.client == "all" else [args.client]
    for name in names:
        snippet = CLIENTS[name](target)
        if len(names) == 1:
            print(snippet.hint, file=sys.stderr)
            print(snippet.text)
        else:
            print(f"{snippet.hint}\n\n{snippet.text}\n")


HANDLERS: Handlers = {("connect", None): _connect}

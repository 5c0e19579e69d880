"""``companion demo``: the demo workspace, its people and their keys."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import TYPE_CHECKING, Any

from server.cli.command import Handlers, Subcommands, with_companion
from server.settings import load_settings

if TYPE_CHECKING:
    from server.cli.command import Companion


def add_commands(commands: Subcommands) -> None:
    demo = commands.add_parser("demo", help="demo data").add_subparsers(dest="action", required=True)
    seed = demo.add_parser("seed", help="create the acme demo workspace (idempotent)")
    seed.add_argument("--json", action="store_true")


def _demo_seed(args: argparse.Namespace) -> None:
    from server.services import demo
    from store.migrate import upgrade

    async def work(companion: Companion) -> None:
        async with companion.db.transaction() as session:
            keys = await demo.seed(session, companion.registry, companion.box, companion.settings.encryption_keys()[0])
        if args.json:
            print(json.dumps(keys.as_json()))
        else:
            print_demo_keys(keys, companion.settings.mcp_url)

    settings = load_settings()
    upgrade(settings.resolved_database_url)
    asyncio.run(with_companion(settings, work))


def print_demo_keys(keys: Any, mcp_url: str) -> None:
    print(f"Demo workspace {keys.workspace!r} is ready.")
    print(f"MCP endpoint: {mcp_url}")
    for email, token in keys.keys.items():
        print(f"  agent key for {email}: {token}")
    for email, token in keys.user_keys.items():
        print(f"  user key for {email}:  {token}")
    from server.services.demo import DEMO_PASSWORD, PEOPLE

    people = ", ".join(email for email, *_ in PEOPLE)
    print(f"Web console: {mcp_url.removesuffix('/mcp')}/login as {people}, password {DEMO_PASSWORD!r}")


HANDLERS: Handlers = {
    ("demo", "seed"): _demo_seed,
}

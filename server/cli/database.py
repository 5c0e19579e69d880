"""``companion db``: the database schema."""

from __future__ import annotations

import argparse

from server.cli.command import Handlers, Subcommands
from server.settings import load_settings


def add_commands(commands: Subcommands) -> None:
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="migrate to the latest schema")


def _db_upgrade(args: argparse.Namespace) -> None:
    from store.migrate import upgrade

    settings = load_settings()
    upgrade(settings.resolved_database_url)
    print("ok: database is at the latest schema")


HANDLERS: Handlers = {
    ("db", "upgrade"): _db_upgrade,
}

"""``companion secrets``: the encryption keys of sealed values."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from server.cli.command import Handlers, Subcommands, run, with_companion

if TYPE_CHECKING:
    from server.cli.command import Companion


def add_commands(commands: Subcommands) -> None:
    secrets_cmd = commands.add_parser("secrets", help="encryption keys").add_subparsers(dest="action", required=True)
    secrets_cmd.add_parser("rotate", help="re-encrypt every sealed value under COMPANION_SECRET_KEY")
    secrets_cmd.add_parser("status", help="how many sealed values each key id holds")


def _secrets(args: argparse.Namespace) -> None:
    from store.rotation import key_usage, rotate

    async def work(companion: Companion) -> None:
        if args.action == "rotate":
            done = await rotate(companion.db, companion.box)
            for column, count in done.items():
                print(f"{column}: re-encrypted {count}")
        usage = await key_usage(companion.db, companion.box)
        print(f"current key id: {companion.box.current_key_id}")
        for column, counts in usage.items():
            listed = ", ".join(f"{key_id}: {n}" for key_id, n in sorted(counts.items())) or "none"
            print(f"{column}: {listed}")

    run(lambda settings: with_companion(settings, work))


HANDLERS: Handlers = {
    ("secrets", "rotate"): _secrets,
    ("secrets", "status"): _secrets,
}

"""``companion manifests``: check app manifests and their adapters."""

from __future__ import annotations

import argparse
from pathlib import Path

from manifests import MANIFEST_DIR
from server.cli.command import Handlers, Subcommands


def add_commands(commands: Subcommands) -> None:
    manifests = commands.add_parser("manifests", help="app manifests").add_subparsers(dest="action", required=True)
    validate = manifests.add_parser("validate", help="check manifests and their adapters")
    validate.add_argument("directory", nargs="?", type=Path, default=MANIFEST_DIR, metavar="DIR")


def _manifests_validate(args: argparse.Namespace) -> None:
    from tools.registry import Registry

    registry = Registry.load(args.directory)
    tools = sum(len(m.tools) for m in registry.manifests.values())
    print(f"ok: {len(registry.manifests)} apps, {tools} tools in {args.directory}")


HANDLERS: Handlers = {
    ("manifests", "validate"): _manifests_validate,
}

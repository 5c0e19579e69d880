"""The ``companion`` command.

Each command group is a module of ``server.cli`` that adds its subcommands and names their handlers. Every
failure a person can cause ends as one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from server.cli import (
    approvals,
    audit,
    connect,
    database,
    demo,
    integrations,
    keys,
    manifests,
    people,
    rules,
    secrets,
    serve,
    webhooks,
)
from server.cli.command import CliError, Handlers
from server.observability.logging import configure as configure_logging
from server.observability.tracing import configure_tracing
from server.settings import SettingsError
from tools.manifest import ManifestError

#: In the order ``companion --help`` lists them.
GROUPS = [
    serve,
    connect,
    database,
    demo,
    keys,
    people,
    rules,
    approvals,
    audit,
    integrations,
    webhooks,
    secrets,
    manifests,
]

HANDLERS: Handlers = {key: handler for group in GROUPS for key, handler in group.HANDLERS.items()}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="companion", description="Harmony Companion tool server.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    # Read straight from the environment, like the level, so logging works before (and when) the settings fail.
    configure_logging(os.environ.get("COMPANION_LOG_LEVEL", "WARNING"), os.environ.get("COMPANION_LOG_FORMAT", "text"))
    args = _parser().parse_args(argv)
    handler = HANDLERS[(args.command, getattr(args, "action", None))]
    try:
        configure_tracing()
        handler(args)
    except ManifestError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        sys.exit(1)
    except (CliError, SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except SQLAlchemyError as exc:
        print(
            f"error: database: {exc.__class__.__name__}: {str(exc.orig if hasattr(exc, 'orig') else exc)[:300]}",
            file=sys.stderr,
        )
        sys.exit(1)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)

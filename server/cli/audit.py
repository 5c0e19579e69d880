"""``companion audit``: the audit trail."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from server.cli.command import CliError, Handlers, Subcommands, run, with_companion

if TYPE_CHECKING:
    from server.cli.command import Companion


def add_commands(commands: Subcommands) -> None:
    audit = commands.add_parser("audit", help="the audit trail").add_subparsers(dest="action", required=True)
    verify = audit.add_parser("verify", help="check every workspace's hash chain")
    verify.add_argument("--workspace", metavar="SLUG")


def _audit_verify(args: argparse.Namespace) -> None:
    from approvals.audit import verify
    from store import directory

    async def work(companion: Companion) -> None:
        await companion.audit.flush()  # rows a change committed moments ago may still be in the outbox
        async with companion.db.session() as session:
            workspace_id = None
            if args.workspace:
                workspace_id = (await directory.workspace_by_slug(session, args.workspace)).id
            reports = await verify(session, workspace_id)
        broken = [r for r in reports if not r.intact]
        for report in reports:
            state = "intact" if report.intact else f"BROKEN: {report.problem}"
            print(f"{report.workspace_id}: {report.entries} entries, {state}")
        if not reports:
            print("no audit entries yet")
        if broken:
            raise CliError(f"audit: the chain of {len(broken)} workspace(s) is broken")

    run(lambda settings: with_companion(settings, work))


HANDLERS: Handlers = {
    ("audit", "verify"): _audit_verify,
}

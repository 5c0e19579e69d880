"""``companion workspace`` and ``companion user``: workspaces, their members and their passwords."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from server.cli.command import CliError, Handlers, Subcommands, choices, run, with_companion
from store.models import Plan, Role

if TYPE_CHECKING:
    from server.cli.command import Companion


def add_commands(commands: Subcommands) -> None:
    workspace = commands.add_parser("workspace", help="workspaces").add_subparsers(dest="action", required=True)
    ws_create = workspace.add_parser("create", help="create a workspace")
    ws_create.add_argument("--slug", required=True)
    ws_create.add_argument("--name", required=True)
    ws_create.add_argument("--plan", choices=choices(Plan), default=Plan.PLUS.value)

    user = commands.add_parser("user", help="users").add_subparsers(dest="action", required=True)
    user_add = user.add_parser("add", help="add a user to a workspace, or change their role")
    user_add.add_argument("--workspace", required=True, metavar="SLUG")
    user_add.add_argument("--email", required=True)
    user_add.add_argument("--role", choices=choices(Role), default=Role.MEMBER.value)
    user_add.add_argument("--name", default="")
    user_add.add_argument(
        "--integrations",
        choices=["yes", "no"],
        help="grant (yes) or withdraw (no) the permission to manage the workspace's integrations",
    )
    set_password = user.add_parser("set-password", help="set the password a person signs in to the web console with")
    set_password.add_argument("--email", required=True)
    set_password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of asking for it twice",
    )


def _workspace_create(args: argparse.Namespace) -> None:
    from server.services import workspaces

    async def work(companion: Companion) -> None:
        async with companion.db.transaction() as session:
            workspace = await workspaces.create_workspace(
                session, companion.registry, companion.box, slug=args.slug, name=args.name, plan=Plan(args.plan)
            )
        print(f"Created workspace {workspace.slug} ({workspace.id}) on the {workspace.plan.value} plan.")

    run(lambda settings: with_companion(settings, work))


def _user_add(args: argparse.Namespace) -> None:
    from store import directory

    async def work(companion: Companion) -> None:
        async with companion.db.transaction() as session:
            workspace = await directory.workspace_by_slug(session, args.workspace)
            user, membership = await directory.add_member(
                session,
                workspace,
                email=args.email,
                role=Role(args.role),
                name=args.name,
                manages_integrations=None if args.integrations is None else args.integrations == "yes",
            )
        manages = ", and manages its integrations" if membership.manages_integrations else ""
        print(f"{user.email} is {membership.role.value} of {workspace.slug}{manages}.")

    run(lambda settings: with_companion(settings, work))


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise CliError("password: the two entries differ")
    return first


def _user_set_password(args: argparse.Namespace) -> None:
    from store import directory
    from store.passwords import PasswordError, set_password

    password = _read_password(args.password_stdin)

    async def work(companion: Companion) -> None:
        async with companion.db.transaction() as session:
            user = await directory.user_by_email(session, args.email)
            try:
                await set_password(session, user, password)
            except PasswordError as exc:
                raise CliError(str(exc)) from None
        print(f"Password set for {user.email}; their other web sessions are signed out.")

    run(lambda settings: with_companion(settings, work))


HANDLERS: Handlers = {
    ("workspace", "create"): _workspace_create,
    ("user", "add"): _user_add,
    ("user", "set-password"): _user_set_password,
}

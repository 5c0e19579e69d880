"""``companion keys``: issue, list and revoke API keys."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from server.cli.command import CliError, Handlers, Subcommands, choices, run, with_companion
from store.models import KeyKind

if TYPE_CHECKING:
    from server.cli.command import Companion


def add_commands(commands: Subcommands) -> None:
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="issue a key; its plaintext is shown once")
    create.add_argument("--workspace", required=True, metavar="SLUG")
    create.add_argument("--user", required=True, metavar="EMAIL")
    create.add_argument("--name", default="")
    create.add_argument("--kind", choices=choices(KeyKind), default=KeyKind.AGENT.value)
    create.add_argument("--json", action="store_true")
    listing = keys.add_parser("list", help="list a workspace's keys")
    listing.add_argument("--workspace", required=True, metavar="SLUG")
    listing.add_argument("--json", action="store_true")
    revoke = keys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", metavar="KEY_ID")


def _keys_create(args: argparse.Namespace) -> None:
    from store import directory
    from store.keys import create_key

    async def work(companion: Companion) -> None:
        async with companion.db.transaction() as session:
            workspace = await directory.workspace_by_slug(session, args.workspace)
            user = await directory.user_by_email(session, args.user)
            if not await _is_member(session, workspace.id, user.id):
                raise CliError(f"user: {args.user} is not a member of workspace {args.workspace!r}")
            issued = await create_key(
                session, workspace_id=workspace.id, user_id=user.id, name=args.name, kind=KeyKind(args.kind)
            )
        if args.json:
            print(
                json.dumps(
                    {
                        "id": issued.key.id,
                        "key": issued.token,
                        "prefix": issued.key.prefix,
                        "kind": issued.key.kind.value,
                    }
                )
            )
        else:
            print(f"Created {issued.key.kind.value} key {issued.key.id} for {args.user} in {args.workspace}.")
            print(f"  {issued.token}")
            print("Copy it now: it is not shown again.")

    run(lambda settings: with_companion(settings, work))


async def _is_member(session: Any, workspace_id: str, user_id: str) -> bool:
    from sqlalchemy import select

    from store.models import Membership

    found = await session.scalar(
        select(Membership.id).where(Membership.workspace_id == workspace_id, Membership.user_id == user_id)
    )
    return found is not None


def _keys_list(args: argparse.Namespace) -> None:
    from store import directory
    from store.keys import list_keys

    async def work(companion: Companion) -> None:
        async with companion.db.session() as session:
            workspace = await directory.workspace_by_slug(session, args.workspace)
            rows = await list_keys(session, workspace.id)
        records = [
            {
                "id": key.id,
                "prefix": key.prefix,
                "kind": key.kind.value,
                "user": email,
                "name": key.name,
                "scopes": key.scopes,
                "created_at": key.created_at.isoformat(),
                "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
                "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
            }
            for key, email in rows
        ]
        if args.json:
            print(json.dumps(records))
            return
        for r in records:
            state = f"revoked {r['revoked_at']}" if r["revoked_at"] else f"last used {r['last_used_at'] or 'never'}"
            print(f"{r['id']}  {r['prefix']}…  {r['kind']:5}  {r['user']}  {r['name'] or '-'}  ({state})")
        if not records:
            print("no keys")

    run(lambda settings: with_companion(settings, work))


def _keys_revoke(args: argparse.Namespace) -> None:
    from store.keys import revoke_key

    async def work(companion: Companion) -> None:
        async with companion.db.transaction() as session:
            if not await revoke_key(session, args.key_id):
                raise CliError(f"key_id: no live key {args.key_id!r}")
        print(f"Revoked {args.key_id}.")

    run(lambda settings: with_companion(settings, work))


HANDLERS: Handlers = {
    ("keys", "create"): _keys_create,
    ("keys", "list"): _keys_list,
    ("keys", "revoke"): _keys_revoke,
}

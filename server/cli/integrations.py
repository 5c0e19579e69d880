"""``companion integrations``: connected apps, acting as a member (``server.services.integrations``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from server.cli.command import CliError, Handlers, Subcommands, acting, acting_options, json_argument
from store.principal import Principal

if TYPE_CHECKING:
    from server.cli.command import Companion


def add_commands(commands: Subcommands) -> None:
    integrations = commands.add_parser("integrations", help="connected apps").add_subparsers(
        dest="action", required=True
    )
    int_list = acting_options(
        integrations.add_parser("list", help="installed integrations (--available: apps to connect)")
    )
    int_list.add_argument("--available", action="store_true")
    int_connect = acting_options(
        integrations.add_parser("connect", help="connect an app; OAuth apps print a link to open")
    )
    int_connect.add_argument("app", metavar="APP")
    int_connect.add_argument("--scope", choices=["workspace", "personal"])
    int_connect.add_argument("--method", choices=["oauth2", "api_key", "basic", "smtp"])
    int_connect.add_argument("--label", default="")
    int_connect.add_argument(
        "--setup", default="{}", metavar="JSON", help="setup fields as JSON, or - to read them from stdin (for keys)"
    )
    for name, text in [
        ("test", "call the provider once and report OK or its error"),
        ("sync", "run a full sync now and print its log entry"),
        ("logs", "the connection's sync runs, newest first"),
        ("disconnect", "stop sync and delete the credentials; keep settings and synced data"),
        ("delete", "remove the connection and its settings; synced data stays"),
    ]:
        acting_options(integrations.add_parser(name, help=text)).add_argument("connection_id", metavar="CONNECTION_ID")


def _integration_step(args: argparse.Namespace) -> None:
    from server.services.integrations.lifecycle import IntegrationError, connection_json

    async def work(companion: Companion, person: Principal) -> Any:
        lifecycle = companion.integrations
        try:
            if args.action == "list":
                if args.available:
                    return lifecycle.available()
                async with companion.db.session() as session:
                    rows = await lifecycle.installed(session, person)
                return [connection_json(r, companion.registry.manifests.get(r.app)) for r in rows]
            if args.action == "connect":
                setup = json_argument(args.setup, "setup")
                manifest = lifecycle.manifest(args.app)
                if (args.method or manifest.auth.type) == "oauth2":
                    started = await companion.oauth.start(
                        person, args.app, scope=args.scope, label=args.label, setup=setup
                    )
                    return {**started, "next": f"Open authorize_url in a browser signed in as {person.email}."}
                return await lifecycle.connect(
                    person, args.app, scope=args.scope, method=args.method, label=args.label, setup=setup
                )
            if args.action == "test":
                return await lifecycle.test(person, args.connection_id)
            if args.action == "sync":
                return await companion.sync.run(person, args.connection_id)
            if args.action == "logs":
                return await lifecycle.sync_logs(person, args.connection_id)
            if args.action == "disconnect":
                return await lifecycle.disconnect(person, args.connection_id)
            await lifecycle.delete(person, args.connection_id)
            return {"deleted": args.connection_id}
        except IntegrationError as exc:
            # The CLI's edge: a refusal is one line, naming each bad field when there are some.
            raise CliError("; ".join(f"{k}: {v}" for k, v in exc.fields.items()) if exc.fields else str(exc)) from None

    acting(args, work)


HANDLERS: Handlers = {
    **{
        ("integrations", step): _integration_step
        for step in ("list", "connect", "test", "sync", "logs", "disconnect", "delete")
    },
}

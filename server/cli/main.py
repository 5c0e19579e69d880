"""The ``companion`` command.

Every failure a person can cause ends as one line on stderr and a non-zero
exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from manifests import MANIFEST_DIR
from server.cli import webhooks as webhooks_cli
from server.observability.logging import configure as configure_logging
from server.observability.tracing import configure_tracing
from server.settings import Settings, SettingsError, load_settings
from store.models import KeyKind, Plan, Role
from tools.manifest import ManifestError

log = logging.getLogger("companion")


class CliError(Exception):
    """A failure to report as one line."""


def _choices(enum: type[Any]) -> list[str]:
    return [member.value for member in enum]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="companion", description="Harmony Companion tool server.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="migrate the database, then serve MCP and the API over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--demo", action="store_true", help="seed the demo workspace and print its keys")
    serve.add_argument(
        "--workers", type=int, metavar="N", help="uvicorn worker processes, each with its own app (COMPANION_WORKERS)"
    )

    commands.add_parser("mcp", help="serve MCP over stdio, as the key in COMPANION_API_KEY")

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="migrate to the latest schema")

    demo = commands.add_parser("demo", help="demo data").add_subparsers(dest="action", required=True)
    seed = demo.add_parser("seed", help="create the acme demo workspace (idempotent)")
    seed.add_argument("--json", action="store_true")

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="issue a key; its plaintext is shown once")
    create.add_argument("--workspace", required=True, metavar="SLUG")
    create.add_argument("--user", required=True, metavar="EMAIL")
    create.add_argument("--name", default="")
    create.add_argument("--kind", choices=_choices(KeyKind), default=KeyKind.AGENT.value)
    create.add_argument("--json", action="store_true")
    listing = keys.add_parser("list", help="list a workspace's keys")
    listing.add_argument("--workspace", required=True, metavar="SLUG")
    listing.add_argument("--json", action="store_true")
    revoke = keys.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", metavar="KEY_ID")

    workspace = commands.add_parser("workspace", help="workspaces").add_subparsers(dest="action", required=True)
    ws_create = workspace.add_parser("create", help="create a workspace")
    ws_create.add_argument("--slug", required=True)
    ws_create.add_argument("--name", required=True)
    ws_create.add_argument("--plan", choices=_choices(Plan), default=Plan.PLUS.value)

    user = commands.add_parser("user", help="users").add_subparsers(dest="action", required=True)
    user_add = user.add_parser("add", help="add a user to a workspace, or change their role")
    user_add.add_argument("--workspace", required=True, metavar="SLUG")
    user_add.add_argument("--email", required=True)
    user_add.add_argument("--role", choices=_choices(Role), default=Role.MEMBER.value)
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

    def acting(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--workspace", required=True, metavar="SLUG")
        sub.add_argument("--as", dest="actor", required=True, metavar="EMAIL", help="the person acting")
        sub.add_argument("--json", action="store_true")
        return sub

    rules = commands.add_parser("rules", help="auto-approval rules").add_subparsers(dest="action", required=True)
    acting(rules.add_parser("list", help="the rules the person may see"))
    rules_add = acting(rules.add_parser("add", help="add a rule, given as the API's rule JSON"))
    rules_add.add_argument("rule", metavar="RULE_JSON", help="the rule as JSON, or - to read it from stdin")
    rules_remove = acting(rules.add_parser("remove", help="delete a rule"))
    rules_remove.add_argument("rule_id", metavar="RULE_ID")
    explain = acting(rules.add_parser("explain", help="the decision a call would get, and why"))
    explain.add_argument("--tool", required=True)
    explain.add_argument("--arguments", default="{}", metavar="JSON")
    explain.add_argument("--user", metavar="EMAIL", help="whose call (admins only; default: the person acting)")
    simulate = acting(rules.add_parser("simulate", help="replay recorded calls under a proposed change"))
    simulate.add_argument("--changes", required=True, metavar="JSON", help='e.g. {"add": [RULE], "remove": [ID]}')
    simulate.add_argument("--days", type=int, default=7)

    approvals = commands.add_parser("approvals", help="approvals").add_subparsers(dest="action", required=True)
    approvals_list = acting(approvals.add_parser("list", help="approvals the person may decide"))
    approvals_list.add_argument("--status", default="pending")
    approve = acting(approvals.add_parser("approve", help="approve a pending call"))
    approve.add_argument("approval_id", metavar="APPROVAL_ID")
    approve.add_argument("--remember", choices=["no", "1h", "30d"], default="no")
    deny = acting(approvals.add_parser("deny", help="deny a pending call"))
    deny.add_argument("approval_id", metavar="APPROVAL_ID")
    deny.add_argument("--reason")

    audit = commands.add_parser("audit", help="the audit trail").add_subparsers(dest="action", required=True)
    verify = audit.add_parser("verify", help="check every workspace's hash chain")
    verify.add_argument("--workspace", metavar="SLUG")

    integrations = commands.add_parser("integrations", help="connected apps").add_subparsers(
        dest="action", required=True
    )
    int_list = acting(integrations.add_parser("list", help="installed integrations (--available: apps to connect)"))
    int_list.add_argument("--available", action="store_true")
    int_connect = acting(integrations.add_parser("connect", help="connect an app; OAuth apps print a link to open"))
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
        acting(integrations.add_parser(name, help=text)).add_argument("connection_id", metavar="CONNECTION_ID")

    webhooks_cli.add_commands(commands, acting)

    secrets_cmd = commands.add_parser("secrets", help="encryption keys").add_subparsers(dest="action", required=True)
    secrets_cmd.add_parser("rotate", help="re-encrypt every sealed value under COMPANION_SECRET_KEY")
    secrets_cmd.add_parser("status", help="how many sealed values each key id holds")

    manifests = commands.add_parser("manifests", help="app manifests").add_subparsers(dest="action", required=True)
    validate = manifests.add_parser("validate", help="check manifests and their adapters")
    validate.add_argument("directory", nargs="?", type=Path, default=MANIFEST_DIR, metavar="DIR")
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


def _run(coroutine: Callable[[Settings], Awaitable[None]]) -> None:
    settings = load_settings()
    asyncio.run(coroutine(settings))


def _manifests_validate(args: argparse.Namespace) -> None:
    from tools.registry import Registry

    registry = Registry.load(args.directory)
    tools = sum(len(m.tools) for m in registry.manifests.values())
    print(f"ok: {len(registry.manifests)} apps, {tools} tools in {args.directory}")


def _db_upgrade(args: argparse.Namespace) -> None:
    from store.migrate import upgrade

    settings = load_settings()
    upgrade(settings.resolved_database_url)
    print("ok: database is at the latest schema")


async def _with_companion(settings: Settings, work: Callable[[Any], Awaitable[None]]) -> None:
    from server.app import Companion
    from store.migrate import schema_is_current

    companion = Companion.build(settings)
    try:
        if not await schema_is_current(companion.db.engine):
            raise CliError("database: the schema is missing or old; run `companion db upgrade` first")
        await work(companion)
    finally:
        await companion.aclose()


def _demo_seed(args: argparse.Namespace) -> None:
    from server.services import demo
    from store.migrate import upgrade

    async def work(companion: Any) -> None:
        async with companion.db.transaction() as session:
            keys = await demo.seed(session, companion.registry, companion.box, companion.settings.encryption_keys()[0])
        if args.json:
            print(json.dumps(keys.as_json()))
        else:
            _print_demo_keys(keys, companion.settings.mcp_url)

    settings = load_settings()
    upgrade(settings.resolved_database_url)
    asyncio.run(_with_companion(settings, work))


def _print_demo_keys(keys: Any, mcp_url: str) -> None:
    print(f"Demo workspace {keys.workspace!r} is ready.")
    print(f"MCP endpoint: {mcp_url}")
    for email, token in keys.keys.items():
        print(f"  agent key for {email}: {token}")
    for email, token in keys.user_keys.items():
        print(f"  user key for {email}:  {token}")
    from server.services.demo import DEMO_PASSWORD, PEOPLE

    people = ", ".join(email for email, *_ in PEOPLE)
    print(f"Web console: {mcp_url.removesuffix('/mcp')}/login as {people}, password {DEMO_PASSWORD!r}")


def _keys_create(args: argparse.Namespace) -> None:
    from store import directory
    from store.keys import create_key

    async def work(companion: Any) -> None:
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

    _run(lambda settings: _with_companion(settings, work))


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

    async def work(companion: Any) -> None:
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

    _run(lambda settings: _with_companion(settings, work))


def _keys_revoke(args: argparse.Namespace) -> None:
    from store.keys import revoke_key

    async def work(companion: Any) -> None:
        async with companion.db.transaction() as session:
            if not await revoke_key(session, args.key_id):
                raise CliError(f"key_id: no live key {args.key_id!r}")
        print(f"Revoked {args.key_id}.")

    _run(lambda settings: _with_companion(settings, work))


def _workspace_create(args: argparse.Namespace) -> None:
    from server.services import workspaces

    async def work(companion: Any) -> None:
        async with companion.db.transaction() as session:
            workspace = await workspaces.create_workspace(
                session, companion.registry, companion.box, slug=args.slug, name=args.name, plan=Plan(args.plan)
            )
        print(f"Created workspace {workspace.slug} ({workspace.id}) on the {workspace.plan.value} plan.")

    _run(lambda settings: _with_companion(settings, work))


def _user_add(args: argparse.Namespace) -> None:
    from store import directory

    async def work(companion: Any) -> None:
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

    _run(lambda settings: _with_companion(settings, work))


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

    async def work(companion: Any) -> None:
        async with companion.db.transaction() as session:
            user = await directory.user_by_email(session, args.email)
            try:
                await set_password(session, user, password)
            except PasswordError as exc:
                raise CliError(str(exc)) from None
        print(f"Password set for {user.email}; their other web sessions are signed out.")

    _run(lambda settings: _with_companion(settings, work))


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from server.app import Companion
    from server.asgi import served
    from store.migrate import upgrade

    settings = load_settings()
    workers = settings.workers if args.workers is None else args.workers
    if workers < 1:
        raise CliError("workers: at least 1")
    if "base_url" not in settings.model_fields_set:
        settings = settings.model_copy(update={"base_url": f"http://{args.host}:{args.port}"})
    upgrade(settings.resolved_database_url)
    if args.demo:
        from server.services import demo

        async def seed(companion: Any) -> None:
            async with companion.db.transaction() as session:
                keys = await demo.seed(session, companion.registry, companion.box, settings.encryption_keys()[0])
            _print_demo_keys(keys, settings.mcp_url)

        asyncio.run(_with_companion(settings, seed))
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "log_level": "warning",
        "lifespan": "on",
        # On SIGTERM uvicorn stops accepting connections and gives open requests shutdown_seconds to end;
        # server/asgi.py makes waiting calls answer at once and lets running calls finish. Waiting approvals
        # live in the database and are decided and run through the other replicas.
        "timeout_graceful_shutdown": int(settings.shutdown_seconds),
        # uvicorn's default of 5 s equals httpx's and many SDKs' idle expiry: the two ends closing an idle connection
        # at once made a request now and then fail with a reset (bench/load.py, 100 clients).
        "timeout_keep_alive": settings.keep_alive_seconds,
        # As JSON lines, uvicorn's own records go through the root handler instead of its text formatters.
        **({"log_config": None} if settings.log_format == "json" else {}),
    }
    if workers == 1:
        app = served(Companion.build(settings))
        print(f"Serving MCP at {settings.mcp_url} (health: {settings.base_url}/healthz)", flush=True)
        signal.signal(signal.SIGTERM, _stopped)
        uvicorn.run(app, **options)
        return
    # uvicorn starts workers from an import string: each builds its app from the environment (server.asgi:create),
    # so the base URL worked out above goes there too. The migration and the demo seed above ran once, here.
    os.environ["COMPANION_BASE_URL"] = settings.base_url
    print(f"Serving MCP at {settings.mcp_url} with {workers} workers (health: {settings.base_url}/healthz)", flush=True)
    uvicorn.run("server.asgi:create", factory=True, workers=workers, **options)


def _stopped(signum: int, frame: Any) -> None:
    """A graceful stop on SIGTERM exits 0.

    uvicorn puts back the handler it found (this one) once it has shut down, then raises the signal again,
    which without this would end the process as killed by SIGTERM (status 143) after a clean stop.
    """
    sys.exit(0)


def _mcp_stdio(args: argparse.Namespace) -> None:
    from server.stdio import serve_stdio

    token = os.environ.get("COMPANION_API_KEY", "")
    if not token:
        raise CliError("COMPANION_API_KEY: set it to an agent API key to serve MCP over stdio")
    asyncio.run(serve_stdio(load_settings(), token))


async def _person(companion: Any, workspace_slug: str, email: str) -> Any:
    """The member acting through the CLI, as a principal of the user kind (the CLI acts for a person)."""
    from store import directory

    async with companion.db.session() as session:
        workspace = await directory.workspace_by_slug(session, workspace_slug)
        user = await directory.user_by_email(session, email)
        person = await directory.member_principal(session, workspace.id, user.id, acting_as="cli")
    if person is None:
        raise CliError(f"as: {email} is not a member of workspace {workspace_slug!r}")
    return person


def _json_argument(text: str, field: str) -> Any:
    raw = sys.stdin.read() if text == "-" else text
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise CliError(f"{field}: not valid JSON ({exc.msg} at position {exc.pos})") from None


def _acting(args: argparse.Namespace, work: Callable[[Any, Any], Awaitable[Any]]) -> None:
    """Run ``work(companion, person)`` and print its result (JSON with --json)."""
    from server.api.errors import ApiError

    async def run(companion: Any) -> None:
        person = await _person(companion, args.workspace, args.actor)
        try:
            result = await work(companion, person)
        except ApiError as exc:
            fields = exc.details.get("fields") if isinstance(exc.details, dict) else None
            raise CliError("; ".join(f"{k}: {v}" for k, v in fields.items()) if fields else exc.message) from None
        if result is not None:
            print(json.dumps(result, indent=None if args.json else 2, default=str))

    _run(lambda settings: _with_companion(settings, run))


def _rules_list(args: argparse.Namespace) -> None:
    from server.services.rules import Rules

    async def work(companion: Any, person: Any) -> Any:
        rules = await Rules(companion.rulebook).visible(person)
        return [r.model_dump(mode="json", by_alias=True) for r in rules]

    _acting(args, work)


def _rules_add(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from server.services.errors import InvalidInput, ServiceError
    from server.services.rules import RuleIn, Rules

    data = _json_argument(args.rule, "rule")

    async def work(companion: Any, person: Any) -> Any:
        try:
            try:
                rule = RuleIn.model_validate(data)
            except ValidationError as exc:
                raise InvalidInput.of(exc) from None
            return (await Rules(companion.rulebook).add(person, rule)).model_dump(mode="json", by_alias=True)
        except ServiceError as exc:
            raise CliError(str(exc)) from None

    if not isinstance(data, dict):
        raise CliError("rule: a rule is a JSON object")
    _acting(args, work)


def _rules_remove(args: argparse.Namespace) -> None:
    from server.services.errors import ServiceError
    from server.services.rules import Rules

    async def work(companion: Any, person: Any) -> Any:
        try:
            await Rules(companion.rulebook).remove(person, args.rule_id)
        except ServiceError as exc:
            raise CliError(f"rule_id: {exc}") from None
        print(f"Removed {args.rule_id}.")

    _acting(args, work)


def _rules_explain(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from server.services.errors import InvalidInput, ServiceError
    from server.services.rule_whatifs import ExplainRequest, RuleWhatIfs

    arguments = _json_argument(args.arguments, "arguments")

    async def work(companion: Any, person: Any) -> Any:
        whatifs = RuleWhatIfs(companion.rulebook, companion.box, companion.registry)
        try:
            try:
                question = ExplainRequest(tool=args.tool, arguments=arguments, user=args.user)
            except ValidationError as exc:
                raise InvalidInput.of(exc) from None
            return (await whatifs.explain_call(person, question)).model_dump(mode="json")
        except ServiceError as exc:
            raise CliError(str(exc)) from None

    _acting(args, work)


def _rules_simulate(args: argparse.Namespace) -> None:
    from datetime import timedelta

    from pydantic import ValidationError

    from server.services.errors import InvalidInput, ServiceError
    from server.services.rule_whatifs import RuleWhatIfs, SimulateRequest
    from store.models import utcnow

    changes = _json_argument(args.changes, "changes")

    async def work(companion: Any, person: Any) -> Any:
        now = utcnow()
        whatifs = RuleWhatIfs(companion.rulebook, companion.box, companion.registry)
        try:
            try:
                request = SimulateRequest.model_validate(
                    {"changes": changes, "from": now - timedelta(days=args.days), "to": now}
                )
            except ValidationError as exc:
                raise InvalidInput.of(exc) from None
            return (await whatifs.simulate(person, request)).model_dump(mode="json", by_alias=True)
        except ServiceError as exc:
            raise CliError(str(exc)) from None

    _acting(args, work)


def _approvals_list(args: argparse.Namespace) -> None:
    from server.services.approval_flow import approval_view, approvals_for
    from store.models import ApprovalStatus

    if args.status != "all" and args.status not in {s.value for s in ApprovalStatus}:
        raise CliError(f"status: unknown status {args.status!r}")

    async def work(companion: Any, person: Any) -> Any:
        status = None if args.status == "all" else ApprovalStatus(args.status)
        rows = await approvals_for(companion.gateway.flow, person, status)
        views = [approval_view(companion.gateway.flow, companion.registry.tools, a) for a in rows]
        if args.json:
            return views
        for view in views:
            print(
                f"{view['id']}  {view['status']:9}  {view['tool']}  {view['summary']}  (expires {view['expires_at']})"
            )
        if not views:
            print(f"no {args.status} approvals")
        return None

    _acting(args, work)


def _approvals_decide(args: argparse.Namespace) -> None:
    from server.services.approval_flow import DecisionRefused, approval_view, decide_elsewhere

    async def work(companion: Any, person: Any) -> Any:
        try:
            approval = await decide_elsewhere(
                companion.gateway.flow,
                companion.registry.tools,
                person,
                args.approval_id,
                approve=args.action == "approve",
                via="cli",
                reason=getattr(args, "reason", None),
                remember=getattr(args, "remember", None),
            )
        except DecisionRefused as exc:
            raise CliError(f"approval_id: {exc}") from None
        view = approval_view(companion.gateway.flow, companion.registry.tools, approval)
        if args.json:
            return view
        print(f"{view['id']} is {view['status']}: {view['summary']}")
        return None

    _acting(args, work)


def _audit_verify(args: argparse.Namespace) -> None:
    from approvals.audit import verify
    from store import directory

    async def work(companion: Any) -> None:
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

    _run(lambda settings: _with_companion(settings, work))


def _integration_step(args: argparse.Namespace) -> None:
    from server.api.errors import ApiError
    from server.services.integrations.lifecycle import IntegrationError, connection_json

    async def work(companion: Any, person: Any) -> Any:
        lifecycle = companion.integrations
        try:
            if args.action == "list":
                if args.available:
                    return lifecycle.available()
                async with companion.db.session() as session:
                    rows = await lifecycle.installed(session, person)
                return [connection_json(r, companion.registry.manifests.get(r.app)) for r in rows]
            if args.action == "connect":
                setup = _json_argument(args.setup, "setup")
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
            raise ApiError(exc.status, str(exc), details={"fields": exc.fields} if exc.fields else {}) from None

    _acting(args, work)


def _secrets(args: argparse.Namespace) -> None:
    from store.rotation import key_usage, rotate

    async def work(companion: Any) -> None:
        if args.action == "rotate":
            done = await rotate(companion.db, companion.box)
            for column, count in done.items():
                print(f"{column}: re-encrypted {count}")
        usage = await key_usage(companion.db, companion.box)
        print(f"current key id: {companion.box.current_key_id}")
        for column, counts in usage.items():
            listed = ", ".join(f"{key_id}: {n}" for key_id, n in sorted(counts.items())) or "none"
            print(f"{column}: {listed}")

    _run(lambda settings: _with_companion(settings, work))


HANDLERS: dict[tuple[str, str | None], Callable[[argparse.Namespace], None]] = {
    **webhooks_cli.HANDLERS,
    **{
        ("integrations", step): _integration_step
        for step in ("list", "connect", "test", "sync", "logs", "disconnect", "delete")
    },
    ("secrets", "rotate"): _secrets,
    ("secrets", "status"): _secrets,
    ("rules", "list"): _rules_list,
    ("rules", "add"): _rules_add,
    ("rules", "remove"): _rules_remove,
    ("rules", "explain"): _rules_explain,
    ("rules", "simulate"): _rules_simulate,
    ("approvals", "list"): _approvals_list,
    ("approvals", "approve"): _approvals_decide,
    ("approvals", "deny"): _approvals_decide,
    ("audit", "verify"): _audit_verify,
    ("serve", None): _serve,
    ("mcp", None): _mcp_stdio,
    ("db", "upgrade"): _db_upgrade,
    ("demo", "seed"): _demo_seed,
    ("keys", "create"): _keys_create,
    ("keys", "list"): _keys_list,
    ("keys", "revoke"): _keys_revoke,
    ("workspace", "create"): _workspace_create,
    ("user", "add"): _user_add,
    ("user", "set-password"): _user_set_password,
    ("manifests", "validate"): _manifests_validate,
}

"""``companion serve`` (MCP, the API and the console over HTTP) and ``companion mcp`` (MCP over stdio).

These are the entry points that build the whole server (``server.app``, ``server.asgi``, ``server.stdio``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from server.cli.command import CliError, Handlers, Subcommands, with_companion
from server.cli.demo import print_demo_keys
from server.settings import SECRET_KEY_FILE, Settings, SettingsError, load_settings
from store.principal import Principal

if TYPE_CHECKING:
    from server.cli.command import Companion


def add_commands(commands: Subcommands) -> None:
    serve = commands.add_parser("serve", help="migrate the database, then serve MCP and the API over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--demo", action="store_true", help="seed the demo workspace and print its keys")
    serve.add_argument(
        "--workers", type=int, metavar="N", help="uvicorn worker processes, each with its own app (COMPANION_WORKERS)"
    )

    commands.add_parser("mcp", help="serve MCP over stdio, as the key in COMPANION_API_KEY")


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

        async def seed(companion: Companion) -> None:
            async with companion.db.transaction() as session:
                keys = await demo.seed(session, companion.registry, companion.box, settings.encryption_keys()[0])
            print_demo_keys(keys, settings.mcp_url)

        asyncio.run(with_companion(settings, seed))
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


def database_label(settings: Settings) -> str:
    """The database, as a person looks for it: SQLite's file, or the URL without its password."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.render_as_string(hide_password=True)


def setup_problem(settings: Settings) -> str | None:
    """Why ``companion mcp`` cannot serve from what these settings point at, found without creating anything.

    Opening a missing SQLite file creates it, and a missing development key is generated: an assistant started in
    the wrong place would leave an empty data directory behind and answer "no such table". ``None`` when both exist.
    """
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).is_file():
        return (
            f"database: {database_label(settings)} does not exist (data directory {settings.data_dir}); "
            "set it up with `companion db upgrade`, or set COMPANION_DATA_DIR to the data directory your server uses"
        )
    key_file = settings.data_dir / SECRET_KEY_FILE
    if settings.secret_key is None and not key_file.is_file():
        return (
            f"secret key: COMPANION_SECRET_KEY is unset and {key_file} does not exist; "
            "give this process the COMPANION_SECRET_KEY (or COMPANION_DATA_DIR) your server uses"
        )
    return None


def _mcp_stdio(args: argparse.Namespace) -> None:
    token = os.environ.get("COMPANION_API_KEY", "")
    if not token:
        raise CliError("COMPANION_API_KEY: set it to an agent API key to serve MCP over stdio")
    settings = load_settings()
    problem = setup_problem(settings)
    if problem is not None:
        raise CliError(problem)
    asyncio.run(_serve_stdio(settings, token))


async def _serve_stdio(settings: Settings, token: str) -> None:
    from server.app import Companion
    from server.mcp.stdio import serve_stdio
    from store.migrate import schema_is_current

    companion = Companion.build(settings)
    try:
        if not await schema_is_current(companion.db.engine):
            raise CliError(
                f"database: {database_label(settings)} has no schema or an old one (data directory "
                f"{settings.data_dir}); run `companion db upgrade` first"
            )
        if await companion.principal_for(token) is None:
            raise SettingsError("COMPANION_API_KEY: not a valid, unrevoked API key for this server")

        async def principal() -> Principal | None:
            # Checked on every request, so revoking the key ends a running session.
            return await companion.principal_for(token)

        await serve_stdio(companion.mcp_server(principal))
    finally:
        await companion.aclose()


HANDLERS: Handlers = {
    ("serve", None): _serve,
    ("mcp", None): _mcp_stdio,
}

"""What every ``companion`` command shares: its one-line error, the server parts it works with, the person acting.

This is where the CLI builds the composition root (``server.app.Companion``): a command is an entry point, like
``server.asgi``, and gets the whole server. Use-case refusals become a ``CliError`` here, at the CLI's edge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from server.services.errors import ServiceError
from server.settings import Settings, load_settings
from store.principal import Principal

if TYPE_CHECKING:
    from server.app import Companion as Companion  # the command modules' type for it

#: The ``companion`` subcommands, as ``argparse`` hands them out (its ``_SubParsersAction`` is private).
Subcommands = Any
#: What a command module adds to ``companion``: its handlers by ``(command, action)``.
Handlers = dict[tuple[str, str | None], Callable[[argparse.Namespace], None]]


class CliError(Exception):
    """A failure to report as one line."""


def choices(enum: type[Any]) -> list[str]:
    return [member.value for member in enum]


def acting_options(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of a command that acts as a member of a workspace."""
    sub.add_argument("--workspace", required=True, metavar="SLUG")
    sub.add_argument("--as", dest="actor", required=True, metavar="EMAIL", help="the person acting")
    sub.add_argument("--json", action="store_true")
    return sub


def run(coroutine: Callable[[Settings], Coroutine[Any, Any, None]]) -> None:
    settings = load_settings()
    asyncio.run(coroutine(settings))


async def with_companion(settings: Settings, work: Callable[[Companion], Awaitable[None]]) -> None:
    from server.app import Companion
    from store.migrate import schema_is_current

    companion = Companion.build(settings)
    try:
        if not await schema_is_current(companion.db.engine):
            raise CliError("database: the schema is missing or old; run `companion db upgrade` first")
        await work(companion)
    finally:
        await companion.aclose()


async def _person(companion: Companion, workspace_slug: str, email: str) -> Principal:
    """The member acting through the CLI, as a principal of the user kind (the CLI acts for a person)."""
    from store import directory

    async with companion.db.session() as session:
        workspace = await directory.workspace_by_slug(session, workspace_slug)
        user = await directory.user_by_email(session, email)
        person = await directory.member_principal(session, workspace.id, user.id, acting_as="cli")
    if person is None:
        raise CliError(f"as: {email} is not a member of workspace {workspace_slug!r}")
    return person


def json_argument(text: str, field: str) -> Any:
    raw = sys.stdin.read() if text == "-" else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CliError(f"{field}: not valid JSON ({exc.msg} at position {exc.pos})") from None


def acting(args: argparse.Namespace, work: Callable[[Companion, Principal], Awaitable[Any]]) -> None:
    """Run ``work(companion, person)`` and print its result (JSON with --json); a use case's refusal is one line."""

    async def run_as(companion: Companion) -> None:
        person = await _person(companion, args.workspace, args.actor)
        try:
            result = await work(companion, person)
        except ServiceError as exc:
            raise CliError(str(exc)) from None
        if result is not None:
            print(json.dumps(result, indent=None if args.json else 2, default=str))

    run(lambda settings: with_companion(settings, run_as))

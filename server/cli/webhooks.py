"""``companion webhooks``: the API's webhook operations from the command line, acting as a member.

Each command runs the same use case as its API endpoint (``server.services.webhooks.subscriptions``), so the
permission rules, the URL checks and the one-time secret are the same.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from server.cli.command import CliError, Handlers, Subcommands, acting, acting_options
from server.services.webhooks.outbox import EVENTS
from store.models import DeliveryStatus
from store.principal import Principal

if TYPE_CHECKING:
    from server.cli.command import Companion


def add_commands(commands: Subcommands) -> None:
    """Add ``webhooks list|add|remove|deliveries|test|retry`` to the ``companion`` subcommands."""
    webhooks = commands.add_parser("webhooks", help="webhook endpoints and their deliveries").add_subparsers(
        dest="action", required=True
    )
    acting_options(webhooks.add_parser("list", help="the workspace's endpoints"))
    add = acting_options(webhooks.add_parser("add", help="send events to a URL; prints the signing secret once"))
    add.add_argument("url", metavar="URL")
    add.add_argument("--events", nargs="+", required=True, choices=EVENTS, metavar="EVENT", help=", ".join(EVENTS))
    add.add_argument("--description", default="")
    remove = acting_options(webhooks.add_parser("remove", help="delete an endpoint and its deliveries"))
    remove.add_argument("endpoint_id", metavar="ID")
    deliveries = acting_options(webhooks.add_parser("deliveries", help="an endpoint's deliveries, newest first"))
    deliveries.add_argument("endpoint_id", metavar="ID")
    deliveries.add_argument("--status", choices=[s.value for s in DeliveryStatus])
    deliveries.add_argument("--limit", type=_limit, default=20, help="how many, 1 to 100 (default 20)")
    test = acting_options(
        webhooks.add_parser("test", help="send a signed test event now; fails unless it is delivered")
    )
    test.add_argument("endpoint_id", metavar="ID")
    retry = acting_options(webhooks.add_parser("retry", help="queue a failed delivery again"))
    retry.add_argument("delivery_id", metavar="DELIVERY_ID")


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError("must be from 1 to 100")
    return value


def _webhooks(args: argparse.Namespace) -> None:
    from pydantic import ValidationError

    from server.services.errors import InvalidInput, ServiceError
    from server.services.pages import PageQuery
    from server.services.webhooks.subscriptions import DeliveryQuery, WebhookIn, Webhooks

    async def work(companion: Companion, person: Principal) -> Any:
        try:
            return await run(Webhooks(companion.db, companion.box, companion.settings), person)
        except ServiceError as exc:
            raise CliError(str(exc)) from None

    async def run(webhooks: Webhooks, person: Principal) -> Any:
        if args.action == "list":
            page = await webhooks.page(person, PageQuery(per_page=100))
            rows = [e.model_dump(mode="json") for e in page.data]
            if args.json:
                return rows
            for r in rows:
                state = "active" if r["active"] else "paused"
                print(f"{r['id']}  {state:6}  {r['url']}  {','.join(r['events'])}  {r['description'] or '-'}")
            if not rows:
                print("no webhook endpoints")
            return None
        if args.action == "add":
            try:
                body = WebhookIn(url=args.url, events=args.events, description=args.description)
            except ValidationError as exc:
                raise InvalidInput.of(exc) from None
            created = (await webhooks.add(person, body)).model_dump(mode="json")
            if args.json:
                return created
            print(f"Created webhook endpoint {created['id']} for {created['url']} ({', '.join(created['events'])}).")
            print(f"  signing secret: {created['secret']}")
            print("Copy it now: it is not shown again.")
            return None
        if args.action == "remove":
            await webhooks.remove(person, args.endpoint_id)
            print(f"Removed {args.endpoint_id}.")
            return None
        if args.action == "deliveries":
            query = DeliveryQuery(per_page=args.limit, status=args.status)
            deliveries = await webhooks.deliveries(person, args.endpoint_id, query)
            rows = [d.model_dump(mode="json") for d in deliveries.data]
            if args.json:
                return rows
            for r in rows:
                answer = r["last_error"] or (f"HTTP {r['last_status_code']}" if r["last_status_code"] else "-")
                print(
                    f"{r['id']}  {r['status']:9}  {r['event']}  attempts {r['attempts']}  {r['created_at']}  {answer}"
                )
            if not rows:
                print("no deliveries")
            return None
        if args.action == "test":
            delivery = await webhooks.send_test(person, args.endpoint_id)
            if delivery.status is not DeliveryStatus.DELIVERED:
                raise CliError(f"test event not delivered: {delivery.last_error}")
            if args.json:
                return delivery.model_dump(mode="json")
            print(f"Test event {delivery.id} delivered (HTTP {delivery.last_status_code}).")
            return None
        delivery = await webhooks.retry(person, args.delivery_id)
        if args.json:
            return delivery.model_dump(mode="json")
        print(f"Queued {delivery.id} again; the server's worker will send it.")
        return None

    acting(args, work)


HANDLERS: Handlers = {
    ("webhooks", action): _webhooks for action in ("list", "add", "remove", "deliveries", "test", "retry")
}

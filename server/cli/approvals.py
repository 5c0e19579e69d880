"""``companion approvals``: list, approve and deny pending calls (one or several at once), and change a call's
arguments before approving it, acting as a member."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from server.cli.command import CliError, Handlers, Subcommands, acting, acting_options
from store.principal import Principal

if TYPE_CHECKING:
    from server.cli.command import Companion


def add_commands(commands: Subcommands) -> None:
    approvals = commands.add_parser("approvals", help="approvals").add_subparsers(dest="action", required=True)
    approvals_list = acting_options(approvals.add_parser("list", help="approvals the person may decide"))
    approvals_list.add_argument("--status", default="pending")
    approve = acting_options(approvals.add_parser("approve", help="approve pending calls"))
    approve.add_argument("approval_id", metavar="APPROVAL_ID", nargs="+", help="one or several, each decided alone")
    approve.add_argument("--remember", choices=["no", "1h", "30d"], default="no", help="with one approval only")
    deny = acting_options(approvals.add_parser("deny", help="deny pending calls"))
    deny.add_argument("approval_id", metavar="APPROVAL_ID", nargs="+", help="one or several, each decided alone")
    deny.add_argument("--reason")
    edit = acting_options(approvals.add_parser("edit", help="change a pending call's arguments, then approve it"))
    edit.add_argument("approval_id", metavar="APPROVAL_ID")
    edit.add_argument("arguments", metavar="ARGUMENTS", help="the whole set of arguments to run, as a JSON object")


def _approvals_list(args: argparse.Namespace) -> None:
    from sqlalchemy import select

    from server.services.approval_flow import approval_view, approvals_for
    from server.services.asked_by import on_behalf_of
    from store.models import ApprovalStatus, User

    if args.status != "all" and args.status not in {s.value for s in ApprovalStatus}:
        raise CliError(f"status: unknown status {args.status!r}")

    async def work(companion: Companion, person: Principal) -> Any:
        status = None if args.status == "all" else ApprovalStatus(args.status)
        rows = await approvals_for(companion.gateway.flow, person, status)
        views = [approval_view(companion.gateway.flow, companion.registry.tools, a) for a in rows]
        if args.json:
            return views
        async with companion.db.session() as session:
            askers = {a.user_id for a in rows if a.user_id != person.user_id}
            rows_of_askers = await session.execute(select(User.id, User.email).where(User.id.in_(askers)))
            emails = {user_id: email for user_id, email in rows_of_askers}
        for view in views:
            whose = "you" if view["user_id"] == person.user_id else emails.get(view["user_id"], view["user_id"])
            asked = f"{on_behalf_of(view['assistant'], whose)}, " if view["assistant"] else ""
            standing = f", {view['approvers']['words']}" if view["approvers"] else ""
            changed = ", approved with changes" if view["changed"] else ""
            print(
                f"{view['id']}  {view['status']:9}  {view['tool']}  {view['summary']}  "
                f"({asked}expires {view['expires_at']}{standing}{changed})"
            )
        if not views:
            print(f"no {args.status} approvals")
        return None

    acting(args, work)


def _approvals_decide(args: argparse.Namespace) -> None:
    from server.services.approval_batch import decide_many
    from server.services.approval_flow import DecisionRefused, approval_view, decide_elsewhere

    if len(args.approval_id) > 1 and getattr(args, "remember", "no") != "no":
        raise CliError("remember: remembering applies to one approval at a time")

    async def work(companion: Companion, person: Principal) -> Any:
        flow, tools = companion.gateway.flow, companion.registry.tools
        if len(args.approval_id) > 1:
            answers = await decide_many(
                flow,
                tools,
                person,
                args.approval_id,
                approve=args.action == "approve",
                reason=getattr(args, "reason", None),
                via="cli",
            )
            if args.json:
                return [answer.as_dict() for answer in answers]
            for answer in answers:
                print(f"{answer.id}  {'decided' if answer.decided else 'refused'}: {answer.message}")
            if not all(answer.decided for answer in answers):
                raise CliError("approval_id: some were not decided (see above)")
            return None
        try:
            approval = await decide_elsewhere(
                flow,
                tools,
                person,
                args.approval_id[0],
                approve=args.action == "approve",
                via="cli",
                reason=getattr(args, "reason", None),
                remember=getattr(args, "remember", None),
            )
        except DecisionRefused as exc:
            raise CliError(f"approval_id: {exc}") from None
        view = approval_view(flow, tools, approval)
        if args.json:
            return view
        print(f"{view['id']} is {view['status']}: {view['summary']}")
        return None

    acting(args, work)


def _approvals_edit(args: argparse.Namespace) -> None:
    import json

    from server.services.approval_edit import edit_elsewhere
    from server.services.approval_flow import DecisionRefused, approval_view

    try:
        arguments = json.loads(args.arguments)
    except json.JSONDecodeError as exc:
        raise CliError(f"arguments: not valid JSON ({exc.msg})") from None

    async def work(companion: Companion, person: Principal) -> Any:
        flow, tools = companion.gateway.flow, companion.registry.tools
        try:
            approval = await edit_elsewhere(flow, tools, person, args.approval_id, arguments, via="cli")
        except DecisionRefused as exc:
            named = "; ".join(f"{field}: {problem}" for field, problem in exc.fields.items())
            raise CliError(f"arguments: {named}" if named else f"approval_id: {exc}") from None
        view = approval_view(flow, tools, approval)
        if args.json:
            return view
        changed = "; ".join(f"{c['field']} {c['from']!r} → {c['to']!r}" for c in view["changes"])
        print(f"{view['id']} is {view['status']}" + (f" with changes: {changed}" if changed else ""))
        return None

    acting(args, work)


HANDLERS: Handlers = {
    ("approvals", "list"): _approvals_list,
    ("approvals", "approve"): _approvals_decide,
    ("approvals", "deny"): _approvals_decide,
    ("approvals", "edit"): _approvals_edit,
}

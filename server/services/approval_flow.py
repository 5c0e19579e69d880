"""What happens to a call the rules say a person must approve.

The call is bound to an approval (found again when the assistant repeats the
call, created otherwise), and the best channel the client offers asks the
person:

1. form elicitation in the assistant (inline on 2025-11-25 sessions; a
   prompt returned as ``InputRequiredResult`` and answered on the retry on
   2026-07-28), with approve, deny and "remember" (at most 1 hour), only
   through a key its owner marked as used by a person-facing host, and only
   up to the risk the workspace allows: anything else that arrives through
   the assistant's connection is the assistant's own word (SECURITY.md);
2. URL elicitation to the approval page, also for approvals an admin rule
   keeps out of band;
3. otherwise a normal tool result saying approval is required, with the id,
   the page and the expiry; the assistant asks the user, who approves on the
   page or over the API, and the repeated call runs.

An approved call runs once, whatever path reaches it: the approved →
executing step is a conditional UPDATE, the winner runs the adapter and stores
the result, and every other repeat gets that stored result, including a
repeat that a rule (one "remember" created, say) now allows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import String, and_, cast, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from approvals import group, lifecycle
from approvals.audit import Outcome
from approvals.lifecycle import ApprovalError, Binding
from approvals.rulebook import RuleBook
from approvals.rules import ApproverDemand, Decision, Rule, RuleError
from server.services.approval_changes import changes, line
from server.services.call_result import CallResult
from server.services.confirmation import IN_CHAT_REMEMBER, NO_CHANNEL, Answer, Channel, Prompt
from server.services.races import first
from store import assistant_tokens, wakeups
from store.connections import ConnectionView
from store.crypto import SecretBox
from store.db import Database
from store.in_chat_policy import IN_CHAT_REMEMBER_SECONDS, may_approve_in_chat
from store.models import Approval, ApprovalStatus, Membership, User, utcnow
from store.principal import Principal
from tools.registry import RegisteredTool
from tools.summary import full_arguments, render

log = logging.getLogger(__name__)

REMEMBER_FOR = {"1h": timedelta(hours=1), "30d": timedelta(days=30)}
# How often each replica looks for approvals to escalate: escalations are set in minutes.
ESCALATION_SWEEP = 30.0

NOT_REMEMBERED = "Nothing was decided: this call cannot be remembered"
assert REMEMBER_FOR[IN_CHAT_REMEMBER].total_seconds() <= IN_CHAT_REMEMBER_SECONDS


APPROVAL_REQUIRED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "approval_id", "approve_url", "expires_at", "summary"],
    "properties": {
        "status": {"const": "approval_required"},
        "approval_id": {"type": "string"},
        "approve_url": {"type": "string"},
        "expires_at": {"type": "string"},
        "summary": {"type": "string"},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "out_of_band": {"type": "boolean"},
    },
}


def _label(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _remember_conditions(tool: RegisteredTool, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """What a remembered approval keeps constant: the manifest's ``remember`` constraints on the arguments that
    define the call's effect, or by default every required argument as it was."""
    specs = tool.spec.remember
    if specs is None:
        # Every required argument as it was, and every recipient argument as it was (or still absent).
        kept = dict.fromkeys([*tool.spec.input_schema.get("required", []), *(p.split(".")[0] for p in tool.egress)])
        return [
            {"arg": name, "op": "eq", "value": arguments[name]}
            if name in arguments
            else {"arg": name, "op": "exists", "value": False}
            for name in kept
        ]
    conditions: list[dict[str, Any]] = []
    for spec in specs:
        if spec.arg not in arguments:
            conditions.append({"arg": spec.arg, "op": "exists", "value": False})
            continue
        value = arguments[spec.arg]
        if spec.op in ("domain_in", "in") and value == []:
            # An empty list stays empty: approving mail with no Bcc never approves mail with one.
            conditions.append({"arg": spec.arg, "op": "max_length", "value": 0})
        elif spec.op == "domain_in":
            texts = value if isinstance(value, list) else [value]
            # Arguments are canonical here: each is one mailbox whose domain is lower-case ASCII (punycode).
            domains = sorted({str(text).rsplit("@", 1)[-1] for text in texts})
            conditions.append({"arg": spec.arg, "op": "domain_in", "value": domains})
        elif spec.op == "in":
            conditions.append({"arg": spec.arg, "op": "in", "value": value if isinstance(value, list) else [value]})
        elif spec.op == "exists":
            # Which optional fields an update touches, whatever it sets them to.
            conditions.append({"arg": spec.arg, "op": "exists", "value": True})
        elif spec.op == "keys_in" and isinstance(value, dict) and value:
            conditions.append({"arg": spec.arg, "op": "keys_in", "value": sorted(value)})
        else:
            conditions.append({"arg": spec.arg, "op": "eq", "value": value})
    return conditions


def _words(condition: dict[str, Any]) -> str:
    arg, op, value = condition["arg"], condition["op"], condition["value"]
    if op == "exists":
        return f"changing {arg}" if value else f"no {arg}"
    if op == "max_length":
        return f"{arg} empty"
    if op == "domain_in":
        return f"{arg} only at {', '.join(value)}"
    if op == "in":
        return f"{arg} among {', '.join(map(str, value))}"
    if op == "keys_in":
        return f"{arg} changing only {', '.join(value)}"
    return f"{arg} exactly {json.dumps(value, ensure_ascii=True)}"


def remember_scope(tool: RegisteredTool, arguments: dict[str, Any], sender: str) -> str:
    """What "remember" would approve later, in plain words, shown before the click in every channel."""
    conditions = "; ".join(_words(c) for c in _remember_conditions(tool, arguments)) or "any arguments"
    through = f" through {sender}" if sender else ""
    return f"Remembering approves later {tool.spec.title} calls{through} with {conditions}, without asking."


# The approval's id goes with an approved call, so an adapter can send it as the provider's idempotency key.
class Executor(Protocol):
    """Runs an approved call's adapter once, as an allowed call would run; the flow stores what it returns."""

    async def __call__(
        self, principal: Principal, tool: RegisteredTool, arguments: Any, approval: Approval
    ) -> CallResult: ...


class Judge(Protocol):
    """Why the rules as they stand now deny running this approved call on the arguments it holds, or None."""

    async def __call__(self, principal: Principal, approval: Approval, tool: RegisteredTool) -> str | None: ...


class Announcer(Protocol):
    """Tells the approvers of a waiting approval, on their channels, and on those ``insist`` names whether they
    chose them or not (``server.services.notices``)."""

    def __call__(self, approval: Approval, summary: str, app_name: str, *, insist: Iterable[str] = ()) -> None: ...


class Preparer(Protocol):
    """Makes arguments canonical, checks them against the tool's schema and resolves what only the provider
    knows, as for a call; raises InvalidArguments naming each bad field."""

    async def __call__(
        self, principal: Principal, tool: RegisteredTool, connection: ConnectionView, arguments: dict[str, Any]
    ) -> dict[str, Any]: ...


def in_chat_may_decide(principal: Principal, approval: Approval) -> bool:
    """Whether an answer in this assistant's chat may decide ``approval``.

    Everything that arrives through an assistant's connection is the
    assistant's own word unless its key's owner said the host shows forms to
    them and not to the model, and the workspace lets such an answer approve
    a call of this risk. An admin rule may keep the call out of band anyway.
    """
    return (
        principal.person_facing
        and not approval.require_out_of_band
        # An approval a rule gives its own approvers is theirs to decide, out of band, never the asker's in chat.
        and approval.approvers is None
        and not approval.no_self_approval
        and may_approve_in_chat(principal.in_chat_max_risk, approval.risk)
    )


class ApprovalFlow:
    def __init__(
        self,
        db: Database,
        box: SecretBox,
        rulebook: RuleBook,
        *,
        base_url: str,
        ttl: timedelta,
        wait_seconds: float,
        lease: timedelta = timedelta(seconds=30),
        max_pending_per_key: int = 20,
    ) -> None:
        self.db = db
        self.box = box
        self.rulebook = rulebook
        self.base_url = base_url
        self.ttl = ttl
        self.wait_seconds = wait_seconds
        self.lease = lease
        self.max_pending_per_key = max_pending_per_key
        # Told of each new approval, after it is committed (the approver's e-mail), and again when it escalates.
        self.announce: Announcer | None = None
        # How a person's changes to an approval's arguments are made canonical, checked and resolved: the path a
        # call's arguments take (the tool gateway sets it).
        self.prepare: Preparer | None = None
        # The rules' word on an approved call just before it is claimed to run (the tool gateway sets it): a deny
        # rule added since it was approved holds, whatever arguments the assistant's retry was judged on.
        self.judge: Judge | None = None
        # Set when this process starts to shut down (server/asgi.py): a call waiting for a decision then answers
        # that approval is still required instead of holding the shutdown; the approval stays pending in the
        # database, where any replica decides and runs it.
        self.stopped_waiting = asyncio.Event()

    def stop_waiting(self) -> None:
        self.stopped_waiting.set()

    def page_url(self, approval_id: str) -> str:
        return f"{self.base_url}/approvals/{approval_id}"

    async def handle(
        self,
        principal: Principal,
        binding: Binding,
        tool: RegisteredTool,
        arguments: dict[str, Any],
        decision: Decision,
        channel: Channel,
        run: Executor,
        *,
        sender: str = "",
        summary: str | None = None,
    ) -> CallResult:
        """Ask for, or find again, the approval of this call, and take it as far as the channel allows.

        Raises TooManyPending, before anything is stored, when the key has too many approvals waiting.
        """
        approval, created, claimed = await self._approval_for(binding, arguments, decision, channel, sender, summary)
        if created and self.announce is not None:
            self.announce(approval, self.summary(approval, tool, arguments), tool.manifest.name)
        return await self._go_on(principal, approval, claimed, tool, arguments, channel, run)

    async def settle_allowed(
        self, principal: Principal, binding: Binding, tool: RegisteredTool, run: Executor
    ) -> CallResult | None:
        """A call the rules now allow, settled on the approval it already has, if any (else None: run it).

        A person may have approved it with "remember", or a rule been added while it waited: the approval is
        still the unit of execution, so the call runs through it once, and a repeat gets its stored result.
        """
        async with self.db.session() as session:
            # Most allowed calls were never asked about: one read, with nothing to commit, says so.
            if await lifecycle.find_reusable(session, binding, window=self.ttl) is None:
                return None
        async with self.db.transaction() as session:
            found = await lifecycle.find_reusable(session, binding, window=self.ttl)
            if found is None:
                return None
            claimed: bool | None = None
            if found.status is ApprovalStatus.PENDING:
                found = await lifecycle.decide(session, found, approve=True, actor_id=None, via="rule")
            if found.status is ApprovalStatus.APPROVED and found.original_digest is None:
                claimed = await lifecycle.claim(session, found.id, lease=self.lease)
        arguments = lifecycle.arguments_of(self.box, found)
        return await self._go_on(principal, found, claimed, tool, arguments, NO_CHANNEL, run)

    async def _go_on(
        self,
        principal: Principal,
        approval: Approval,
        claimed: bool | None,
        tool: RegisteredTool,
        arguments: dict[str, Any],
        channel: Channel,
        run: Executor,
    ) -> CallResult:
        if claimed is not None or approval.status is ApprovalStatus.APPROVED:
            return await self.execute(principal, approval, tool, run, claimed=claimed)
        status = approval.status
        if status in SETTLED_OR_RUNNING:
            return await self.stored(approval)
        if status is ApprovalStatus.DENIED:
            return self._denied(approval)
        return await self._confirm(principal, approval, tool, arguments, channel, run)

    async def _approval_for(
        self,
        binding: Binding,
        arguments: dict[str, Any],
        decision: Decision,
        channel: Channel,
        sender: str,
        summary: str | None,
    ) -> tuple[Approval, bool, bool | None]:
        """The approval for this exact call: the one already asked for, or a new one (then True); and, if it
        was approved, whether this call claimed its run (None if it was not approved)."""
        async with self.db.transaction() as session:
            await lifecycle.expire_due(session, workspace_id=binding.workspace_id)
            found = await lifecycle.find_reusable(session, binding, window=self.ttl)
            if found is not None:
                if found.status is not ApprovalStatus.APPROVED or found.original_digest is not None:
                    # A changed call was judged here on what the assistant asked, not on what will run: it is
                    # claimed later, once the rules have judged what it holds (``execute``).
                    return found, False, None
                # Claimed in the transaction that found it: one fewer before the call a person approved runs.
                return found, False, await lifecycle.claim(session, found.id, lease=self.lease)
            await lifecycle.one_request_of_key_at_a_time(session, binding.api_key_id)
            demand = decision.approvers
            approvers = await _approvers_at_ask(session, demand, binding, decision) if demand else None
            created = await lifecycle.request(
                session,
                self.box,
                binding,
                arguments,
                ttl=self.ttl,
                reasons=decision.reasons,
                rule_ids=decision.rule_ids,
                require_out_of_band=decision.require_out_of_band,
                admin_may_approve=decision.admin_may_approve,
                channel="form" if channel.form else "url" if channel.url else "result",
                sender=sender,
                summary=summary,
                approvers=approvers,
                no_self_approval=bool(demand and demand.no_self_approval),
                escalate_after=timedelta(minutes=demand.escalate_after_minutes)
                if demand and demand.escalate_after_minutes
                else None,
            )
            # Counted after the INSERT, under the key's lock: a burst of concurrent calls cannot all slip under.
            if (
                await lifecycle.pending_of_key(session, binding.workspace_id, binding.api_key_id)
                > self.max_pending_per_key
            ):
                raise TooManyPending(self.max_pending_per_key)
        return created, True, None

    async def _confirm(
        self,
        principal: Principal,
        approval: Approval,
        tool: RegisteredTool,
        arguments: dict[str, Any],
        channel: Channel,
        run: Executor,
    ) -> CallResult:
        answer = channel.answer if channel.answer and channel.answer.approval_id == approval.id else None
        if answer is not None:
            return await self._apply(principal, approval, tool, arguments, answer, channel, run)
        kind: Literal["form", "url"] | None = None
        if channel.form and in_chat_may_decide(principal, approval):
            kind = "form"
        elif channel.url:
            kind = "url"
        if kind is None:
            return self._required(approval, tool, arguments)
        prompt = await self._prompt(approval, tool, arguments, kind)
        if channel.deferred:
            return CallResult.pending(approval, prompt=prompt)
        assert channel.ask_inline is not None
        reply = await self._ask(channel.ask_inline, prompt, approval)
        if isinstance(reply, Approval):
            return await self._settled_elsewhere(principal, reply, tool, run)
        if reply is None:
            return self._required(approval, tool, arguments)
        return await self._apply(principal, approval, tool, arguments, reply, channel, run)

    async def _ask(
        self, ask: Callable[[Prompt], Awaitable[Answer]], prompt: Prompt, approval: Approval
    ) -> Answer | Approval | None:
        """The person's reply in the assistant; or the approval, if a person decided it in another channel first
        (the prompt is then withdrawn, and the assistant gets that decision at once); or None if this process
        stops waiting first."""
        if self.stopped_waiting.is_set():
            return None
        answered: Awaitable[Answer | Approval] = ask(prompt)
        decided: Awaitable[Answer | Approval] = self._wait(approval, _decided, seconds=math.inf)
        won = await first(self.stopped_waiting, answered, decided)
        return None if won is None else won[1]

    async def _prompt(
        self, approval: Approval, tool: RegisteredTool, arguments: dict[str, Any], kind: Literal["form", "url"]
    ) -> Prompt:
        async with self.db.transaction() as session:
            nonce = await lifecycle.issue_nonce(session, approval)
        summary = self.summary(approval, tool, arguments)
        if kind == "form":
            message = (
                f"{tool.manifest.name} wants to: {summary}\n"
                f"This is a {tool.risk.value} action ({approval.tool}). Approve it once, or deny it.\n"
                f"Full arguments:\n{full_arguments(arguments)}"
            )
            scope = remember_scope(tool, arguments, approval.sender)
            return Prompt(approval.id, nonce, message, kind, self.page_url(approval.id), scope)
        message = f"Approve on the approval page ({tool.manifest.name}, {approval.tool}): {summary}"
        return Prompt(approval.id, nonce, message, kind, self.page_url(approval.id))

    async def _apply(
        self,
        principal: Principal,
        approval: Approval,
        tool: RegisteredTool,
        arguments: dict[str, Any],
        answer: Answer,
        channel: Channel,
        run: Executor,
    ) -> CallResult:
        async with self.db.session() as session:
            approval = await lifecycle.reload(session, approval.id)
        if approval.status is not ApprovalStatus.PENDING:
            # Decided in another channel while the prompt was open: the assistant gets that decision.
            return await self._settled_elsewhere(principal, approval, tool, run)
        if answer.kind == "url":
            # Accepting a URL prompt only means the person opened the page; the decision is made there.
            if answer.action == "accept":
                return await self._after_page(principal, approval, tool, run)
            return self._required(approval, tool, arguments)
        if answer.action == "cancel" or not in_chat_may_decide(principal, approval):
            # A form answer through a key that is not person-facing is the assistant's word: it decides nothing.
            return self._required(approval, tool, arguments)
        approve = answer.action == "accept" and answer.decision == "approve"
        reason = answer.reason if not approve else None
        if answer.action == "decline" and not reason:
            reason = "declined in the assistant"
        rule = None
        if approve and answer.remember in REMEMBER_FOR:
            # In chat, remembering lasts at most an hour whatever the answer claims.
            try:
                rule = self.remembered_rule(approval, tool, arguments, REMEMBER_FOR[IN_CHAT_REMEMBER])
            except RuleError as exc:
                return CallResult.failure(
                    "failed", f"Nothing was decided: this call cannot be remembered: {exc}", approval=approval
                )
        try:
            async with self.db.transaction() as session:
                approval = await lifecycle.decide(
                    session,
                    approval,
                    approve=approve,
                    actor_id=principal.user_id,
                    via="elicitation",
                    reason=reason if isinstance(reason, str) else None,
                    nonce=answer.nonce if channel.deferred else None,
                )
                if rule is not None:
                    await self.keep_remembered(session, principal, approval, rule)
        except ApprovalError as exc:
            async with self.db.session() as session:
                approval = await lifecycle.reload(session, approval.id)
            if approval.status is ApprovalStatus.PENDING:
                # A stale or replayed confirmation, or one that came after the expiry.
                return CallResult.failure("failed", f"Confirmation rejected: {exc}", approval=approval)
            return await self._settled_elsewhere(principal, approval, tool, run)
        if not approve:
            return self._denied(approval)
        return await self.execute(principal, approval, tool, run)

    async def _settled_elsewhere(
        self, principal: Principal, approval: Approval, tool: RegisteredTool, run: Executor
    ) -> CallResult:
        async with self.db.session() as session:
            approval = await lifecycle.reload(session, approval.id)
        if approval.status is ApprovalStatus.APPROVED:
            return await self.execute(principal, approval, tool, run)
        if approval.status is ApprovalStatus.DENIED:
            return self._denied(approval)
        if approval.status in SETTLED_OR_RUNNING:
            return await self.stored(approval)
        if approval.status is ApprovalStatus.PENDING:
            return self._required(approval, tool, lifecycle.arguments_of(self.box, approval))
        return CallResult.failure("failed", f"Approval {approval.id} is {approval.status.value}.", approval=approval)

    async def _after_page(
        self, principal: Principal, approval: Approval, tool: RegisteredTool, run: Executor
    ) -> CallResult:
        """Wait a while for the decision made on the approval page, then act on it."""
        decided = await self._wait(approval, _decided)
        return await self._settled_elsewhere(principal, decided, tool, run)

    def remembered_rule(
        self, approval: Approval, tool: RegisteredTool, arguments: dict[str, Any], span: timedelta
    ) -> Rule:
        """The user rule "remember" creates: this tool, this connection, the arguments that define the effect.

        Built and checked before anything is decided, so a rule that cannot be saved leaves the approval as
        it was (RuleError names the field).
        """
        rule = Rule.model_validate(
            {
                "effect": "allow",
                "scope": "user",
                "app": tool.app,
                "tool": tool.name,
                "conditions": _remember_conditions(tool, arguments),
                "context": {"connection_ids": [approval.connection_id]},
                "expires_at": utcnow() + span,
                "description": _label(
                    f"Remembered when approving {approval.id}: {remember_scope(tool, arguments, approval.sender)}"
                ),
            }
        )
        return self.rulebook.prepared(rule)

    async def keep_remembered(
        self, session: AsyncSession, principal: Principal, approval: Approval, rule: Rule
    ) -> None:
        """Save a remembered rule in the transaction that approves: both commit, or neither does."""
        saved = await self.rulebook.create(session, principal, rule)
        await lifecycle.remember(session, approval, saved.id)

    async def execute(
        self,
        principal: Principal,
        approval: Approval,
        tool: RegisteredTool,
        run: Executor,
        *,
        claimed: bool | None = None,
    ) -> CallResult:
        """Run an approved call once; every other caller gets the stored outcome. ``claimed`` is the outcome of a
        claim the caller already made; without it, this claims."""
        if claimed is None:
            if self.judge is not None and approval.status is ApprovalStatus.APPROVED:
                denied = await self.judge(principal, approval, tool)
                if denied is not None:
                    return CallResult.failure(
                        "denied",
                        f"A rule now denies this call: {denied}. It was approved, but it was not run.",
                        outcome=Outcome.REFUSED,
                        approval=approval,
                    )
            async with self.db.transaction() as session:
                claimed = await lifecycle.claim(session, approval.id, lease=self.lease)
        if not claimed:
            async with self.db.transaction() as session:
                await lifecycle.expire_due(session, workspace_id=approval.workspace_id)
                approval = await lifecycle.reload(session, approval.id)
            if approval.status is ApprovalStatus.EXPIRED:
                return CallResult.failure(
                    "failed", f"Approval {approval.id} expired before the call ran.", approval=approval
                )
            return await self.stored(approval)
        arguments = lifecycle.arguments_of(self.box, approval)
        started = time.perf_counter()
        renewing = asyncio.create_task(self._renew_forever(approval.id))
        try:
            ran = await run(principal, tool, tool.parse_arguments(arguments), approval)
        finally:
            renewing.cancel()
        async with self.db.transaction() as session:
            approval = await lifecycle.finish(
                session,
                self.box,
                approval,
                ok=ran.ok,
                result=ran.data,
                error=ran.message or None,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        if ran.ok:
            return self._told_of_changes(CallResult.succeeded(ran.data, approval=approval), approval)
        return self._told_of_changes(CallResult.failure("failed", ran.message, approval=approval), approval)

    def changes_of(self, approval: Approval) -> list[dict[str, Any]]:
        """What a person changed before approving (field, from, to); empty if they approved the call as asked."""
        original = lifecycle.original_arguments_of(self.box, approval)
        return [] if original is None else changes(original, lifecycle.arguments_of(self.box, approval))

    def _told_of_changes(self, result: CallResult, approval: Approval) -> CallResult:
        """The result of a call a person changed before approving, saying what changed: a line before the text,
        and ``changes`` beside the structured result (no manifest's output schema forbids another property)."""
        changed = self.changes_of(approval)
        if not changed:
            return result
        told = line(changed)
        if result.ok and result.data is not None:
            text = json.dumps(result.data, ensure_ascii=False)
            return replace(result, data={**result.data, "changes": changed}, message=f"{told}.\n{text}")
        return replace(result, message=f"{told}. {result.message}")

    async def _renew_forever(self, approval_id: str) -> None:
        """Keep the claim on a running call alive; if this process dies, the lease lapses and says so."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            async with self.db.transaction() as session:
                await lifecycle.renew(session, approval_id, lease=self.lease)

    async def stored(self, approval: Approval) -> CallResult:
        settled = await self._wait(approval, lambda a: a.status is not ApprovalStatus.EXECUTING)
        if settled.status is ApprovalStatus.EXECUTING:
            return CallResult.failure(
                "failed", f"The approved call {settled.id} is still running; ask again.", approval=settled
            )
        if settled.status is ApprovalStatus.SUCCEEDED:
            result = lifecycle.result_of(self.box, settled)
            if result is None:
                # A person recorded that a call whose server stopped did happen: there is nothing to return.
                message = f"The user recorded that approved call {settled.id} happened; it is not run again."
                return CallResult.failure("failed", message, approval=settled)
            return self._told_of_changes(CallResult.succeeded(result, approval=settled), settled)
        if settled.status is ApprovalStatus.DENIED:
            return self._denied(settled)
        if settled.status is ApprovalStatus.OUTCOME_UNKNOWN:
            return CallResult.failure(
                "failed", unknown_outcome_message(settled, self.page_url(settled.id)), approval=settled
            )
        return self._told_of_changes(
            CallResult.failure("failed", settled.error or f"The approved call {settled.id} failed.", approval=settled),
            settled,
        )

    async def escalate_due(self, tools: Mapping[str, RegisteredTool]) -> list[Approval]:
        """Escalate every approval whose escalation time passed with no decision (the admins added, where its
        rule says so), and tell everyone who may now decide it again: on their own channels, and on those the
        rule names whether they chose them or not. Safe on several replicas at once."""
        async with self.db.transaction() as session:
            escalated = await lifecycle.escalate_due(session)
        if self.announce is not None:
            for approval in escalated:
                tool = tools.get(approval.tool)
                if tool is not None:
                    self.announce(
                        approval,
                        self.summary(approval, tool, lifecycle.arguments_of(self.box, approval)),
                        tool.manifest.name,
                        insist=group.escalation(approval.approvers or {})[1],
                    )
        return escalated

    async def escalate_forever(self, tools: Mapping[str, RegisteredTool], *, every: float = ESCALATION_SWEEP) -> None:
        """Escalate due approvals every ``every`` seconds, as long as the server runs (its lifespan)."""
        while True:
            try:
                await self.escalate_due(tools)
            except Exception:  # a database away for a moment must not end the sweep for good
                log.exception("escalating approvals failed; trying again in %s s", every)
            await asyncio.sleep(every)

    async def _wait(
        self, approval: Approval, done: Callable[[Approval], bool], *, seconds: float | None = None
    ) -> Approval:
        """Re-read the approval whenever it is announced as changed (on any replica), and poll besides.

        Gives up after ``seconds`` (by default the configured wait), or within a poll once the process
        stops waiting (it is shutting down).
        """
        deadline = time.monotonic() + (self.wait_seconds if seconds is None else seconds)
        delay = 0.02
        while True:
            async with self.db.session() as session:
                current = await session.get(Approval, approval.id, populate_existing=True)
            assert current is not None
            if done(current) or time.monotonic() >= deadline or self.stopped_waiting.is_set():
                return current
            if not await wakeups.changed(approval.id, min(delay, max(0.0, deadline - time.monotonic()))):
                delay = min(delay * 2, 0.5)

    def _denied(self, approval: Approval) -> CallResult:
        who = "in the assistant" if approval.decided_via == "elicitation" else f"via {approval.decided_via}"
        because = f": {approval.reason}" if approval.reason else ""
        return CallResult.failure(
            "denied", f"Denied {who}{because}. The call was not run.", outcome=Outcome.REFUSED, approval=approval
        )

    def summary(self, approval: Approval, tool: RegisteredTool, arguments: dict[str, Any]) -> str:
        """What every channel shows: the summary rendered when the call was asked (older approvals: now)."""
        return lifecycle.summary_of(self.box, approval) or render(tool, arguments, None)

    def _required(self, approval: Approval, tool: RegisteredTool, arguments: dict[str, Any]) -> CallResult:
        summary = self.summary(approval, tool, arguments)
        where = (
            "An admin rule requires approval outside the assistant: "
            if approval.require_out_of_band
            else "A person must approve this call before it runs: "
        )
        message = (
            f"{where}{summary}. Ask the user to approve it at {self.page_url(approval.id)} "
            f"(approval {approval.id}, expires {approval.expires_at.isoformat()}). Once approved, call the same "
            "tool again with the same arguments, or call companion_get_approval with the id; it runs once."
        )
        data = {
            "status": "approval_required",
            "approval_id": approval.id,
            "approve_url": self.page_url(approval.id),
            "expires_at": approval.expires_at.isoformat().replace("+00:00", "Z"),
            "summary": summary,
            "reasons": list(approval.reasons or []),
            "out_of_band": approval.require_out_of_band,
        }
        return CallResult.pending(approval, data=data, message=message)


async def _approvers_at_ask(
    session: AsyncSession, demand: ApproverDemand, binding: Binding, decision: Decision
) -> dict[str, Any]:
    """The approval's approvers as the call asks: the members a rule names by e-mail (one who has left the
    workspace is dropped), and the admins as they are now, whom the notices go to."""
    people: dict[str, str] = {}
    if demand.people:
        rows = await session.execute(
            select(User.id, User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.workspace_id == binding.workspace_id, User.email.in_(demand.people))
        )
        found = {email: user_id for user_id, email in rows}
        people = {found[email]: email for email in demand.people if email in found}
    admins = demand.admins or decision.admin_may_approve
    return group.initial(
        demand,
        asker_id=binding.user_id,
        people=people,
        admin_ids=await lifecycle.admins_of(session, binding.workspace_id) if admins else [],
        admin_may_approve=decision.admin_may_approve,
    )


def _decided(approval: Approval) -> bool:
    """Whether a person (or the clock) has settled a pending approval."""
    return approval.status is not ApprovalStatus.PENDING or lifecycle.is_expired(approval)


SETTLED_OR_RUNNING = (
    ApprovalStatus.SUCCEEDED,
    ApprovalStatus.FAILED,
    ApprovalStatus.EXECUTING,
    ApprovalStatus.OUTCOME_UNKNOWN,
)


def unknown_outcome_message(approval: Approval, url: str) -> str:
    return (
        f"The approved call {approval.id} was running when its server stopped, so it may or may not have "
        f"happened in {approval.app}. It will not run again on its own. Ask the user to check, then to choose "
        f"at {url}: run it once more, or record that it happened."
    )


class TooManyPending(Exception):
    """A key already has as many approvals waiting as it may: a flood of requests would bury the real ones."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This key already has {limit} approvals waiting for a person; ask them to decide those first, "
            "or wait for them to expire."
        )


class DecisionRefused(Exception):
    """A person's decision that cannot be applied; ``code`` is not_found, forbidden, conflict, expired or invalid
    (then ``fields`` may name each bad field of changed arguments)."""

    def __init__(self, code: str, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.fields = fields or {}


async def _refuse_an_assistant_deciding_for_itself(
    session: AsyncSession, actor: Principal, approval: Approval, remember: str | None
) -> None:
    """An assistant an admin allowed to decide (the ``approvals`` scope) decides others' calls, never those it
    asked itself, and never writes a rule: "remember" is a person's.

    "Itself" is the client, not one sign-in: the same assistant signed in again, or signed in by another
    person, is still the assistant that asked. (Revoking a sign-in withdraws what it asked; see
    ``server.services.assistants.connected``.)"""
    if not actor.is_assistant_token:
        return
    asked_through = approval.api_key_id
    if asked_through == actor.key_id or (
        asked_through is not None and await assistant_tokens.client_of_grant(session, asked_through) == actor.client_id
    ):
        raise DecisionRefused("forbidden", "An assistant cannot decide a call it asked for itself.")
    if remember in REMEMBER_FOR:
        raise DecisionRefused("forbidden", "An assistant's decision cannot remember; only a person writes rules.")


def visible_to(approval: Approval, actor: Principal) -> bool:
    """Who sees an approval: the person who asked, admins where a rule lets them approve, and where a rule names
    approvers, each of them (and those told of it, or who decided on it). Deciding is narrower (``group``)."""
    if approval.user_id == actor.user_id or (actor.is_admin and approval.admin_may_approve):
        return True
    approvers = approval.approvers
    if approvers is None:
        return False
    voters = {vote.get("user_id") for vote in approvers.get("votes", [])}
    return (
        actor.user_id in group.notified(approvers, approval.user_id)
        or actor.user_id in voters
        or (bool(approvers.get("admins")) and actor.is_admin)
    )


def visible_clause(actor: Principal) -> ColumnElement[bool]:
    """``visible_to`` as a WHERE clause.

    A person is found in the approvers' JSON by their quoted id, which appears there only as one of the people,
    of the admins told, or of the voters (``approvals.group``): exactly those ``visible_to`` admits.
    """
    mine = Approval.user_id == actor.user_id
    approvers = cast(Approval.approvers, String)
    named = approvers.contains(f'"{actor.user_id}"', autoescape=True)
    if actor.is_admin:
        shared = or_(
            mine, Approval.admin_may_approve.is_(True), named, approvers.contains('"admins": true', autoescape=True)
        )
    else:
        shared = or_(mine, named)
    return and_(Approval.workspace_id == actor.workspace_id, shared)


# The most approvals one listing shows, newest first.
LISTED = 200


async def approvals_for(
    flow: ApprovalFlow, actor: Principal, status: ApprovalStatus | tuple[ApprovalStatus, ...] | None
) -> list[Approval]:
    """The approvals ``actor`` may see (``visible_to``), newest first, after marking the expired ones."""
    query = select(Approval).where(visible_clause(actor))
    if status is not None:
        query = query.where(Approval.status.in_(status if isinstance(status, tuple) else (status,)))
    async with flow.db.transaction() as session:
        await lifecycle.expire_due(session, workspace_id=actor.workspace_id)
        found = await session.scalars(query.order_by(Approval.created_at.desc()).limit(LISTED))
        return [approval for approval in found if visible_to(approval, actor)]


async def _as_it_stands(session: AsyncSession, actor: Principal, approval_id: str) -> Approval:
    """The approval once due ones are settled, so a decision never lands on one whose time is up."""
    await lifecycle.expire_due(session, workspace_id=actor.workspace_id)
    return await lifecycle.get(session, actor.workspace_id, approval_id)


async def decide_elsewhere(
    flow: ApprovalFlow,
    tools: dict[str, RegisteredTool],
    actor: Principal,
    approval_id: str,
    *,
    approve: bool,
    via: str,
    reason: str | None = None,
    remember: str | None = None,
) -> Approval:
    """A decision made on the approval page, over the API or in the CLI, by a person.

    With ``remember``, the rule is built and checked first, and saved in the
    transaction that approves: the two commit together or not at all.
    """
    try:
        async with flow.db.transaction() as session:
            approval = await _as_it_stands(session, actor, approval_id)
            if not visible_to(approval, actor):
                if actor.is_admin:
                    raise DecisionRefused("forbidden", "Only the user who asked can decide this approval")
                raise DecisionRefused("not_found", f"No approval {approval_id} in this workspace")
            await _refuse_an_assistant_deciding_for_itself(session, actor, approval, remember)
            if approval.approvers is not None:
                # A rule names the approvers: this is one vote among theirs, and remembers nothing.
                return await lifecycle.vote(
                    session,
                    approval,
                    actor_id=actor.user_id,
                    actor_email=actor.email,
                    actor_is_admin=actor.is_admin,
                    approve=approve,
                    via=via,
                    reason=reason,
                )
            rule = None
            tool = tools.get(approval.tool)
            if approve and remember in REMEMBER_FOR and tool is not None and approval.user_id == actor.user_id:
                arguments = lifecycle.arguments_of(flow.box, approval)
                try:
                    rule = flow.remembered_rule(approval, tool, arguments, REMEMBER_FOR[remember])
                except RuleError as exc:
                    raise DecisionRefused("invalid", f"{NOT_REMEMBERED}: {exc}") from None
            approval = await lifecycle.decide(
                session, approval, approve=approve, actor_id=actor.user_id, via=via, reason=reason
            )
            if rule is not None:
                await flow.keep_remembered(session, actor, approval, rule)
    except ApprovalError as exc:
        raise DecisionRefused(exc.code, str(exc)) from None
    return approval


async def resolve_elsewhere(
    flow: ApprovalFlow, actor: Principal, approval_id: str, *, run_again: bool, via: str
) -> Approval:
    """The person who asked settles a call whose outcome is unknown (in the inbox or over the API)."""
    try:
        async with flow.db.transaction() as session:
            approval = await _as_it_stands(session, actor, approval_id)
            if not visible_to(approval, actor):
                raise DecisionRefused("not_found", f"No approval {approval_id} in this workspace")
            await _refuse_an_assistant_deciding_for_itself(session, actor, approval, None)
            return await lifecycle.resolve_unknown(
                session, approval, run_again=run_again, actor_id=actor.user_id, via=via, ttl=flow.ttl
            )
    except ApprovalError as exc:
        raise DecisionRefused(exc.code, str(exc)) from None


async def cancel_request(flow: ApprovalFlow, actor: Principal, approval_id: str) -> Approval:
    """The person who asked withdraws a pending request."""
    try:
        async with flow.db.transaction() as session:
            approval = await lifecycle.get(session, actor.workspace_id, approval_id)
            if approval.user_id != actor.user_id:
                raise DecisionRefused("not_found", f"No approval {approval_id} in this workspace")
            return await lifecycle.cancel(session, approval, actor_id=actor.user_id)
    except ApprovalError as exc:
        raise DecisionRefused(exc.code, str(exc)) from None


def approval_view(flow: ApprovalFlow, tools: dict[str, RegisteredTool], approval: Approval) -> dict[str, Any]:
    """An approval as people see it: what will happen, in plain words and in full."""
    tool = tools.get(approval.tool)
    arguments = lifecycle.arguments_of(flow.box, approval)
    return {
        "id": approval.id,
        "status": "expired" if lifecycle.is_expired(approval) else approval.status.value,
        "app": approval.app,
        "app_name": tool.manifest.name if tool else approval.app,
        "tool": approval.tool,
        "risk": approval.risk,
        "summary": flow.summary(approval, tool, arguments) if tool else approval.tool,
        "sender": approval.sender,
        "remember_scope": remember_scope(tool, arguments, approval.sender) if tool else None,
        "full_arguments": full_arguments(arguments),
        "arguments": arguments,
        "reasons": list(approval.reasons or []),
        "rule_ids": list(approval.rule_ids or []),
        "require_out_of_band": approval.require_out_of_band,
        "user_id": approval.user_id,
        "assistant": approval.assistant,
        "connection_id": approval.connection_id,
        "created_at": approval.created_at.isoformat(),
        "expires_at": approval.expires_at.isoformat(),
        "decided_at": approval.decided_at.isoformat() if approval.decided_at else None,
        "decided_by": approval.decided_by,
        "decided_via": approval.decided_via,
        "reason": approval.reason,
        "remember_rule_id": approval.remember_rule_id,
        "result": lifecycle.result_of(flow.box, approval),
        "error": approval.error,
        "approve_url": flow.page_url(approval.id),
        "changed": approval.original_digest is not None,
        "changes": flow.changes_of(approval),
        "original_arguments": lifecycle.original_arguments_of(flow.box, approval),
        "edited_by": approval.edited_by,
        "approvers": approvers_view(approval),
    }


def approvers_view(approval: Approval) -> dict[str, Any] | None:
    """Who must approve, as people read it: "1 of 2 approvals", who is asked, and who has decided."""
    approvers = approval.approvers
    if approvers is None:
        return None
    votes = approvers.get("votes", [])
    standing = group.tally(
        approvers,
        [(vote["user_id"], vote["approve"]) for vote in votes],
        asker_id=approval.user_id,
        no_self_approval=approval.no_self_approval,
    )
    names = approvers.get("names", {})
    to_admins, by = group.escalation(approvers)
    return {
        "words": standing.words,
        "given": standing.given,
        "needed": standing.needed,
        "owner_needed": standing.owner_needed and not standing.owner_given,
        "people": [names.get(user_id, user_id) for user_id in approvers.get("people", [])],
        "admins": bool(approvers.get("admins")),
        "no_self_approval": approval.no_self_approval,
        "votes": [{"email": vote.get("email", ""), "approve": vote["approve"], "at": vote["at"]} for vote in votes],
        "escalate_at": approval.escalate_at.isoformat() if approval.escalate_at else None,
        "escalated_at": approval.escalated_at.isoformat() if approval.escalated_at else None,
        "escalate_to": "admins" if approval.escalate_at and to_admins else None,
        "escalate_by": list(by) if approval.escalate_at else [],
    }

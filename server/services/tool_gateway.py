"""The path of one tool call, independent of the protocol that carried it.

resolve the tool → validate the arguments → decide → (confirm) → execute once → audit.

The MCP endpoint is a thin translation onto this module, so every way of
calling a tool passes the same checks in the same order.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, replace
from datetime import UTC, timedelta
from typing import Any

import httpx

from approvals import caps, lifecycle
from approvals.audit import AuditLog, AuditRecord, Outcome
from approvals.digest import arguments_digest, loose_digest
from approvals.lifecycle import ApprovalError, Binding
from approvals.rulebook import RuleBook
from approvals.rules import CallFacts, Catalog, Decision, Effect, ToolInfo
from server.observability.metrics import Metrics
from server.services.approval_changes import line
from server.services.approval_flow import APPROVAL_REQUIRED_SCHEMA, SETTLED_OR_RUNNING, ApprovalFlow, TooManyPending
from server.services.call_result import CallResult
from server.services.confirmation import NO_CHANNEL, Channel
from store.cache import SharedCache
from store.connections import ConnectionView, open_credentials, usable_connections
from store.crypto import SecretBox
from store.db import Database
from store.invalidation import Topic, subscribe
from store.models import Approval, ApprovalStatus, ConnectionStatus, utcnow
from store.principal import Principal
from store.rate_windows import CallTally
from store.sealing import audit_arguments_context
from tools.context import HostCheck, ToolContext
from tools.errors import InvalidArguments, ToolError
from tools.manifest import Risk
from tools.registry import RegisteredTool, Registry
from tools.summary import escape, render
from tools.tokens import TokenKeeper

log = logging.getLogger(__name__)

NOT_DECIDED = "none"
UNKNOWN_TOOL = "unknown_tool"
GET_APPROVAL = "companion_get_approval"
COMPANION_APP = "companion"
RUNNABLE_OR_RUN = (ApprovalStatus.APPROVED, *SETTLED_OR_RUNNING)
ASKED_MARGIN = timedelta(hours=1)

GET_APPROVAL_INPUT: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["approval_id"],
    "properties": {"approval_id": {"type": "string", "minLength": 1, "maxLength": 64}},
}
GET_APPROVAL_OUTPUT: dict[str, Any] = {
    "type": "object",
    "required": ["approval_id", "status", "tool", "summary", "expires_at"],
    "properties": {
        "approval_id": {"type": "string"},
        "status": {"type": "string"},
        "tool": {"type": "string"},
        "summary": {"type": "string"},
        "expires_at": {"type": "string"},
        "approve_url": {"type": "string"},
        "decided_via": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "result": {"type": ["object", "null"]},
        "error": {"type": ["string", "null"]},
        # Set when a person changed the arguments before approving: what the assistant asked, what runs instead.
        "changes": {"type": "array", "items": {"type": "object"}},
    },
}


@dataclass(frozen=True)
class BoundTool:
    """A registered tool offered through one of the caller's connections."""

    name: str
    tool: RegisteredTool
    connection: ConnectionView

    @property
    def description(self) -> str:
        if self.name == self.tool.name:
            return self.tool.spec.description
        return f"{self.tool.spec.description} (through the connection {self.connection.label or self.connection.id})"

    @property
    def output_schema(self) -> dict[str, Any]:
        # Any call may turn out to need a person's approval, so the contract says so.
        return {"type": "object", "anyOf": [self.tool.spec.output_schema, APPROVAL_REQUIRED_SCHEMA]}


def _suffix(connection: ConnectionView) -> str:
    label = re.sub(r"[^a-z0-9]+", "_", connection.label.lower()).strip("_")
    return label[:20] or connection.id.split("_")[-1][:8]


def _needs_reauth(tool: RegisteredTool) -> str:
    return f"The {tool.manifest.name} connection needs to be reconnected before its tools can run."


def sender_of(bound: BoundTool) -> str:
    """The connection a call acts through, in plain words: whose it is, the app and its label."""
    connection = bound.connection
    whose = "your personal" if connection.scope.value == "personal" else "the workspace's"
    label = f" “{escape(connection.label)}”" if connection.label else ""
    account = f", as {escape(connection.account)}" if connection.account else ""
    return f"{whose} {bound.tool.manifest.name} connection{label}{account}"


def call_facts(
    tool: RegisteredTool,
    connection: ConnectionView,
    arguments: dict[str, Any],
    *,
    workspace_id: str,
    user_id: str,
    role: str,
    timezone: str,
) -> CallFacts:
    """What the rules decide on, from canonical arguments (the same values the adapter will be given), for a call
    made in the name of ``user_id``: an assistant's call as it asks, and a person's edit of it before approving."""
    return CallFacts(
        workspace_id=workspace_id,
        user_id=user_id,
        role=role,
        app=tool.app,
        tool=tool.name,
        risk=tool.risk.value,
        connection_scope=connection.scope.value,
        arguments=arguments,
        now=utcnow(),
        timezone=timezone,
        connection_id=connection.id,
        recipients=tool.recipients(arguments),
    )


def catalog_of(registry: Registry) -> Catalog:
    return {
        name: ToolInfo(t.app, t.risk.value, t.spec.input_schema, egress=t.egress, canonical=t.canonical_value)
        for name, t in registry.tools.items()
    }


@dataclass
class TimedRunner:
    """The flow's executor: an approved call runs as an allowed one does, as the account it was asked as.

    It adds up the time the execution took, so the gateway can tell the flow's
    own time (the approval wait) from the adapter's.
    """

    gateway: ToolGateway
    connection: ConnectionView
    seconds: float = 0.0

    async def __call__(
        self, principal: Principal, tool: RegisteredTool, arguments: Any, approval: Approval
    ) -> CallResult:
        if approval.account != self.connection.account:
            # Re-authenticated as someone else since the person approved: it must not send as them.
            return CallResult.failure(
                "account_changed",
                f"The {tool.manifest.name} connection acts as another account than when this call was approved; "
                "ask again.",
            )
        started = time.perf_counter()
        try:
            return await self.gateway.run_adapter(principal, tool, self.connection, arguments, approval_id=approval.id)
        finally:
            self.seconds += time.perf_counter() - started


class ToolGateway:
    def __init__(
        self,
        registry: Registry,
        db: Database,
        box: SecretBox,
        http: httpx.AsyncClient,
        audit: AuditLog,
        rulebook: RuleBook,
        flow: ApprovalFlow,
        keeper: TokenKeeper,
        *,
        cache_seconds: float = 0,
        metrics: Metrics | None = None,
        hosts: HostCheck | None = None,
    ) -> None:
        self.hosts = hosts
        self.tally = CallTally(db)
        self.keeper = keeper
        self.metrics = metrics or Metrics()
        self.registry = registry
        self.db = db
        self.box = box
        self.http = http
        self.audit = audit
        self.rulebook = rulebook
        self.flow = flow
        self._connections: SharedCache[tuple[str, str], list[ConnectionView]] = SharedCache(cache_seconds)
        # A person's changes to an approval's arguments are prepared as a call's are.
        flow.prepare = self.prepare
        flow.judge = self.still_denies
        subscribe(self)

    async def still_denies(self, principal: Principal, approval: Approval, tool: RegisteredTool) -> str | None:
        """Why the rules, as they stand now, deny the call an approval holds (its arguments, its connection)."""
        connection = next(
            (c for c in await self._usable_connections(principal) if c.id == approval.connection_id), None
        )
        if connection is None:
            return "its connection is no longer there"
        bound = BoundTool(name=tool.name, tool=tool, connection=connection)
        decision = await self.decide(principal, bound, lifecycle.arguments_of(self.box, approval))
        if decision.effect is not Effect.DENY:
            return None
        return decision.reasons[0] if decision.reasons else "a rule denies it"

    async def _usable_connections(self, principal: Principal) -> list[ConnectionView]:
        # An assistant lists tools and then calls them in quick succession; one
        # lookup serves the burst, and a change on any replica clears it (forget).
        async def lookup() -> list[ConnectionView]:
            async with self.db.session() as session:
                return await usable_connections(session, principal)

        return await self._connections.get((principal.workspace_id, principal.user_id), lookup)

    def forget(self, topic: Topic) -> None:
        """Drop the cached connection lists when a connection, a key or a role changed on any replica."""
        if topic in (Topic.CONNECTIONS, Topic.KEYS):
            self._connections.clear()

    async def tools_for(self, principal: Principal) -> list[BoundTool]:
        """The tools of every connection the principal may use.

        When a principal can use several connections of one app, the first
        keeps the plain tool names and the others are suffixed with their
        label, so no connection silently hides another.
        """
        connections = await self._usable_connections(principal)
        bound: list[BoundTool] = []
        apps_seen: set[str] = set()
        for connection in connections:
            tools = self.registry.tools_of(connection.app)
            first = connection.app not in apps_seen
            apps_seen.add(connection.app)
            for tool in tools:
                name = tool.name if first else f"{tool.name}__{_suffix(connection)}"
                bound.append(BoundTool(name=name, tool=tool, connection=connection))
        return bound

    async def decide(self, principal: Principal, bound: BoundTool, arguments: dict[str, Any]) -> Decision:
        index = await self.rulebook.index_for(principal.workspace_id)
        facts = call_facts(
            bound.tool,
            bound.connection,
            arguments,
            workspace_id=principal.workspace_id,
            user_id=principal.user_id,
            role=principal.role.value,
            timezone=principal.timezone,
        )
        return index.decide(facts)

    async def call(
        self, principal: Principal, name: str, arguments: dict[str, Any] | None, channel: Channel = NO_CHANNEL
    ) -> CallResult:
        started = time.perf_counter()
        arguments = arguments or {}
        if name == GET_APPROVAL:
            return await self._get_approval_call(principal, arguments, started)
        # Authorization: the caller may call only the tools of connections it may use.
        with self.metrics.phase("auth"):
            bound = next((b for b in await self.tools_for(principal) if b.name == name), None)
        if bound is None:
            result = CallResult.failure(
                UNKNOWN_TOOL, f"Unknown tool {name!r}: it is not among your tools.", outcome=Outcome.INVALID
            )
            await self._audit(principal, None, name, loose_digest(arguments), None, result, started)
            return result
        refused = await self._over_rate(principal)
        if refused is not None:
            await self._audit(principal, bound, name, loose_digest(arguments), None, refused, started)
            return refused
        try:
            arguments, parsed = await self._prepared(principal, bound, arguments)
        except InvalidArguments as exc:
            result = CallResult.failure(exc.code, str(exc), outcome=Outcome.INVALID, fields=exc.fields)
            await self._audit(principal, bound, name, loose_digest(arguments), None, result, started)
            return result
        except ToolError as exc:
            result = CallResult.failure(exc.code, str(exc))
            await self._audit(principal, bound, name, loose_digest(arguments), None, result, started)
            return result
        digest = arguments_digest(arguments)
        try:
            return await self._decide_and_run(principal, bound, name, arguments, parsed, digest, channel, started)
        except Exception:
            # Whatever went wrong, the call is refused and the audit log says so.
            log.exception("tool call %r failed inside Companion", name[:128])
            result = CallResult.failure("server_error", f"{bound.tool.spec.title} failed inside Companion.")
            await self._audit(principal, bound, name, digest, None, result, started, arguments)
            return result

    async def _prepared(
        self, principal: Principal, bound: BoundTool, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any], Any]:
        """The arguments in canonical form, valid and resolved, and typed for the adapter; InvalidArguments names
        each bad field, ToolError says why the provider could not resolve one."""
        # What the rules decide on, the person sees and the adapter runs is this canonical form, nothing else.
        arguments = bound.tool.canonicalize(arguments)
        parsed = bound.tool.parse_arguments(arguments)
        if bound.tool.resolvers:
            arguments = await self._resolved(principal, bound, arguments)
            parsed = bound.tool.parse_arguments(arguments)
        return arguments, parsed

    async def prepare(
        self, principal: Principal, tool: RegisteredTool, connection: ConnectionView, arguments: dict[str, Any]
    ) -> dict[str, Any]:
        """A person's changed arguments for an approval, through the very path a call's arguments take, so what
        they approve is digested, decided on, shown and run in the one canonical form (the approval flow's
        ``prepare``)."""
        prepared, _ = await self._prepared(principal, BoundTool(tool.name, tool, connection), arguments)
        return prepared

    async def _over_rate(self, principal: Principal) -> CallResult | None:
        """Count the call against the key's plan rate (the REST counters); the refusal once it is over."""
        counted = await self.tally.take(principal)
        if not counted.over:
            return None
        return CallResult.failure(
            "rate_limited",
            f"This key may make {counted.limit} requests a minute; try again in {counted.retry_after} s.",
            outcome=Outcome.REFUSED,
            retry_after=counted.retry_after,
        )

    async def _get_approval_call(self, principal: Principal, arguments: dict[str, Any], started: float) -> CallResult:
        """companion_get_approval, counted and audited like any call: it may run an approved call."""
        result = await self._over_rate(principal)
        if result is None:
            result = await self.get_approval(principal, arguments)
        self.metrics.call_answered(COMPANION_APP, GET_APPROVAL, NOT_DECIDED, result.outcome)
        if not result.ok:
            await self._audit(principal, None, GET_APPROVAL, loose_digest(arguments), None, result, started)
        return result

    async def _decide_and_run(
        self,
        principal: Principal,
        bound: BoundTool,
        name: str,
        arguments: dict[str, Any],
        parsed: Any,
        digest: str,
        channel: Channel,
        started: float,
    ) -> CallResult:
        with self.metrics.phase("decision"):
            decision = await self.decide(principal, bound, arguments)
            if decision.effect is Effect.ALLOW and decision.caps:
                full = await caps.charge(self.db, decision.caps, principal.user_id)
                if full is not None:
                    decision = replace(decision, effect=Effect.ASK, reasons=(*decision.reasons, caps.describe(full)))
        if decision.effect is Effect.DENY:
            result = CallResult.failure(
                "denied", f"{bound.tool.spec.title} is not allowed: {decision.reasons[0]}.", outcome=Outcome.REFUSED
            )
            await self._audit(principal, bound, name, digest, decision, result, started, arguments)
            return result
        if decision.effect is Effect.ASK:
            if bound.connection.scope.value == "personal" and (decision.admin_may_approve or decision.approvers):
                # A personal connection answers to its owner: no workspace admin decides its calls, and the
                # approvers a rule names decide them only beside the owner.
                owner = replace(decision.approvers, owner=True) if decision.approvers else None
                decision = replace(decision, admin_may_approve=False, approvers=owner)
            return await self._ask(principal, bound, name, arguments, digest, decision, channel, started)
        if (bound.tool.risk is not Risk.READ or decision.rules) and self._may_have_asked(principal):
            # A call that was asked for before may have an approval already (approved with "remember", say):
            # then it runs through that approval, once, and a repeat gets its stored result.
            run = self._runner(bound.connection)
            settled = await self.flow.settle_allowed(
                principal, self._binding(principal, bound, digest), bound.tool, run
            )
            if settled is not None:
                await self._audit(principal, bound, name, digest, decision, settled, started, arguments)
                return settled
        result = await self.run_adapter(principal, bound.tool, bound.connection, parsed)
        await self._audit(principal, bound, name, digest, decision, result, started, arguments)
        return result

    def _may_have_asked(self, principal: Principal) -> bool:
        """Whether an approval asked through this key could still answer a call: one asked less than two
        expiry periods ago (and an hour for a long run), the longest a settled approval answers repeats."""
        asked = principal.last_asked_at
        if asked is None:
            return False
        if asked.tzinfo is None:
            asked = asked.replace(tzinfo=UTC)
        return utcnow() - asked < 2 * self.flow.ttl + ASKED_MARGIN

    @staticmethod
    def _binding(principal: Principal, bound: BoundTool, digest: str) -> Binding:
        return Binding(
            workspace_id=principal.workspace_id,
            user_id=principal.user_id,
            api_key_id=principal.key_id,
            connection_id=bound.connection.id,
            app=bound.tool.app,
            tool=bound.tool.name,
            risk=bound.tool.risk.value,
            args_digest=digest,
            account=bound.connection.account,
            assistant=principal.assistant,
        )

    async def _ask(
        self,
        principal: Principal,
        bound: BoundTool,
        name: str,
        arguments: dict[str, Any],
        digest: str,
        decision: Decision,
        channel: Channel,
        started: float,
    ) -> CallResult:
        binding = self._binding(principal, bound, digest)
        run = self._runner(bound.connection)
        with self.metrics.phase("approval_wait") as wait:
            try:
                result = await self.flow.handle(
                    principal,
                    binding,
                    bound.tool,
                    arguments,
                    decision,
                    channel,
                    run,
                    sender=sender_of(bound),
                    summary=render(bound.tool, arguments, bound.connection),
                )
            except TooManyPending as exc:
                result = CallResult.failure("too_many_pending", str(exc), outcome=Outcome.REFUSED)
                await self._audit(principal, bound, name, digest, decision, result, started, arguments)
                return result
            # An approved call runs inside the flow; its adapter time is a phase of its own.
            wait.exclude(run.seconds)
        await self._audit(principal, bound, name, digest, decision, result, started, arguments)
        return result

    async def get_approval(self, principal: Principal, arguments: dict[str, Any]) -> CallResult:
        """The built-in companion_get_approval: an approval's state, running it once if approved."""
        approval_id = arguments.get("approval_id")
        if not isinstance(approval_id, str) or not 0 < len(approval_id) <= 64 or set(arguments) != {"approval_id"}:
            return CallResult.failure(
                "invalid_arguments",
                "Invalid arguments: approval_id: an approval's id is required, and nothing else",
                outcome=Outcome.REFUSED,
            )
        try:
            async with self.db.transaction() as session:
                await lifecycle.expire_due(session, workspace_id=principal.workspace_id)
                approval = await lifecycle.get(session, principal.workspace_id, approval_id)
        except ApprovalError as exc:
            return CallResult.failure(exc.code, str(exc), outcome=Outcome.REFUSED)
        if approval.user_id != principal.user_id or approval.api_key_id != principal.key_id:
            # An approval answers to the key that asked: another assistant of the same person cannot run it.
            return CallResult.failure(
                "not_found", f"No approval {approval_id} in this workspace", outcome=Outcome.REFUSED
            )
        tool = self.registry.tools.get(approval.tool)
        connection = next(
            (c for c in await self._usable_connections(principal) if c.id == approval.connection_id), None
        )
        if tool is None or connection is None:
            return CallResult.failure(
                "not_found", f"The tool or connection of {approval_id} is gone", outcome=Outcome.REFUSED
            )
        arguments_of_call = lifecycle.arguments_of(self.box, approval)
        data: dict[str, Any] = {
            "approval_id": approval.id,
            "status": approval.status.value,
            "tool": approval.tool,
            "summary": self.flow.summary(approval, tool, arguments_of_call),
            "expires_at": approval.expires_at.isoformat().replace("+00:00", "Z"),
            "approve_url": self.flow.page_url(approval.id),
            "decided_via": approval.decided_via,
            "reason": approval.reason,
            "result": None,
            "error": None,
        }
        if approval.status in RUNNABLE_OR_RUN:
            if approval.status is ApprovalStatus.APPROVED:
                settled = await self.flow.execute(principal, approval, tool, self._runner(connection))
            else:
                settled = await self.flow.stored(approval)
            assert settled.approval is not None  # the flow answers for this approval
            data.update(status=settled.approval.status.value, result=settled.data, error=settled.message or None)
        changed = self.flow.changes_of(approval)
        if changed:
            data["changes"] = changed
            told = f"{line(changed)}.\n{json.dumps(data, ensure_ascii=False)}"
            return replace(CallResult.succeeded(data), message=told)
        return CallResult.succeeded(data)

    async def _resolved(self, principal: Principal, bound: BoundTool, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments with what only the provider knows resolved (a Slack channel id to its name), so the
        rules decide on the value that runs; the provider is asked with the connection the call would use."""
        if bound.connection.status is ConnectionStatus.NEEDS_REAUTH:
            raise ToolError(_needs_reauth(bound.tool), code="needs_reauth")
        with self.metrics.phase("resolve"):
            return await bound.tool.resolve(self._context(principal, bound.tool, bound.connection), arguments)

    def _context(
        self, principal: Principal, tool: RegisteredTool, connection: ConnectionView, approval_id: str | None = None
    ) -> ToolContext:
        return ToolContext(
            principal=principal,
            connection=connection,
            sessions=self.db.sessions,
            http=self.http,
            credentials=open_credentials(self.box, connection),
            manifest=tool.manifest,
            keeper=self.keeper,
            approval_id=approval_id,
            hosts=self.hosts,
        )

    def _runner(self, connection: ConnectionView) -> TimedRunner:
        return TimedRunner(self, connection)

    async def run_adapter(
        self,
        principal: Principal,
        tool: RegisteredTool,
        connection: ConnectionView,
        arguments: Any,
        *,
        approval_id: str | None = None,
    ) -> CallResult:
        if connection.status is ConnectionStatus.NEEDS_REAUTH:
            return CallResult.failure("needs_reauth", _needs_reauth(tool))
        context = self._context(principal, tool, connection, approval_id)
        try:
            with self.metrics.phase("adapter"):
                data = await tool.adapter(context, arguments)
        except ToolError as exc:
            return CallResult.failure(exc.code, str(exc))
        except Exception:
            log.exception("adapter %s failed", tool.spec.adapter)
            return CallResult.failure("server_error", f"{tool.spec.title} failed inside Companion.")
        problems = tool.output_problems(data)
        if problems:
            log.error("adapter %s returned a result outside its output schema: %s", tool.spec.adapter, problems)
            return CallResult.failure("server_error", f"{tool.spec.title} returned a malformed result.")
        return CallResult.succeeded(data)

    async def _audit(
        self,
        principal: Principal,
        bound: BoundTool | None,
        name: str,
        digest: str,
        decision: Decision | None,
        result: CallResult,
        started: float,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        outcome = result.outcome
        approval_id = result.approval.id if result.approval is not None else None
        decided = decision.effect.value if decision else NOT_DECIDED
        app = bound.tool.app if bound else ""
        duration_ms = (time.perf_counter() - started) * 1000
        # Labels name a bound tool by its base name and an unknown one not at all, so they stay few whatever is called.
        self.metrics.call_answered(app or UNKNOWN_TOOL, bound.tool.name if bound else UNKNOWN_TOOL, decided, outcome)
        log.info(
            "tool call %r: %s, %s",
            name[:128],
            decided,
            outcome,
            extra={
                "app": app,
                "tool": name[:128],
                "decision": decided,
                "outcome": str(outcome),
                "error": None if result.ok else result.error_code,
                "approval_id": approval_id,
                "duration_ms": round(duration_ms, 3),
                # Which key or OAuth grant called, and the assistant by name, so a person can find its calls.
                "key_id": principal.key_id,
                "assistant": principal.assistant,
            },
        )
        with self.metrics.phase("audit"):
            record = AuditRecord(
                workspace_id=principal.workspace_id,
                user_id=principal.user_id,
                api_key_id=principal.key_id,
                connection_id=bound.connection.id if bound else None,
                approval_id=approval_id,
                app=app,
                tool=name[:128],
                risk=bound.tool.risk.value if bound else None,
                role=principal.role.value,
                connection_scope=bound.connection.scope.value if bound else None,
                args_digest=digest,
                decision=decided,
                reasons=decision.reasons if decision else (),
                rule_ids=decision.rule_ids if decision else (),
                outcome=outcome,
                error=None if result.ok else result.error_code,
                duration_ms=duration_ms,
                sealed_arguments=self.box.seal_json(arguments, context=audit_arguments_context(digest))
                if arguments is not None and bound is not None
                else None,
                assistant=principal.assistant or None,
            )
            self.audit.append(record)

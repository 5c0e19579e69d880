"""The path of one tool call, independent of the protocol that carried it.

resolve the tool → validate the arguments → decide → (confirm) → execute once → audit.

The MCP endpoint is a thin translation onto this module, so every way of
calling a tool passes the same checks in the same order.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from cachetools import TTLCache

from approvals.audit import AuditLog, AuditRecord, Outcome
from approvals.decision import CallFacts, Decision, Effect, decide
from approvals.digest import arguments_digest
from store.connections import ConnectionView, open_credentials, usable_connections
from store.crypto import SecretBox
from store.db import Database
from store.models import ConnectionStatus
from store.principal import Principal
from tools.context import ToolContext
from tools.errors import InvalidArguments, ToolError
from tools.manifest import Risk
from tools.registry import RegisteredTool, Registry

log = logging.getLogger(__name__)

NOT_DECIDED = "none"
UNKNOWN_TOOL = "unknown_tool"


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


@dataclass(frozen=True)
class CallResult:
    """What a call produced: structured data, or an error a person or model can act on."""

    ok: bool
    data: dict[str, Any] | None = None
    error_code: str | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failure(cls, code: str, message: str, **details: Any) -> CallResult:
        return cls(ok=False, error_code=code, message=message, details=details)


def _suffix(connection: ConnectionView) -> str:
    label = re.sub(r"[^a-z0-9]+", "_", connection.label.lower()).strip("_")
    return label[:20] or connection.id.split("_")[-1][:8]


class ToolGateway:
    def __init__(
        self,
        registry: Registry,
        db: Database,
        box: SecretBox,
        http: httpx.AsyncClient,
        audit: AuditLog,
        *,
        cache_seconds: float = 0,
    ) -> None:
        self.registry = registry
        self.db = db
        self.audit = audit
        self.box = box
        self.http = http
        self.cache_seconds = cache_seconds
        self._connections: TTLCache[tuple[str, str], list[ConnectionView]] = TTLCache(
            maxsize=10_000, ttl=cache_seconds or 1
        )

    async def _usable_connections(self, principal: Principal) -> list[ConnectionView]:
        # An assistant lists tools and then calls them in quick succession; one
        # lookup serves the burst, and a change elsewhere shows within cache_seconds.
        key = (principal.workspace_id, principal.user_id)
        if key in self._connections:
            return self._connections[key]
        async with self.db.session() as session:
            connections = await usable_connections(session, principal)
        if self.cache_seconds:
            self._connections[key] = connections
        return connections

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

    async def call(self, principal: Principal, name: str, arguments: dict[str, Any] | None) -> CallResult:
        started = time.perf_counter()
        arguments = arguments or {}
        digest = arguments_digest(arguments)
        bound = next((b for b in await self.tools_for(principal) if b.name == name), None)
        if bound is None:
            result = CallResult.failure(UNKNOWN_TOOL, f"Unknown tool {name!r}: it is not among your tools.")
            await self._audit(principal, None, name, digest, None, Outcome.INVALID, result, started)
            return result
        try:
            parsed = bound.tool.parse_arguments(arguments)
        except InvalidArguments as exc:
            result = CallResult.failure(exc.code, str(exc), fields=exc.fields)
            await self._audit(principal, bound, name, digest, None, Outcome.INVALID, result, started)
            return result

        decision = decide(
            CallFacts(
                workspace_id=principal.workspace_id,
                user_id=principal.user_id,
                role=principal.role,
                app=bound.tool.app,
                tool=bound.tool.name,
                risk=bound.tool.risk.value,
                connection_scope=bound.connection.scope,
                arguments=arguments,
            )
        )
        if decision.effect is Effect.DENY:
            result = CallResult.failure("denied", f"{bound.tool.spec.title} is not allowed: {decision.reasons[0]}.")
            await self._audit(principal, bound, name, digest, decision, Outcome.REFUSED, result, started)
            return result
        if decision.effect is Effect.ASK:
            result = self._confirm(bound, decision)
            await self._audit(principal, bound, name, digest, decision, Outcome.REFUSED, result, started)
            return result

        result = await self._execute(principal, bound, parsed)
        outcome = Outcome.SUCCEEDED if result.ok else Outcome.FAILED
        await self._audit(principal, bound, name, digest, decision, outcome, result, started)
        return result

    def _confirm(self, bound: BoundTool, decision: Decision) -> CallResult:
        # Fails closed: until a confirmation channel exists (issue 3), a call that
        # needs a person's approval is refused, never run.
        return CallResult.failure(
            "approval_required",
            f"Approval required: {bound.tool.spec.title} ({bound.name}) is a {bound.tool.risk.value} action, "
            "and a person must approve it before it runs. This server cannot collect approvals yet, "
            "so the call was not run.",
            reasons=list(decision.reasons),
        )

    async def _execute(self, principal: Principal, bound: BoundTool, arguments: Any) -> CallResult:
        connection = bound.connection
        if connection.status is ConnectionStatus.NEEDS_REAUTH:
            return CallResult.failure(
                "needs_reauth",
                f"The {bound.tool.manifest.name} connection needs to be reconnected before its tools can run.",
            )
        context = ToolContext(
            principal=principal,
            connection=connection,
            sessions=self.db.sessions,
            http=self.http,
            credentials=open_credentials(self.box, connection),
        )
        try:
            data = await bound.tool.adapter(context, arguments)
        except ToolError as exc:
            return CallResult.failure(exc.code, str(exc))
        except Exception:
            log.exception("adapter %s failed", bound.tool.spec.adapter)
            return CallResult.failure("server_error", f"{bound.tool.spec.title} failed inside Companion.")
        problems = bound.tool.output_problems(data)
        if problems:
            log.error("adapter %s returned a result outside its output schema: %s", bound.tool.spec.adapter, problems)
            return CallResult.failure("server_error", f"{bound.tool.spec.title} returned a malformed result.")
        return CallResult(ok=True, data=data)

    async def _audit(
        self,
        principal: Principal,
        bound: BoundTool | None,
        name: str,
        digest: str,
        decision: Decision | None,
        outcome: Outcome,
        result: CallResult,
        started: float,
    ) -> None:
        record = AuditRecord(
            workspace_id=principal.workspace_id,
            user_id=principal.user_id,
            api_key_id=principal.key_id,
            connection_id=bound.connection.id if bound else None,
            app=bound.tool.app if bound else "",
            tool=name[:128],
            args_digest=digest,
            decision=decision.effect.value if decision else NOT_DECIDED,
            reasons=decision.reasons if decision else (),
            outcome=outcome,
            error=None if result.ok else result.error_code,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
        # A read that succeeded changed nothing, so its row may follow the answer
        # by a moment; every other row is committed before the caller hears back.
        durable = not (outcome is Outcome.SUCCEEDED and bound is not None and bound.tool.risk is Risk.READ)
        await self.audit.append(record, durable=durable)

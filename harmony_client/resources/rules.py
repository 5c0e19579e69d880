"""``client.rules``: auto-approval rules: create, list, read, change, delete; explain a decision; simulate a change.

These calls need a **user** key: an assistant's agent key gets ``Forbidden``, so it cannot write its own
rules. A member manages personal rules (``scope="user"``); workspace rules are an admin's. A rule is checked
when it is saved: an unknown app, tool or argument, or a malformed pattern, raises ``InvalidRequest`` whose
``fields`` name it.

Conditions, context and caps may be given as this package's models (``Condition(arg=..., op=..., value=...)``)
or as plain dicts in the API's JSON shape.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from harmony_client._http import AsyncHttp, Call, SyncHttp, segment
from harmony_client.models import Cap, Condition, Effect, Explanation, Rule, RuleContext, RuleList, Simulation

Scope = Literal["workspace", "user"]
Risk = Literal["read", "write", "send", "delete"]
Mode = Literal["enforce", "shadow"]


class Unset(enum.Enum):
    """The mark of an argument left out of ``rules.update``: unchanged, where None clears a field."""

    UNSET = "unset"


UNSET = Unset.UNSET


def _json(value: Any) -> Any:
    """A value as the API's JSON takes it: models by their API names, datetimes in ISO 8601."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def _create(fields: dict[str, Any]) -> Call:
    return Call("POST", "/rules", json=_json(fields))


def _update(rule_id: str, fields: dict[str, Any]) -> Call:
    changes = {name: value for name, value in fields.items() if value is not UNSET}
    return Call("PATCH", f"/rules/{segment(rule_id)}", json=_json(changes))


def _explain(
    tool: str, arguments: Mapping[str, Any] | None, user: str | None, connection_scope: str, at: datetime | None
) -> Call:
    body: dict[str, Any] = {"tool": tool, "arguments": dict(arguments or {}), "connection_scope": connection_scope}
    if user is not None:
        body["user"] = user
    if at is not None:
        body["at"] = at
    return Call("POST", "/rules/explain", json=_json(body))


def _simulate(
    add: Sequence[Rule | Mapping[str, Any]],
    update: Mapping[str, Mapping[str, Any]] | None,
    remove: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> Call:
    changes = {"add": list(add), "update": dict(update or {}), "remove": list(remove)}
    body: dict[str, Any] = {"changes": changes, "limit": limit}
    if since is not None:
        body["from"] = since
    if until is not None:
        body["to"] = until
    return Call("POST", "/rules/simulate", json=_json(body))


class Rules:
    def __init__(self, http: SyncHttp) -> None:
        self._http = http

    def list(self) -> builtins.list[Rule]:
        """An admin: the workspace's rules and every member's personal ones. A member: their own."""
        return self._http.get("/rules", RuleList).data

    def get(self, rule_id: str) -> Rule:
        return self._http.get(f"/rules/{segment(rule_id)}", Rule)

    def create(
        self,
        *,
        effect: Effect | str,
        scope: Scope,
        app: str | None = None,
        tool: str = "*",
        risk: Risk | None = None,
        conditions: Sequence[Condition | Mapping[str, Any]] = (),
        context: RuleContext | Mapping[str, Any] | None = None,
        cap: Cap | Mapping[str, Any] | None = None,
        expires_at: datetime | None = None,
        mode: Mode = "enforce",
        locked: bool = False,
        require_out_of_band: bool = False,
        admin_may_approve: bool = False,
        description: str = "",
    ) -> Rule:
        """A new rule: ``effect`` (allow, ask, deny) for calls of ``app``'s tools matching ``tool`` (a glob).

        ``cap`` (allow rules): at most ``max`` auto-approvals per ``per_seconds``, then ask. ``mode="shadow"``
        records what the rule would decide and decides nothing. ``locked``, ``require_out_of_band`` and
        ``admin_may_approve`` are for workspace rules.
        """
        fields = dict(
            effect=effect, scope=scope, app=app, tool=tool, risk=risk, conditions=list(conditions),
            context=context or {}, cap=cap, expires_at=expires_at, mode=mode, locked=locked,
            require_out_of_band=require_out_of_band, admin_may_approve=admin_may_approve, description=description,
        )  # fmt: skip
        return self._http.request(_create(fields), Rule)

    def update(
        self,
        rule_id: str,
        *,
        effect: Effect | str | Unset = UNSET,
        app: str | Unset | None = UNSET,
        tool: str | Unset = UNSET,
        risk: Risk | Unset | None = UNSET,
        conditions: Sequence[Condition | Mapping[str, Any]] | Unset = UNSET,
        context: RuleContext | Mapping[str, Any] | Unset = UNSET,
        cap: Cap | Mapping[str, Any] | Unset | None = UNSET,
        expires_at: datetime | Unset | None = UNSET,
        mode: Mode | Unset = UNSET,
        locked: bool | Unset = UNSET,
        require_out_of_band: bool | Unset = UNSET,
        admin_may_approve: bool | Unset = UNSET,
        description: str | Unset = UNSET,
    ) -> Rule:
        """Change the fields given (None clears ``app``, ``risk``, ``cap`` or ``expires_at``); the rest stay.

        The whole rule is checked again, as on creation. Its scope cannot change: make a new rule instead.
        """
        fields = dict(
            effect=effect, app=app, tool=tool, risk=risk, conditions=conditions, context=context, cap=cap,
            expires_at=expires_at, mode=mode, locked=locked, require_out_of_band=require_out_of_band,
            admin_may_approve=admin_may_approve, description=description,
        )  # fmt: skip
        return self._http.request(_update(rule_id, fields), Rule)

    def delete(self, rule_id: str) -> None:
        self._http.send(Call("DELETE", f"/rules/{segment(rule_id)}"))

    def explain(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        user: str | None = None,
        connection_scope: str = "workspace",
        at: datetime | None = None,
    ) -> Explanation:
        """The decision a call of ``tool`` with ``arguments`` would get (now, unless ``at``), and why.

        Arguments are checked as a real call's: one the tool would not take raises ``HarmonyError`` with
        code ``invalid_arguments``. An admin may ask about another member's call (``user``: e-mail or id).
        """
        return self._http.request(_explain(tool, arguments, user, connection_scope, at), Explanation)

    def simulate(
        self,
        *,
        add: Sequence[Rule | Mapping[str, Any]] = (),
        update: Mapping[str, Mapping[str, Any]] | None = None,
        remove: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 200,
    ) -> Simulation:
        """Replay recorded calls (default: the last 7 days) as if these rules were added, changed (``update``:
        by id, the fields to change) and removed; nothing is saved. Lists the calls whose decision would change.
        """
        return self._http.request(_simulate(add, update, remove, since, until, limit), Simulation)


class AsyncRules:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http

    async def list(self) -> builtins.list[Rule]:
        return (await self._http.get("/rules", RuleList)).data

    async def get(self, rule_id: str) -> Rule:
        return await self._http.get(f"/rules/{segment(rule_id)}", Rule)

    async def create(
        self,
        *,
        effect: Effect | str,
        scope: Scope,
        app: str | None = None,
        tool: str = "*",
        risk: Risk | None = None,
        conditions: Sequence[Condition | Mapping[str, Any]] = (),
        context: RuleContext | Mapping[str, Any] | None = None,
        cap: Cap | Mapping[str, Any] | None = None,
        expires_at: datetime | None = None,
        mode: Mode = "enforce",
        locked: bool = False,
        require_out_of_band: bool = False,
        admin_may_approve: bool = False,
        description: str = "",
    ) -> Rule:
        fields = dict(
            effect=effect, scope=scope, app=app, tool=tool, risk=risk, conditions=list(conditions),
            context=context or {}, cap=cap, expires_at=expires_at, mode=mode, locked=locked,
            require_out_of_band=require_out_of_band, admin_may_approve=admin_may_approve, description=description,
        )  # fmt: skip
        return await self._http.request(_create(fields), Rule)

    async def update(
        self,
        rule_id: str,
        *,
        effect: Effect | str | Unset = UNSET,
        app: str | Unset | None = UNSET,
        tool: str | Unset = UNSET,
        risk: Risk | Unset | None = UNSET,
        conditions: Sequence[Condition | Mapping[str, Any]] | Unset = UNSET,
        context: RuleContext | Mapping[str, Any] | Unset = UNSET,
        cap: Cap | Mapping[str, Any] | Unset | None = UNSET,
        expires_at: datetime | Unset | None = UNSET,
        mode: Mode | Unset = UNSET,
        locked: bool | Unset = UNSET,
        require_out_of_band: bool | Unset = UNSET,
        admin_may_approve: bool | Unset = UNSET,
        description: str | Unset = UNSET,
    ) -> Rule:
        fields = dict(
            effect=effect, app=app, tool=tool, risk=risk, conditions=conditions, context=context, cap=cap,
            expires_at=expires_at, mode=mode, locked=locked, require_out_of_band=require_out_of_band,
            admin_may_approve=admin_may_approve, description=description,
        )  # fmt: skip
        return await self._http.request(_update(rule_id, fields), Rule)

    async def delete(self, rule_id: str) -> None:
        await self._http.send(Call("DELETE", f"/rules/{segment(rule_id)}"))

    async def explain(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        user: str | None = None,
        connection_scope: str = "workspace",
        at: datetime | None = None,
    ) -> Explanation:
        return await self._http.request(_explain(tool, arguments, user, connection_scope, at), Explanation)

    async def simulate(
        self,
        *,
        add: Sequence[Rule | Mapping[str, Any]] = (),
        update: Mapping[str, Mapping[str, Any]] | None = None,
        remove: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 200,
    ) -> Simulation:
        return await self._http.request(_simulate(add, update, remove, since, until, limit), Simulation)

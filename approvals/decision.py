"""The decision step: may this call run now, must a person confirm it, or is it refused?

Every tool call passes through ``decide`` before its adapter runs. With no
rule to say otherwise, the tool's risk decides: reads run, and anything that
writes, sends or deletes asks a person first.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from store.models import ConnectionScope, Role


class Effect(StrEnum):
    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"


DEFAULT_BY_RISK: dict[str, Effect] = {
    "read": Effect.ALLOW,
    "write": Effect.ASK,
    "send": Effect.ASK,
    "delete": Effect.ASK,
}


@dataclass(frozen=True)
class CallFacts:
    """Everything a decision may depend on, as plain data."""

    workspace_id: str
    user_id: str
    role: Role
    app: str
    tool: str
    risk: str
    connection_scope: ConnectionScope
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Decision:
    effect: Effect
    reasons: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return self.effect is Effect.ALLOW


def decide(call: CallFacts) -> Decision:
    effect = DEFAULT_BY_RISK.get(call.risk, Effect.ASK)
    return Decision(effect, (f"default for {call.risk} tools: {effect.value}",))

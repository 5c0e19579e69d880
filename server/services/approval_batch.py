"""Deciding several waiting approvals at once: one choice and one reason, each applied as its own decision.

A person with a queue of near-identical requests (the same reminder to ten
people, the same update asked three times) selects them and approves or denies
them together. Nothing is decided in bulk: each approval goes through the one
decision path (``decide_elsewhere``), with its own checks, its own vote where it
needs several approvers, its own audit row and its own single run, so a batch
can never do what the same decisions one by one could not. Each id gets its own
answer: decided, or refused and why.

Identical pending calls asked in one person's name (the same tool, connection,
account and arguments, so the same summary) are grouped for the decider, with
how many there are.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from server.services.approval_flow import ApprovalFlow, DecisionRefused, decide_elsewhere
from store.models import Approval
from store.principal import Principal
from tools.registry import RegisteredTool

# The most approvals one batch decides: enough for any real queue, few enough that one request stays short.
MAX_BATCH = 100


@dataclass(frozen=True)
class BatchAnswer:
    """What became of one approval of a batch."""

    id: str
    decided: bool
    status: str | None
    code: str | None
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "result": "decided" if self.decided else "refused",
            "status": self.status,
            "code": self.code,
            "message": self.message,
        }


async def decide_many(
    flow: ApprovalFlow,
    tools: dict[str, RegisteredTool],
    actor: Principal,
    approval_ids: Iterable[str],
    *,
    approve: bool,
    reason: str | None,
    via: str,
) -> list[BatchAnswer]:
    """Approve or deny each approval in turn (each id once, at most ``MAX_BATCH``); a refusal stops no other."""
    answers: list[BatchAnswer] = []
    for approval_id in list(dict.fromkeys(approval_ids))[:MAX_BATCH]:
        try:
            approval = await decide_elsewhere(flow, tools, actor, approval_id, approve=approve, via=via, reason=reason)
        except DecisionRefused as exc:
            answers.append(BatchAnswer(approval_id, False, None, exc.code, str(exc)))
            continue
        status = approval.status.value
        message = "Approved." if status == "approved" else "Denied." if status == "denied" else f"Now {status}."
        if approval.approvers is not None and status == "pending":
            message = "Your approval is counted; others must still approve."
        answers.append(BatchAnswer(approval_id, True, status, None, message))
    return answers


@dataclass
class Group:
    """Pending approvals of one identical call: the newest stands for them all."""

    first: Approval
    approvals: list[Approval] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [approval.id for approval in self.approvals]

    @property
    def assistants(self) -> list[str]:
        """Every assistant that asked for this call, by name: the same call from two assistants is one row, which
        must not name only one of them."""
        return list(dict.fromkeys(approval.assistant for approval in self.approvals if approval.assistant))


def identical(approvals: Iterable[Approval]) -> list[Group]:
    """Group approvals of the same call asked in the same person's name (tool, connection, account and argument
    digest), in the order first seen. Another person's copy of a call is its own row: one row stands for one
    asker, whose name it shows."""
    groups: dict[tuple[str, str, str, str | None, str], Group] = {}
    for approval in approvals:
        key = (
            approval.user_id,
            approval.tool,
            approval.connection_id,
            approval.account,
            approval.args_digest,
        )
        groups.setdefault(key, Group(approval)).approvals.append(approval)
    return list(groups.values())

"""What a tool call comes to: the one word for it in the gateway, the approval flow, the audit and the metrics.

Its ``outcome`` is the audit's (succeeded, failed, refused, invalid, pending), so no layer translates one
result into another; front ends turn it into their protocol's answer only at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from approvals.audit import Outcome
from server.services.confirmation import Prompt
from store.models import Approval


@dataclass(frozen=True)
class CallResult:
    """Structured data, a question for the person, or an error to act on; with the approval it settled on."""

    outcome: Outcome
    data: dict[str, Any] | None = None
    error_code: str | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    prompt: Prompt | None = None
    approval: Approval | None = None

    @property
    def ok(self) -> bool:
        """Whether the caller got what it asked for, or a question on the way to it."""
        return self.outcome in (Outcome.SUCCEEDED, Outcome.PENDING)

    @classmethod
    def succeeded(cls, data: dict[str, Any] | None, *, approval: Approval | None = None) -> CallResult:
        return cls(Outcome.SUCCEEDED, data=data, approval=approval)

    @classmethod
    def pending(
        cls,
        approval: Approval,
        *,
        data: dict[str, Any] | None = None,
        message: str = "",
        prompt: Prompt | None = None,
    ) -> CallResult:
        """Waiting for a person: the approval-required answer, or a question for them."""
        return cls(Outcome.PENDING, data=data, message=message, prompt=prompt, approval=approval)

    @classmethod
    def failure(
        cls,
        code: str,
        message: str,
        *,
        outcome: Outcome = Outcome.FAILED,
        approval: Approval | None = None,
        **details: Any,
    ) -> CallResult:
        """An error to act on; refused and invalid calls say so in ``outcome``, for the audit."""
        if approval is not None:
            details.setdefault("approval_id", approval.id)
        return cls(outcome, error_code=code, message=message, details=details, approval=approval)

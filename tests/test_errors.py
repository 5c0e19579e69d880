"""One error base: whichever layer refuses, a front end finds a code, a message and details."""

from __future__ import annotations

import pytest

from approvals.lifecycle import ApprovalError
from approvals.rulebook import RulePermissionError
from approvals.rules import RuleError
from store.errors import CompanionError
from tools.errors import InvalidArguments, NotFound, ToolError


@pytest.mark.parametrize(
    ("error", "code", "details"),
    [
        (ToolError("Slack is rate limiting this app.", code="rate_limited"), "rate_limited", {}),
        (NotFound("No such issue."), "not_found", {}),
        (InvalidArguments({"to.0": "is not a mailbox"}), "invalid_arguments", {"fields": {"to.0": "is not a mailbox"}}),
        (ApprovalError("expired", "Approval apr_1 expired."), "expired", {}),
        (RuleError({"tool": "no such tool"}), "invalid_request", {"fields": {"tool": "no such tool"}}),
        (RulePermissionError("Only a workspace admin can create workspace rules"), "forbidden", {}),
    ],
)
def test_every_layers_refusal_has_a_code_a_message_and_details(error, code, details):
    assert isinstance(error, CompanionError)
    assert (error.code, error.details) == (code, details)
    assert error.message == str(error) and error.message


def test_a_rule_error_is_still_a_value_error_for_pydantic_validators():
    """Rule checks run inside pydantic validators, which turn only ValueError into a field error."""
    assert isinstance(RuleError({"cap": "only an allow rule has a cap"}), ValueError)

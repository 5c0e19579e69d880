"""One error base: whichever layer refuses, a front end finds a code, a message and details."""

from __future__ import annotations

import pytest

from approvals.lifecycle import ApprovalError
from approvals.rulebook import RulePermissionError
from approvals.rules import RuleError
from server.http_status import status_of
from server.services.integrations.lifecycle import IntegrationError
from server.services.processing.storage import UploadRejected
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


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (IntegrationError("not_found", "No connection conn_1."), 404),
        (IntegrationError("conflict", "A sync is already running."), 409),
        (IntegrationError("invalid_request", "Invalid setup", fields={"setup.host": "required"}), 422),
        (IntegrationError("oauth_refused", "Linear refused the connection: access_denied."), 400),
        (IntegrationError("provider_unreachable", "Linear could not be reached."), 502),
        (UploadRejected("payload_too_large", "The upload is larger than 10 bytes.", {"limit": 10}), 413),
        (NotFound("No such issue."), 404),
        (RulePermissionError("Only a workspace admin can create workspace rules"), 403),
    ],
)
def test_a_use_case_says_what_kind_of_refusal_and_only_the_http_edge_says_which_status(error, status):
    assert not hasattr(error, "status")
    assert status_of(error) == status

"""What each sealed value is bound to. One place, so sealing, opening and key rotation cannot disagree."""

from __future__ import annotations


def credentials_context(connection_id: str) -> str:
    return f"connection:{connection_id}"


def oauth_flow_context(flow_id: str) -> str:
    return f"oauth-flow:{flow_id}"


def webhook_secret_context(endpoint_id: str) -> str:
    return f"webhook:{endpoint_id}"


def approval_arguments_context(approval_id: str) -> str:
    return f"approval:{approval_id}"


def approval_original_arguments_context(approval_id: str) -> str:
    """What the assistant asked, kept beside the arguments a person changed it to before approving."""
    return f"approval-original:{approval_id}"


def approval_result_context(approval_id: str) -> str:
    return f"approval-result:{approval_id}"


def approval_summary_context(approval_id: str) -> str:
    return f"approval-summary:{approval_id}"


def audit_arguments_context(digest: str) -> str:
    return f"audit-args:{digest}"


def sign_in_secret_context(workspace_id: str) -> str:
    return f"workspace-sign-in:{workspace_id}"

"""Who is calling the API. Bearer keys are resolved by the same middleware as the MCP endpoint."""

from __future__ import annotations

from starlette.requests import Request

from server.api.errors import ApiError
from store.models import KeyKind
from store.principal import Principal


def principal_of(request: Request) -> Principal:
    token = getattr(request.user, "access_token", None)
    principal = getattr(token, "principal", None)
    if not isinstance(principal, Principal):
        raise ApiError(401, "A valid API key is required: send Authorization: Bearer <key>.")
    return principal


def person_of(request: Request) -> Principal:
    """A principal acting for a person (a user key or a signed-in session), never an assistant's credential.

    Rules, keys, webhooks and connected apps are a person's to manage: an agent must not write its own
    auto-approval rules. An assistant's OAuth token is an agent's credential too (SECURITY.md).
    """
    principal = api_caller(request)
    if principal.key_kind is not KeyKind.USER:
        raise ApiError(403, "Agent keys and assistants' tokens cannot do this; use a user key or the console.")
    return principal


def decider_of(request: Request) -> Principal:
    """Who may see and decide approvals: a person's user key or session, or an assistant's token with the
    ``approvals`` scope, which a workspace admin grants to that assistant by name."""
    principal = principal_of(request)
    if not principal.may_decide:
        raise ApiError(
            403,
            "Agent keys cannot decide approvals; use a user key. An assistant's token needs the approvals scope, "
            "which a workspace admin grants to that assistant.",
        )
    return principal


def api_caller(request: Request) -> Principal:
    """A credential allowed to use the REST API (scope ``api``, or ``api:read``/``api:write`` for an assistant's
    token); every data endpoint starts here."""
    principal = principal_of(request)
    if not principal.may_read_api:
        raise ApiError(403, "This key has no access to the REST API (scope api; an assistant's token needs api:read).")
    return principal

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
    """A principal acting for a person (a user key or a signed-in session), never an assistant's agent key.

    Decisions and rules are a person's to make: an agent must not approve its
    own calls or write its own auto-approval rules.
    """
    principal = api_caller(request)
    if principal.key_kind is not KeyKind.USER:
        raise ApiError(403, "Agent keys cannot decide approvals or manage rules; use a user key.")
    return principal


API_SCOPE = "api"


def api_caller(request: Request) -> Principal:
    """A key allowed to use the REST API (scope ``api``); every data endpoint starts here."""
    principal = principal_of(request)
    if API_SCOPE not in principal.scopes:
        raise ApiError(403, "This key has no access to the REST API (scope api).")
    return principal

"""What every Google API fake shares: Google's OAuth server, its 401 and its error body.

Gmail, Calendar and the People API sit behind the same Google front end, so they share
the OAuth 2 paths (``/o/oauth2/v2/auth`` and ``/token``), a token endpoint that answers a
refresh with a new access token but keeps the refresh token, the 401 for a bad token and
the error body ``{"error": {"code", "message", "errors": [...], "status"}}``. They are
written here once, so the fakes cannot drift apart on what Google does the same way
everywhere; each fake adds its API's routes and, where its API words an error its own way,
those words.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from tests.fakes.base import Failure, ProviderFake

#: The google.rpc.Code name Google sends as ``error.status`` for an HTTP status.
STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
#: Google's canonical words for a status when nothing more specific applies: (reason, message).
PLAIN = {
    400: ("invalidArgument", "Bad Request"),
    401: ("authError", "Invalid Credentials"),
    403: ("forbidden", "The caller does not have permission"),
    404: ("notFound", "Requested entity was not found."),
    429: ("rateLimitExceeded", "Resource has been exhausted (e.g. check quota)."),
    500: ("backendError", "Internal error encountered."),
    502: ("backendError", "Bad Gateway"),
    503: ("backendError", "The service is currently unavailable."),
}
UNAUTHENTICATED_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other "
    "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
)


def google_error(
    status: int,
    message: str | None = None,
    reason: str | None = None,
    *,
    status_name: str | None = None,
    **detail: str,
) -> JSONResponse:
    """Google's error body, with the legacy ``errors`` entry (``reason`` plus any ``detail``) clients still read.

    ``message`` and ``reason`` default to Google's canonical words for the status; ``status_name`` is for the
    answers Google files under another google.rpc.Code than the status usually means (a stale etag's 400 is
    ``FAILED_PRECONDITION``).
    """
    plain_reason, plain_message = PLAIN.get(status, ("unknown", "Unknown error"))
    message, reason = message or plain_message, reason or plain_reason
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message, **detail}],
            "status": status_name or STATUS.get(status, "UNKNOWN"),
        }
    }
    return JSONResponse(body, status_code=status)


class GoogleFake(ProviderFake):
    """A Google API behind Google's OAuth server, refusing a bad token and failing as Google does."""

    #: The scopes this API's tokens are granted, as Google's token endpoint lists them.
    scope: ClassVar[str]
    #: Where this API words a status otherwise than Google's canonical ``PLAIN``: status -> (reason, message).
    plain: ClassVar[Mapping[int, tuple[str, str]]] = {}

    def __init__(self, routes: list[BaseRoute]) -> None:
        super().__init__(routes, authorize_path="/o/oauth2/v2/auth", token_path="/token")

    def issue(self, *, expires_in: int | None = None) -> dict[str, Any]:
        return {**super().issue(expires_in=expires_in), "scope": self.scope}

    async def token(self, request: Request) -> Response:
        """Google answers a refresh with a new access token only: the refresh token stays valid as it is."""
        form = await request.form()
        answer = await super().token(request)
        if form.get("grant_type") != "refresh_token" or answer.status_code != 200:
            return answer
        issued = json.loads(bytes(answer.body))
        self.refresh_tokens.discard(issued.pop("refresh_token"))
        self.refresh_tokens.add(str(form["refresh_token"]))
        return JSONResponse(issued)

    def unauthorized(self) -> Response:
        answer = google_error(401, UNAUTHENTICATED_MESSAGE, location="Authorization", locationType="header")
        answer.headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/", error="invalid_token"'
        return answer

    def failure_response(self, failure: Failure) -> Response:
        if failure.body is not None:
            return JSONResponse(failure.body, status_code=failure.status, headers=failure.headers)
        reason, message = self.plain.get(failure.status, (None, None))
        answer = google_error(failure.status, message, reason)
        answer.headers.update(failure.headers)
        return answer

"""Who a bearer token is, and where it may be used.

A request's ``Authorization: Bearer`` resolves to a principal once, for every front end: an API key, or an
access token from an authorization server. An access token is bound to an audience (RFC 8707): the MCP
endpoint, the REST API, or the whole server. Presented anywhere else it identifies nobody, so the request
is answered as unauthenticated; Companion never passes a caller's token on to anyone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend
from mcp.server.auth.provider import AccessToken, TokenVerifier
from pydantic import ConfigDict
from starlette.authentication import AuthCredentials
from starlette.requests import HTTPConnection

from store.principal import Principal


class PrincipalToken(AccessToken):
    """An access token that carries the principal its bearer credential resolved to."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    principal: Principal


class PrincipalVerifier(TokenVerifier):
    """Resolves a bearer credential to its principal for the SDK's auth middleware."""

    def __init__(self, principal_for: Callable[[str], Awaitable[Principal | None]]) -> None:
        self.principal_for = principal_for

    async def verify_token(self, token: str) -> AccessToken | None:
        principal = await self.principal_for(token)
        if principal is None:
            return None
        return PrincipalToken(
            token=token,
            client_id=principal.client_id or principal.key_id,
            subject=principal.user_id,
            scopes=sorted(principal.scopes),
            expires_at=None,
            resource=principal.audience,
            principal=principal,
        )


class AudienceBearerBackend(BearerAuthBackend):
    """The SDK's bearer backend, refusing an access token outside the resources its audience names.

    ``audiences_at`` gives, for a request path, the audiences a token may carry there; an API key has none
    and is judged by its scopes alone.
    """

    def __init__(self, verifier: TokenVerifier, audiences_at: Callable[[str], tuple[str, ...]]) -> None:
        super().__init__(verifier)
        self.audiences_at = audiences_at

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, AuthenticatedUser] | None:
        found: tuple[AuthCredentials, AuthenticatedUser] | None = await super().authenticate(conn)
        if found is None:
            return None
        token = found[1].access_token
        audience = token.principal.audience if isinstance(token, PrincipalToken) else token.resource
        if audience is not None and audience not in self.audiences_at(conn.url.path):
            return None
        return found

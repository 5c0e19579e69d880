"""The authorization server's routes: the SDK's handlers, and what this server adds around them.

- The metadata names every method the token endpoint takes (``none`` included, for public clients),
  ``iss`` in authorization responses (RFC 9207) and Client ID Metadata Documents.
- Every redirect from the authorization endpoint back to a client carries ``iss``, errors included.
- The token endpoint hands the request's ``resource`` (RFC 8707) to the provider, which the SDK does not.
- Registration is rate-limited per address, before anything is parsed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from mcp.server.auth.handlers.authorize import AuthorizationHandler
from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.handlers.register import RegistrationHandler
from mcp.server.auth.handlers.token import TokenHandler
from mcp.server.auth.middleware.client_auth import AuthenticationError, ClientAuthenticator
from mcp.server.auth.provider import construct_redirect_uri
from mcp.server.auth.settings import ClientRegistrationOptions
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE, RequestBodyLimitMiddleware
from mcp.shared.auth import OAuthMetadata
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, request_response
from starlette.types import ASGIApp

from server.oauth.provider import AssistantProvider, caller_address, token_request_resource
from server.services.assistants.authorization import SCOPES, AuthorizationServer
from server.services.assistants.clients import AssistantClients

AUTHORIZE = "/authorize"
TOKEN = "/token"
REGISTER = "/register"
REVOKE = "/revoke"
TOKEN_AUTH_METHODS = ["none", "client_secret_post", "client_secret_basic"]
#: A client's registration is a few hundred bytes; a larger one would only fill the database.
REGISTRATION_MAX_BYTES = 16 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def metadata(issuer: str) -> OAuthMetadata:
    return OAuthMetadata.model_validate(
        {
            "issuer": issuer,
            "authorization_endpoint": issuer + AUTHORIZE,
            "token_endpoint": issuer + TOKEN,
            "registration_endpoint": issuer + REGISTER,
            "revocation_endpoint": issuer + REVOKE,
            "scopes_supported": SCOPES,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "client_id_metadata_document_supported": True,
        }
    )


def with_issuer(handle: Handler, issuer: str) -> Handler:
    """RFC 9207: a redirect back to the client names this server as ``iss``, whatever the SDK's handler answered.

    A redirect to the consent page is this server's own and carries the sealed request instead."""
    own = urlsplit(issuer)

    async def authorize(request: Request) -> Response:
        response = await handle(request)
        location = response.headers.get("location")
        if location is not None:
            target = urlsplit(location)
            if (target.scheme, target.netloc) != (own.scheme, own.netloc):
                response.headers["location"] = construct_redirect_uri(location, iss=issuer)
        return response

    return authorize


def with_resource(handle: Handler) -> Handler:
    """The token request's ``resource`` reaches the provider (the SDK reads the form; Starlette keeps it)."""

    async def token(request: Request) -> Response:
        form = await request.form()
        resource = form.get("resource")
        reset = token_request_resource.set(resource if isinstance(resource, str) else None)
        try:
            return await handle(request)
        finally:
            token_request_resource.reset(reset)

    return token


def from_address(handle: Handler) -> Handler:
    """The caller's address reaches the provider, for the limits on what anyone may cause unauthenticated."""

    async def answer(request: Request) -> Response:
        reset = caller_address.set(request.client.host if request.client else "unknown")
        try:
            return await handle(request)
        finally:
            caller_address.reset(reset)

    return answer


def rate_limited(handle: Handler, clients: AssistantClients) -> Handler:
    async def register(request: Request) -> Response:
        wait = await clients.admit(caller_address.get())
        if wait:
            return JSONResponse(
                {"error": "too_many_requests", "error_description": f"Too many registrations; retry in {wait} s."},
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
        return await handle(request)

    return register


def revocation(provider: AssistantProvider, authenticator: ClientAuthenticator) -> Handler:
    """RFC 7009. Written here because the SDK's handler requires ``client_secret`` of every client, so a public
    client (the usual MCP client) could never revoke its tokens."""

    async def revoke(request: Request) -> Response:
        try:
            client = await authenticator.authenticate_request(request)
        except AuthenticationError as exc:
            return JSONResponse({"error": "invalid_client", "error_description": exc.message}, status_code=401)
        token = (await request.form()).get("token")
        if not isinstance(token, str) or not token:
            return JSONResponse({"error": "invalid_request", "error_description": "token is required"}, status_code=400)
        # An unknown token, or another client's, is answered as a revoked one is (RFC 7009 §2.2).
        await provider.server.revoke(client.client_id or "", token)
        return Response(status_code=200, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return revoke


def _cors(app: ASGIApp, methods: list[str]) -> ASGIApp:
    # Browser-based clients (the MCP Inspector) call these directly; they carry no cookies, so any origin may.
    return CORSMiddleware(app, allow_origins=["*"], allow_methods=methods, allow_headers=["mcp-protocol-version"])


def _limited(handle: Handler, max_bytes: int = DEFAULT_MAX_REQUEST_BODY_SIZE) -> ASGIApp:
    return RequestBodyLimitMiddleware(request_response(from_address(handle)), max_bytes)


def routes(server: AuthorizationServer, clients: AssistantClients) -> list[BaseRoute]:
    provider = AssistantProvider(server, clients)
    authenticator = ClientAuthenticator(provider)
    registration = RegistrationHandler(
        provider, ClientRegistrationOptions(enabled=True, valid_scopes=SCOPES, default_scopes=SCOPES)
    )
    issuer = server.issuer
    return [
        Route(
            "/.well-known/oauth-authorization-server",
            _cors(request_response(MetadataHandler(metadata(issuer)).handle), ["GET", "OPTIONS"]),
            methods=["GET", "OPTIONS"],
        ),
        Route(AUTHORIZE, _limited(with_issuer(AuthorizationHandler(provider).handle, issuer)), methods=["GET", "POST"]),
        Route(
            TOKEN,
            _cors(_limited(with_resource(TokenHandler(provider, authenticator).handle)), ["POST", "OPTIONS"]),
            methods=["POST", "OPTIONS"],
        ),
        Route(
            REGISTER,
            _cors(_limited(rate_limited(registration.handle, clients), REGISTRATION_MAX_BYTES), ["POST", "OPTIONS"]),
            methods=["POST", "OPTIONS"],
        ),
        Route(
            REVOKE,
            _cors(_limited(revocation(provider, authenticator)), ["POST", "OPTIONS"]),
            methods=["POST", "OPTIONS"],
        ),
    ]

"""The ``mcp`` SDK's authorization-server provider, answered by Companion's use cases.

The SDK's handlers parse and check the OAuth requests (PKCE S256, the redirect URI against the client's,
the code's expiry and client); this adapter translates between its models and ``server.services.assistants``.
"""

from __future__ import annotations

from contextvars import ContextVar

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    AuthorizeError,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    RegistrationError,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import ValidationError

from server.services.assistants.authorization import (
    SCOPES,
    AuthorizationServer,
    InvalidGrant,
    InvalidTarget,
)
from server.services.assistants.clients import AssistantClients, Client, ClientRefused
from server.services.errors import InvalidInput
from store.assistant_tokens import Issued

CONSENT_PATH = "/oauth/consent"

#: The ``resource`` of the token request being answered: the SDK hands the provider the code or refresh token
#: but not this parameter, which RFC 8707 lets the client send again at the token endpoint.
token_request_resource: ContextVar[str | None] = ContextVar("token_request_resource", default=None)


class Code(AuthorizationCode):
    id: str
    family_id: str
    grant_id: str


class Refresh(RefreshToken):
    id: str
    family_id: str
    grant_id: str


class AssistantProvider(OAuthAuthorizationServerProvider[Code, Refresh, AccessToken]):
    """The SDK's provider; the identity-assertion grant (SEP-990) keeps the SDK's refusal."""

    def __init__(self, server: AuthorizationServer, clients: AssistantClients) -> None:
        self.server = server
        self.clients = clients

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        try:
            client = await self.clients.get(client_id, asked_from=caller_address.get())
            return None if client is None else _sdk_client(client)
        except (ClientRefused, ValidationError):
            # A refused or malformed client is no client: the SDK answers that it does not exist.
            return None

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        metadata = client_info.model_dump(mode="json", exclude_none=True, exclude={"client_secret"})
        try:
            await self.clients.register(
                metadata,
                client_id=client_info.client_id or "",
                secret=client_info.client_secret,
                address=caller_address.get(),
            )
        except ClientRefused as exc:
            field, message = next(iter(exc.fields.items()))
            if field == "redirect_uris":
                raise RegistrationError("invalid_redirect_uri", message) from None
            raise RegistrationError("invalid_client_metadata", f"{field}: {message}") from None

    async def authorize(self, client: OAuthClientInformationFull, params: AuthorizationParams) -> str:
        try:
            sealed = self.server.begin(
                await self._client(client),
                redirect_uri=str(params.redirect_uri),
                redirect_uri_explicit=params.redirect_uri_provided_explicitly,
                scopes=params.scopes,
                state=params.state,
                code_challenge=params.code_challenge,
                resource=params.resource,
            )
        except InvalidTarget as exc:
            raise AuthorizeError("invalid_target", exc.fields["resource"]) from None
        except InvalidInput as exc:
            raise AuthorizeError("invalid_scope", "; ".join(exc.fields.values())) from None
        return f"{self.server.issuer}{CONSENT_PATH}?request={sealed}"

    async def _client(self, client: OAuthClientInformationFull) -> Client:
        found = await self.clients.get(client.client_id or "", asked_from=caller_address.get())
        if found is None:
            raise AuthorizeError("unauthorized_client", "this client is no longer registered")
        return found

    async def load_authorization_code(self, client: OAuthClientInformationFull, authorization_code: str) -> Code | None:
        code = await self.server.code(client.client_id or "", authorization_code)
        if code is None:
            return None
        return Code(
            code=authorization_code, scopes=code.scopes, expires_at=code.expires_at, client_id=client.client_id or "",
            code_challenge=code.code_challenge, redirect_uri=code.redirect_uri or _only_redirect(client),
            redirect_uri_provided_explicitly=code.redirect_uri is not None, resource=code.resource,
            subject=code.subject, id=code.id, family_id=code.family_id, grant_id=code.grant_id,
        )  # fmt: skip

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: Code
    ) -> OAuthToken:
        return await self._exchange(
            authorization_code.id, authorization_code.family_id, authorization_code.grant_id,
            authorization_code.scopes, authorization_code.resource or "",
        )  # fmt: skip

    async def load_refresh_token(self, client: OAuthClientInformationFull, refresh_token: str) -> Refresh | None:
        token = await self.server.refresh_token(client.client_id or "", refresh_token)
        if token is None:
            return None
        return Refresh(
            token=refresh_token, client_id=client.client_id or "", scopes=token.scopes, expires_at=token.expires_at,
            resource=token.resource, subject=token.subject, id=token.id, family_id=token.family_id,
            grant_id=token.grant_id,
        )  # fmt: skip

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: Refresh, scopes: list[str]
    ) -> OAuthToken:
        return await self._exchange(
            refresh_token.id, refresh_token.family_id, refresh_token.grant_id, scopes, refresh_token.resource or ""
        )

    async def _exchange(
        self, spent_id: str, family_id: str, grant_id: str, scopes: list[str], resource: str
    ) -> OAuthToken:
        try:
            issued = await self.server.exchange(
                spent_id, family_id, grant_id, scopes=scopes, resource=resource, asked=token_request_resource.get()
            )
        except InvalidGrant as exc:
            raise TokenError("invalid_grant", str(exc)) from None
        except InvalidTarget as exc:
            raise TokenError("invalid_target", exc.fields["resource"]) from None
        return _token(issued)

    async def load_access_token(self, token: str) -> AccessToken | None:
        """Bearer tokens are resolved by ``server.bearer`` and revoked by the revocation endpoint, not here."""
        return None

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        await self.server.revoke(token.client_id, token.token)


#: The address of the request being answered, for the limits on registrations and document fetches; set by every
#: authorization-server endpoint (``endpoints.from_address``).
caller_address: ContextVar[str] = ContextVar("caller_address", default="unknown")


def _only_redirect(client: OAuthClientInformationFull) -> str:
    return str(client.redirect_uris[0]) if client.redirect_uris else ""


def _token(issued: Issued) -> OAuthToken:
    return OAuthToken(
        access_token=issued.access_token,
        token_type="Bearer",
        expires_in=issued.expires_in,
        scope=" ".join(issued.scopes),
        refresh_token=issued.refresh_token,
    )


def _sdk_client(client: Client) -> OAuthClientInformationFull:
    metadata = {
        key: value
        for key, value in client.metadata.items()
        if key not in ("client_id", "client_secret", "client_id_issued_at", "client_secret_expires_at")
    }
    metadata.setdefault("scope", " ".join(SCOPES))
    metadata.setdefault("token_endpoint_auth_method", "none")
    identity = {"client_id": client.client_id, "client_secret": client.secret, "redirect_uris": client.redirect_uris}
    return OAuthClientInformationFull.model_validate(metadata | identity)

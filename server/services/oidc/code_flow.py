"""The two legs of the authorization code flow, through Authlib's OAuth 2 client: the authorization URL the
browser is sent to (PKCE S256, ``state``, ``nonce``), and the exchange of the code it brings back.

The token endpoint comes from a discovery document an admin pointed at, so the exchange, which carries the
client secret, goes only where the webhook address policy allows: Authlib's client is handed a transport that
checks each address and connects to the one it checked, as ``DocumentFetcher`` does for the documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from server.services import addresses
from server.services.errors import ServiceError
from server.services.oidc.provider import Provider

EXCHANGE_SECONDS = 10.0
SCOPE = "openid email profile"


class ExchangeFailed(ServiceError):
    """The provider did not turn the code into tokens; the message says why, without any secret."""

    code = "provider_unreachable"


class CheckedTransport(httpx2.AsyncBaseTransport):
    """Sends each request to an address the policy checked, keeping the host name for ``Host`` and TLS.

    It keeps no idle connection, so a TLS connection made for one host name never carries a request for another.
    """

    def __init__(self, *, https_only: bool, allow_private: bool, resolver: addresses.Resolver) -> None:
        self.https_only = https_only
        self.allow_private = allow_private
        self.resolver = resolver
        self.inner = httpx2.AsyncHTTPTransport(trust_env=False, limits=httpx2.Limits(max_keepalive_connections=0))

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        target, resolved = await addresses.resolve(
            str(request.url), https_only=self.https_only, allow_private=self.allow_private, resolver=self.resolver
        )
        if target.parts.scheme.lower() == "https":
            request.extensions = {**request.extensions, "sni_hostname": target.host}
        failure: httpx2.ConnectError | None = None
        for address in resolved:
            request.url = request.url.copy_with(host=address)
            try:
                return await self.inner.handle_async_request(request)
            except httpx2.ConnectError as exc:
                failure = exc
        assert failure is not None  # resolve() returns at least one address
        raise failure

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass(frozen=True)
class Client:
    """This server as the provider's client: who it is, and where the provider sends the browser back."""

    client_id: str
    redirect_uri: str
    client_secret: str = ""


@dataclass(frozen=True)
class CodeFlow:
    https_only: bool
    allow_private: bool
    resolver: addresses.Resolver = addresses.system_resolve

    def _oauth(self, provider: Provider, client: Client) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=client.client_id,
            client_secret=client.client_secret or None,
            token_endpoint_auth_method=provider.token_auth_method,
            code_challenge_method="S256",
            redirect_uri=client.redirect_uri,
            scope=SCOPE,
            timeout=EXCHANGE_SECONDS,
            follow_redirects=False,
            trust_env=False,
            transport=CheckedTransport(
                https_only=self.https_only, allow_private=self.allow_private, resolver=self.resolver
            ),
        )

    async def authorization_url(
        self, provider: Provider, client: Client, *, state: str, nonce: str, code_verifier: str
    ) -> str:
        """Where to send the browser: ``response_type=code`` with the S256 challenge of ``code_verifier``."""
        async with self._oauth(provider, client) as oauth:
            url, _ = oauth.create_authorization_url(
                provider.authorization_endpoint, state=state, code_verifier=code_verifier, nonce=nonce
            )
        return str(url)

    async def exchange(self, provider: Provider, client: Client, *, code: str, code_verifier: str) -> dict[str, Any]:
        """The token response for ``code``; ExchangeFailed if the provider refused it or could not be reached."""
        try:
            async with self._oauth(provider, client) as oauth:
                token = await oauth.fetch_token(
                    provider.token_endpoint, grant_type="authorization_code", code=code, code_verifier=code_verifier
                )
        except OAuthError as exc:
            raise ExchangeFailed(f"Your identity provider refused the sign-in code ({exc.error}).") from None
        except addresses.UnsafeUrl as exc:
            raise ExchangeFailed(f"The identity provider's token endpoint {exc}.") from None
        except (httpx2.HTTPError, ValueError) as exc:
            raise ExchangeFailed(
                f"Your identity provider's token endpoint did not answer as expected ({type(exc).__name__})."
            ) from None
        if not isinstance(token, dict) or not isinstance(token.get("id_token"), str):
            raise ExchangeFailed("Your identity provider answered without an ID token (scope openid).")
        return dict(token)

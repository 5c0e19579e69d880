"""An identity provider as its discovery document describes it, and the keys it signs ID tokens with.

Both documents come from URLs an admin named, so they are fetched with ``DocumentFetcher`` (the webhook address
policy, a size cap). They change rarely and every sign-in needs them, so each is kept a few minutes; a key set
is fetched afresh when a token names a key it does not hold, which is how providers rotate keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cachetools import TTLCache
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization

from server.services import addresses
from server.services.documents import DocumentError, DocumentFetcher
from server.services.errors import ServiceError

DISCOVERY_PATH = "/.well-known/openid-configuration"
DOCUMENT_MAX_BYTES = 64 * 1024
KEPT_SECONDS = 300
# Signatures by the provider's published keys only: never "none", never a MAC keyed with the client secret.
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")

#: Discovery documents and key sets by URL, shared by every sign-in of the process.
DocumentCache = TTLCache[str, dict[str, Any]]


def document_cache() -> DocumentCache:
    return TTLCache(maxsize=256, ttl=KEPT_SECONDS)


class ProviderUnavailable(ServiceError):
    """The provider's discovery document or keys could not be read or do not describe a usable provider."""

    code = "provider_unreachable"


@dataclass(frozen=True)
class Provider:
    """What a sign-in needs of the discovery document (OpenID Connect Discovery 1.0, section 3)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]
    #: How the client secret goes to the token endpoint: ``client_secret_basic`` unless only ``_post`` is offered.
    token_auth_method: str
    #: Whether the provider names itself in its authorization responses (RFC 9207), which is then required.
    iss_parameter: bool


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + DISCOVERY_PATH


def same_issuer(a: str, b: str) -> bool:
    """Issuers compare as the admin typed them, but for one trailing slash some providers add."""
    return a.rstrip("/") == b.rstrip("/")


@dataclass(frozen=True)
class Providers:
    fetcher: DocumentFetcher
    cache: DocumentCache

    async def discover(self, issuer: str) -> Provider:
        """The provider at ``issuer``; ProviderUnavailable says what is wrong with it, in words for an admin."""
        url = discovery_url(issuer)
        document = await self._document(url, what="discovery document")
        found = document.get("issuer")
        # Discovery 1.0, section 4.3: the document must be about the issuer it was fetched for.
        if not isinstance(found, str) or not same_issuer(found, issuer):
            raise ProviderUnavailable(f"The discovery document at {url} names another issuer: {found!r}.")
        endpoints = {name: document.get(name) for name in ("authorization_endpoint", "token_endpoint", "jwks_uri")}
        for name, value in endpoints.items():
            if not isinstance(value, str):
                raise ProviderUnavailable(f"The discovery document at {url} has no {name}.")
            try:
                addresses.parse(value, https_only=self.fetcher.https_only)
            except addresses.UnsafeUrl as exc:
                raise ProviderUnavailable(f"The {name} of the discovery document at {url} {exc}.") from None
        offered = document.get("id_token_signing_alg_values_supported") or ["RS256"]
        algorithms = tuple(alg for alg in ASYMMETRIC if isinstance(offered, list) and alg in offered)
        if not algorithms:
            raise ProviderUnavailable(f"The provider at {issuer} signs ID tokens with none of {', '.join(ASYMMETRIC)}.")
        methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        post_only = (
            isinstance(methods, list) and "client_secret_post" in methods and "client_secret_basic" not in methods
        )
        return Provider(
            issuer=found,
            authorization_endpoint=str(endpoints["authorization_endpoint"]),
            token_endpoint=str(endpoints["token_endpoint"]),
            jwks_uri=str(endpoints["jwks_uri"]),
            algorithms=algorithms,
            token_auth_method="client_secret_post" if post_only else "client_secret_basic",
            iss_parameter=document.get("authorization_response_iss_parameter_supported") is True,
        )

    async def keys(self, provider: Provider, *, fresh: bool = False) -> KeySet:
        """The provider's JSON Web Key Set; ``fresh`` fetches it again, for a key the kept set lacks."""
        document = await self._document(provider.jwks_uri, what="key set", fresh=fresh)
        found = document.get("keys")
        try:
            if not isinstance(found, list):
                raise ValueError("no keys")
            return KeySet.import_key_set(KeySetSerialization(keys=found))
        except (JoseError, ValueError, KeyError, TypeError):
            self.cache.pop(provider.jwks_uri, None)
            raise ProviderUnavailable(f"The key set at {provider.jwks_uri} is not a usable JSON Web Key Set.") from None

    async def _document(self, url: str, *, what: str, fresh: bool = False) -> dict[str, Any]:
        if not fresh and (kept := self.cache.get(url)) is not None:
            return kept
        try:
            document = await self.fetcher.json_object(url, max_bytes=DOCUMENT_MAX_BYTES)
        except DocumentError as exc:
            raise ProviderUnavailable(f"Could not read the {what} at {url}: {exc}.") from None
        self.cache[url] = document
        return document

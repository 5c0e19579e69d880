"""The keys an external authorization server signs its access tokens with, found through its metadata.

Every request with an access token needs them, and they change rarely, so they are kept a few minutes. A token
that names a key the kept set lacks is how a server's key rotation first shows, so the set is then fetched
again, but at most once every ``RETRY_SECONDS``: a stream of tokens with made-up key ids cannot make Companion
call the server on every request. A failed fetch is not retried sooner either.

The issuer is the operator's setting, but its metadata names the key set's URL, so both are fetched with
``DocumentFetcher`` (the webhook address policy, no redirects, a size cap).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import KeySet, KeySetSerialization

from server.services.documents import DocumentError, DocumentFetcher

log = logging.getLogger(__name__)

DOCUMENT_MAX_BYTES = 64 * 1024
KEPT_SECONDS = 300.0
RETRY_SECONDS = 30.0


class IssuerUnavailable(Exception):
    """The server's metadata or key set could not be read or is not usable; the message says why, for operators."""


def metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be, in the order MCP clients try them: RFC 8414's well-known URI (inserted
    before the issuer's path), then OpenID Connect Discovery's, inserted and then appended."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    urls = [f"{origin}/.well-known/{name}{path}" for name in ("oauth-authorization-server", "openid-configuration")]
    if path:
        urls.append(f"{origin}{path}/.well-known/openid-configuration")
    return urls


@dataclass(frozen=True)
class _Kept:
    keys: KeySet
    at: float


class IssuerKeys:
    """One issuer's JSON Web Key Set, shared by every request of the process."""

    def __init__(self, issuer: str, fetcher: DocumentFetcher) -> None:
        self.issuer = issuer
        self.fetcher = fetcher
        self._kept: _Kept | None = None
        self._tried_at = -math.inf
        self._failure: str | None = None
        self._lock = asyncio.Lock()

    async def keys(self, *, lacking: KeySet | None = None) -> KeySet:
        """The issuer's keys: the kept set while it is fresh, unless it is ``lacking`` (a set that lacked the key a
        token names), in which case they are fetched again if the last fetch is old enough, and the same set comes
        back if not. IssuerUnavailable if there are none to use."""
        if (found := self._fresh(lacking)) is not None:
            return found
        async with self._lock:
            # Another request may have fetched them while this one waited.
            if (found := self._fresh(lacking)) is not None:
                return found
            if time.monotonic() - self._tried_at < RETRY_SECONDS:
                if self._failure is None and self._kept is not None:
                    return self._kept.keys
                raise IssuerUnavailable(self._failure or "its keys were not fetched yet")
            self._tried_at = time.monotonic()
            try:
                keys = await self._fetch()
            except IssuerUnavailable as exc:
                self._failure = str(exc)
                log.warning("The authorization server %s is not usable: %s", self.issuer, exc)
                raise
            self._failure = None
            self._kept = _Kept(keys, time.monotonic())
            return keys

    def _fresh(self, lacking: KeySet | None) -> KeySet | None:
        kept = self._kept
        if kept is None or kept.keys is lacking or time.monotonic() - kept.at >= KEPT_SECONDS:
            return None
        return kept.keys

    async def _fetch(self) -> KeySet:
        jwks_uri = await self._jwks_uri()
        try:
            document = await self.fetcher.json_object(jwks_uri, max_bytes=DOCUMENT_MAX_BYTES)
        except DocumentError as exc:
            raise IssuerUnavailable(f"could not read its key set at {jwks_uri}: {exc}") from None
        found = document.get("keys")
        try:
            if not isinstance(found, list):
                raise ValueError("no keys")
            return KeySet.import_key_set(KeySetSerialization(keys=found))
        except (JoseError, ValueError, KeyError, TypeError):
            raise IssuerUnavailable(f"the key set at {jwks_uri} is not a usable JSON Web Key Set") from None

    async def _jwks_uri(self) -> str:
        failures = []
        for url in metadata_urls(self.issuer):
            try:
                metadata = await self.fetcher.json_object(url, max_bytes=DOCUMENT_MAX_BYTES)
            except DocumentError as exc:
                failures.append(f"{url}: {exc}")
                continue
            # RFC 8414 section 3.3: metadata about another issuer must not be used.
            if metadata.get("issuer") != self.issuer:
                raise IssuerUnavailable(
                    f"its metadata at {url} names the issuer {metadata.get('issuer')!r}; set "
                    "COMPANION_AUTHORIZATION_SERVERS to exactly the issuer it names"
                )
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise IssuerUnavailable(f"its metadata at {url} has no jwks_uri")
            return jwks_uri
        raise IssuerUnavailable("no metadata found (" + "; ".join(failures) + ")")

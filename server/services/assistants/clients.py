"""The assistants that may ask people to sign in: registered ones (RFC 7591) and those named by the URL of their
Client ID Metadata Document.

Both kinds are strangers until a person consents. A registration is rate-limited per address, and one nobody
consents to expires. A metadata document is fetched under the webhook address policy, size-capped, kept for
an hour, and its ``redirect_uris`` bind the client exactly as a registration's do.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from pydantic import AnyUrl, ValidationError
from sqlalchemy import delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.services.documents import DocumentError, DocumentFetcher
from server.services.errors import InvalidInput
from store import throttle
from store.crypto import SecretBox
from store.db import Database
from store.models import AssistantClient, AssistantGrant, utcnow
from tools.summary import escape

REGISTERED = "registered"
DOCUMENT = "document"
DOCUMENT_MAX_BYTES = 5 * 1024
DOCUMENT_KEPT = timedelta(hours=1)
REGISTRATIONS = "oauth-registration"
DOCUMENTS = "oauth-client-document"
SECRET_CONTEXT = "assistant client secret"


class ClientRefused(InvalidInput):
    """A registration or metadata document that cannot stand for a client; ``fields`` names what is wrong."""


@dataclass(frozen=True)
class Client:
    """A client as the authorization server needs it, with its secret opened (None for a public client)."""

    client_id: str
    kind: str
    name: str
    client_uri: str | None
    redirect_uris: list[str]
    metadata: dict[str, Any]
    secret: str | None


def is_document_url(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


@dataclass
class AssistantClients:
    db: Database
    box: SecretBox
    fetcher: DocumentFetcher
    registrations_per_window: int
    unused_for: timedelta

    async def get(self, client_id: str, *, asked_from: str = "unknown") -> Client | None:
        """The client, its metadata document fetched if it is named by one and not kept from the last hour.

        Fetching costs an outbound request that anyone may cause by naming a URL, so fetches are counted per
        ``asked_from`` (the caller's address) with the registrations' limit."""
        async with self.db.session() as session:
            row = await session.scalar(select(AssistantClient).where(AssistantClient.client_id == client_id))
        if is_document_url(client_id):
            if row is None or row.fetched_at is None or utcnow() - row.fetched_at > DOCUMENT_KEPT:
                _check_document_url(client_id)
                if await throttle.take(self.db, throttle.Limit(DOCUMENTS, self.registrations_per_window), asked_from):
                    raise ClientRefused({"client_id": "too many metadata documents fetched for this address lately"})
                row = await self._fetch(client_id)
            return None if row is None else self._client(row)
        if row is None or await self._expired(row):
            return None
        return self._client(row)

    async def admit(self, address: str) -> int:
        """Count a registration from ``address``; 0 if it may go on, else the seconds until it may."""
        return await throttle.take(self.db, throttle.Limit(REGISTRATIONS, self.registrations_per_window), address)

    async def register(self, metadata: dict[str, Any], *, client_id: str, secret: str | None, address: str) -> None:
        """Keep a client that registered itself, with the id and secret the registration endpoint gave it."""
        redirects = _check_redirects(
            metadata.get("redirect_uris") or [], str(metadata.get("application_type") or "native")
        )
        home = _client_uri(metadata)
        async with self.db.transaction() as session:
            await self._forget_unused(session)
            session.add(
                AssistantClient(
                    client_id=client_id, kind=REGISTERED, name=_name(metadata),
                    client_uri=home, redirect_uris=redirects,
                    client_metadata=metadata, registered_from=address,
                    sealed_secret=self.box.seal(secret.encode(), context=SECRET_CONTEXT) if secret else None,
                )
            )  # fmt: skip

    async def _fetch(self, client_id: str) -> AssistantClient | None:
        try:
            document = await self.fetcher.json_object(client_id, max_bytes=DOCUMENT_MAX_BYTES)
        except DocumentError as exc:
            raise ClientRefused({"client_id": f"the client's metadata document could not be used: {exc}"}) from None
        redirects = _check_document(client_id, document)
        home = _client_uri(document)
        now = utcnow()
        async with self.db.transaction() as session:
            await self._forget_unused(session)
            row = await session.scalar(select(AssistantClient).where(AssistantClient.client_id == client_id))
            if row is None:
                row = AssistantClient(client_id=client_id, kind=DOCUMENT, created_at=now)
                session.add(row)
            row.name = _name(document)
            row.client_uri = home
            row.redirect_uris = redirects
            row.client_metadata = document
            row.fetched_at = now
            await session.flush()
        return row

    async def _expired(self, row: AssistantClient) -> bool:
        if utcnow() - row.created_at < self.unused_for:
            return False
        async with self.db.session() as session:
            used = await session.scalar(select(exists().where(AssistantGrant.client_ref == row.id)))
        return not used

    async def _forget_unused(self, session: AsyncSession) -> None:
        """Clients nobody consented to within ``unused_for`` are removed: registering one, or naming a metadata
        document, is free to anyone."""
        await session.execute(
            delete(AssistantClient).where(
                AssistantClient.created_at < utcnow() - self.unused_for,
                ~exists().where(AssistantGrant.client_ref == AssistantClient.id),
            )
        )

    def _client(self, row: AssistantClient) -> Client:
        secret = self.box.open(row.sealed_secret, context=SECRET_CONTEXT).decode() if row.sealed_secret else None
        return Client(
            client_id=row.client_id, kind=row.kind, name=row.name, client_uri=row.client_uri,
            redirect_uris=[_normal(uri) for uri in row.redirect_uris], metadata=dict(row.client_metadata),
            secret=secret,
        )  # fmt: skip


def _normal(uri: str) -> str:
    """A redirect URI in the one form the authorization endpoint compares (``http://h:1`` is ``http://h:1/``)."""
    try:
        return str(AnyUrl(uri))
    except ValidationError:
        return uri


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _name(metadata: dict[str, Any]) -> str:
    """The name people see on the consent and Assistants pages: one short line, with every hidden or look-alike
    character shown as an escape, as approvals show arguments (anyone can register any name)."""
    name = _text(metadata.get("client_name")) or ""
    return escape(" ".join(name.split()))[:200]


SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


def _checked_url(uri: object, field: str) -> str:
    """A URL in the one form the authorization endpoint compares, refused if it could read as another: no
    backslash, space or control, no user name or password (``https://claude.ai@evil.example``), an RFC 3986
    scheme, and a host in ASCII (a look-alike Unicode host must come as punycode, which the page shows)."""
    text = str(uri)
    if "\\" in text or any(char.isspace() or unicodedata.category(char)[0] == "C" for char in text):
        raise ClientRefused({field: f"{escape(text)} contains a backslash, a space or a control character"})
    parts = urlsplit(text)
    if not SCHEME.fullmatch(parts.scheme):
        raise ClientRefused({field: f"{escape(text)} has no valid scheme"})
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ClientRefused({field: f"{escape(text)} must not contain a user name or password"})
    if not parts.netloc.isascii():
        raise ClientRefused({field: f"{escape(text)}: write a non-ASCII host name in its punycode (xn--) form"})
    if parts.fragment:
        raise ClientRefused({field: f"{escape(text)} must not contain a fragment"})
    return _normal(text)


def _check_redirects(uris: list[Any], application_type: str) -> list[str]:
    """The redirect URIs, checked and normalised. A web client redirects to https (or a loopback address in
    development); a native one to a loopback address or its own scheme (RFC 8252)."""
    if not uris:
        raise ClientRefused({"redirect_uris": "at least one redirect URI is required"})
    checked = []
    for uri in uris:
        normal = _checked_url(uri, "redirect_uris")
        parts = urlsplit(normal)
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
        if application_type == "web" and not (parts.scheme == "https" or loopback):
            raise ClientRefused({"redirect_uris": f"{normal}: a web client's redirect URIs use https"})
        if parts.scheme == "http" and not loopback:
            raise ClientRefused({"redirect_uris": f"{normal}: plain http is allowed only to a loopback address"})
        if parts.scheme in ("javascript", "data", "file", "vbscript", "blob", "about"):
            raise ClientRefused({"redirect_uris": f"{normal}: the {parts.scheme} scheme cannot be a redirect URI"})
        checked.append(normal)
    return checked


def _client_uri(metadata: dict[str, Any]) -> str | None:
    """The client's home site, shown on the consent page: an https (or loopback http) URL, or none."""
    value = _text(metadata.get("client_uri"))
    if value is None:
        return None
    normal = _checked_url(value, "client_uri")
    parts = urlsplit(normal)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost")):
        raise ClientRefused({"client_uri": f"{normal}: a client's home site is an https URL"})
    return normal


def _check_document_url(client_id: str) -> None:
    """The URL forms the Client ID Metadata Document draft allows: https with a path, no credentials, fragment or
    dot segments (http only in development, where the fetcher allows loopback)."""
    parts = urlsplit(client_id)
    segments = parts.path.split("/")
    if not parts.netloc.isascii() or "\\" in client_id or "@" in parts.netloc:
        raise ClientRefused(
            {"client_id": "a client ID URL's host must be in ASCII (punycode), with no user name or backslash"}
        )
    if (
        parts.username
        or parts.password
        or parts.fragment
        or not parts.path.strip("/")
        or "." in segments
        or (".." in segments)
    ):
        raise ClientRefused(
            {"client_id": "a client ID URL must be https with a path, and no credentials, fragment or dot segments"}
        )


def _check_document(client_id: str, document: dict[str, Any]) -> list[str]:
    """The document's redirect URIs, checked and normalised, once the document can stand for this client."""
    if document.get("client_id") != client_id:
        raise ClientRefused({"client_id": "the metadata document's client_id is not the URL it was fetched from"})
    uris = document.get("redirect_uris")
    if not isinstance(uris, list) or not all(isinstance(uri, str) for uri in uris):
        raise ClientRefused({"redirect_uris": "the metadata document must list its redirect_uris"})
    if "client_secret" in document or document.get("token_endpoint_auth_method", "none") not in ("none",):
        raise ClientRefused(
            {"token_endpoint_auth_method": "a client named by a metadata document is public: it authenticates "
             "with PKCE alone ('none'), and holds no shared secret"}
        )  # fmt: skip
    for field in ("client_name", "client_uri", "scope", "application_type", "token_endpoint_auth_method"):
        if field in document and not isinstance(document[field], str):
            raise ClientRefused({field: "must be a string"})
    for field in ("grant_types", "response_types"):
        if field in document and not (
            isinstance(document[field], list) and all(isinstance(item, str) for item in document[field])
        ):
            raise ClientRefused({field: "must be a list of strings"})
    return _check_redirects(uris, str(document.get("application_type") or "native"))

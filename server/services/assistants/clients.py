"""The assistants that may ask people to sign in: registered ones (RFC 7591) and those named by the URL of their
Client ID Metadata Document.

Both kinds are strangers until a person consents. A registration is rate-limited per address, and one nobody
consents to expires. A metadata document is fetched under the webhook address policy, size-capped, kept for
an hour, and its ``redirect_uris`` bind the client exactly as a registration's do.
"""

from __future__ import annotations

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

REGISTERED = "registered"
DOCUMENT = "document"
DOCUMENT_MAX_BYTES = 5 * 1024
DOCUMENT_KEPT = timedelta(hours=1)
REGISTRATIONS = "oauth-registration"
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

    async def get(self, client_id: str) -> Client | None:
        """The client, its metadata document fetched if it is named by one and not kept from the last hour."""
        async with self.db.session() as session:
            row = await session.scalar(select(AssistantClient).where(AssistantClient.client_id == client_id))
        if is_document_url(client_id):
            if row is None or row.fetched_at is None or utcnow() - row.fetched_at > DOCUMENT_KEPT:
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
        _check_redirects(metadata.get("redirect_uris") or [], str(metadata.get("application_type") or "native"))
        async with self.db.transaction() as session:
            await self._forget_unused(session)
            session.add(
                AssistantClient(
                    client_id=client_id, kind=REGISTERED, name=_name(metadata),
                    client_uri=_text(metadata.get("client_uri")), redirect_uris=list(metadata["redirect_uris"]),
                    client_metadata=metadata, registered_from=address,
                    sealed_secret=self.box.seal(secret.encode(), context=SECRET_CONTEXT) if secret else None,
                )
            )  # fmt: skip

    async def _fetch(self, client_id: str) -> AssistantClient | None:
        _check_document_url(client_id)
        try:
            document = await self.fetcher.json_object(client_id, max_bytes=DOCUMENT_MAX_BYTES)
        except DocumentError as exc:
            raise ClientRefused({"client_id": f"the client's metadata document could not be used: {exc}"}) from None
        _check_document(client_id, document)
        now = utcnow()
        async with self.db.transaction() as session:
            row = await session.scalar(select(AssistantClient).where(AssistantClient.client_id == client_id))
            if row is None:
                row = AssistantClient(client_id=client_id, kind=DOCUMENT, created_at=now)
                session.add(row)
            row.name = _name(document)
            row.client_uri = _text(document.get("client_uri"))
            row.redirect_uris = list(document["redirect_uris"])
            row.client_metadata = document
            row.fetched_at = now
            await session.flush()
        return row

    async def _expired(self, row: AssistantClient) -> bool:
        if row.kind != REGISTERED or utcnow() - row.created_at < self.unused_for:
            return False
        async with self.db.session() as session:
            used = await session.scalar(select(exists().where(AssistantGrant.client_ref == row.id)))
        return not used

    async def _forget_unused(self, session: AsyncSession) -> None:
        """Registered clients nobody consented to within ``unused_for`` are removed (registrations are free)."""
        await session.execute(
            delete(AssistantClient).where(
                AssistantClient.kind == REGISTERED,
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
    name = _text(metadata.get("client_name")) or ""
    # A name is shown to people on the consent page; keep it one short line.
    return " ".join(name.split())[:200]


def _check_redirects(uris: list[Any], application_type: str) -> None:
    """A web client redirects to https (or a loopback address in development); a native one to a loopback
    address or its own scheme (RFC 8252). Neither may redirect with a fragment."""
    if not uris:
        raise ClientRefused({"redirect_uris": "at least one redirect URI is required"})
    for uri in uris:
        parts = urlsplit(str(uri))
        loopback = parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.fragment:
            raise ClientRefused({"redirect_uris": f"{uri} must not contain a fragment"})
        if application_type == "web" and not (parts.scheme == "https" or loopback):
            raise ClientRefused({"redirect_uris": f"{uri}: a web client's redirect URIs use https"})
        if parts.scheme == "http" and not loopback:
            raise ClientRefused({"redirect_uris": f"{uri}: plain http is allowed only to a loopback address"})
        if parts.scheme in ("javascript", "data", "file", "vbscript"):
            raise ClientRefused({"redirect_uris": f"{uri}: the {parts.scheme} scheme cannot be a redirect URI"})


def _check_document_url(client_id: str) -> None:
    """The URL forms the Client ID Metadata Document draft allows: https with a path, no credentials, fragment or
    dot segments (http only in development, where the fetcher allows loopback)."""
    parts = urlsplit(client_id)
    segments = parts.path.split("/")
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


def _check_document(client_id: str, document: dict[str, Any]) -> None:
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
    _check_redirects(uris, str(document.get("application_type") or "native"))

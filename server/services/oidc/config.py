"""A workspace's identity provider as its admins set it: issuer, client id, the sealed client secret, whether
people it vouches for may get an account on first sign-in, and whether it is on.

The secret is written, never read back: answers say only whether one is stored. It is kept for the issuer and
client id it came with; changing either needs the secret again, so no one can send the stored secret to a
provider of their choosing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from server.services import addresses
from store.crypto import SecretBox
from store.models import WorkspaceSignIn
from store.sealing import sign_in_secret_context

MAX_ISSUER = 2000
MAX_CLIENT_ID = 500
MAX_SECRET = 2000


@dataclass(frozen=True)
class SignInConfig:
    """What an admin sees of the setting; never the secret."""

    configured: bool
    issuer: str
    client_id: str
    client_secret_set: bool
    create_users: bool
    enabled: bool
    updated_at: datetime | None


NOT_CONFIGURED = SignInConfig(False, "", "", False, False, False, None)


@dataclass(frozen=True)
class ConfigChange:
    """What an admin sends; an empty ``client_secret`` keeps the stored one where that is allowed."""

    issuer: str
    client_id: str
    client_secret: str
    create_users: bool
    enabled: bool


def view(row: WorkspaceSignIn | None) -> SignInConfig:
    if row is None:
        return NOT_CONFIGURED
    return SignInConfig(True, row.issuer, row.client_id, True, row.create_users, row.enabled, row.updated_at)


def problems(change: ConfigChange, stored: WorkspaceSignIn | None, *, https_only: bool) -> dict[str, str]:
    """Each field that cannot be saved as sent, with what is wrong, in words for the admin."""
    found: dict[str, str] = {}
    scheme = urlsplit(change.issuer).scheme.lower()
    if scheme != "https" and (https_only or scheme != "http"):
        found["issuer"] = "must be your provider's https URL, such as https://login.example.com"
    else:
        try:
            if addresses.parse(change.issuer, https_only=https_only).parts.query:
                found["issuer"] = "must not contain a query (?...): it is the URL your provider names as its issuer"
        except addresses.UnsafeUrl as exc:
            found["issuer"] = str(exc)
    if not change.client_id or len(change.client_id) > MAX_CLIENT_ID:
        found["client_id"] = f"enter the client id your provider gave you (at most {MAX_CLIENT_ID} characters)"
    elif not change.client_id.isprintable():
        found["client_id"] = "must not contain control characters"
    if len(change.client_secret) > MAX_SECRET or not change.client_secret.isprintable():
        found["client_secret"] = f"must be at most {MAX_SECRET} printable characters"
    elif not change.client_secret:
        if stored is None:
            found["client_secret"] = "enter the client secret your provider gave you"
        elif (stored.issuer, stored.client_id) != (change.issuer, change.client_id):
            found["client_secret"] = (
                "enter the client secret again: the stored one belongs to the old issuer and client id"
            )
    return found


def apply(
    session: AsyncSession,
    box: SecretBox,
    stored: WorkspaceSignIn | None,
    change: ConfigChange,
    *,
    workspace_id: str,
    admin_id: str,
) -> WorkspaceSignIn:
    """Write a change that ``problems`` found nothing wrong with; the secret is sealed to this workspace."""
    row = stored or WorkspaceSignIn(workspace_id=workspace_id)
    row.issuer, row.client_id = change.issuer, change.client_id
    row.create_users, row.enabled, row.updated_by = change.create_users, change.enabled, admin_id
    if change.client_secret:
        row.sealed_client_secret = box.seal(change.client_secret.encode(), context=sign_in_secret_context(workspace_id))
    if stored is None:
        session.add(row)
    return row


def client_secret(box: SecretBox, row: WorkspaceSignIn) -> str:
    return box.open(row.sealed_client_secret, context=sign_in_secret_context(row.workspace_id)).decode()

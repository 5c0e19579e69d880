"""Single-use links in approval e-mails: one per approver and approval, kept as the SHA-256 of its secret.

Whoever holds the secret holds the link, so the database keeps only its digest: a dump of it opens nothing.
A link is bound to one approver, one approval and that approval's expiry. Reading it (``find``) changes
nothing, because mail scanners and browsers' prefetchers open links nobody clicked; only ``use``, one
conditional UPDATE run in the transaction that decides, spends it, so two posts of one link cannot both win.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import rows_matched
from store.models import ApprovalLink, utcnow

# 256 bits: not guessable, and short enough for one line of a plain-text e-mail.
SECRET_BYTES = 32


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def issue(session: AsyncSession, *, approval_id: str, user_id: str, expires_at: datetime) -> str:
    """A new link for ``user_id`` to decide ``approval_id`` until ``expires_at``; its secret, shown only in the
    e-mail."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    session.add(ApprovalLink(digest=digest(secret), approval_id=approval_id, user_id=user_id, expires_at=expires_at))
    return secret


async def find(session: AsyncSession, secret: str) -> ApprovalLink | None:
    """The link with this secret, used or not, expired or not; None for a secret no link has."""
    if not secret:
        return None
    return await session.scalar(select(ApprovalLink).where(ApprovalLink.digest == digest(secret)))


def is_expired(link: ApprovalLink, now: datetime | None = None) -> bool:
    return link.expires_at <= (now or utcnow())


async def use(session: AsyncSession, link_id: str) -> bool:
    """Spend the link if it is still unused and unexpired; False if another request spent it first, or its time
    is up. It stays spent only if the caller's transaction commits."""
    now = utcnow()
    spent = await session.execute(
        update(ApprovalLink)
        .where(ApprovalLink.id == link_id, ApprovalLink.used_at.is_(None), ApprovalLink.expires_at > now)
        .values(used_at=now)
    )
    return rows_matched(spent) == 1

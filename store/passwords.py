"""Passwords for web sign-in, kept as argon2id hashes (argon2-cffi's memory-hard defaults, RFC 9106).

Hashing takes tens of milliseconds and tens of megabytes on purpose, so the
request path runs it in a worker thread rather than on the event loop.
"""

from __future__ import annotations

import hashlib

import anyio
import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import User

MIN_LENGTH = 10
_hasher = PasswordHasher()
# Each hash holds 64 MiB for its duration; a few at once keep a burst of sign-ins from exhausting memory.
_at_once: list[anyio.CapacityLimiter] = []


def _limiter() -> anyio.CapacityLimiter:
    if not _at_once:
        _at_once.append(anyio.CapacityLimiter(4))
    return _at_once[0]


# Verified against when the e-mail is unknown, so a stranger cannot tell known addresses by timing.
_NOBODY = _hasher.hash("no one has this password")


class PasswordError(ValueError):
    """A password that may not be set; the message says why."""


def check_strength(password: str, *, email: str = "") -> None:
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"password: use at least {MIN_LENGTH} characters")
    if len(password) > 1024:
        raise PasswordError("password: use at most 1024 characters")
    if email and password.strip().lower() == email.strip().lower():
        raise PasswordError("password: must not be your e-mail address")


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher.hash, password, limiter=_limiter())


async def set_password(session: AsyncSession, user: User, password: str) -> None:
    check_strength(password, email=user.email)
    user.password_hash = await hash_password(password)
    await session.flush()


def _matches(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify(user: User | None, password: str) -> bool:
    """True when ``password`` is the user's; always spends the same work, known user or not."""
    stored = user.password_hash if user is not None and user.password_hash else _NOBODY
    matched = await anyio.to_thread.run_sync(_matches, stored, password, limiter=_limiter())
    return matched and user is not None and user.password_hash is not None


def fingerprint(user: User) -> str:
    """A short tag of the current hash: sessions carry it, so changing the password ends them all."""
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]

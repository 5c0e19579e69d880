"""One exception class per error the API answers, so callers catch what they can handle and let the rest rise.

Every error answer has the shape ``{"error": {"code", "message", "details"}}``;
the class is chosen by the HTTP status and carries those three fields as they
came. A status with no class of its own (400, 409, 413, 415, ...) raises the
base ``HarmonyError``, whose ``code`` still says what happened.
"""

from __future__ import annotations

from typing import Any


class HarmonyError(Exception):
    """The API answered an error: ``status`` is the HTTP status, ``code`` the API's error code."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}


class Unauthorized(HarmonyError):
    """401: the key is missing, unknown or revoked."""


class Forbidden(HarmonyError):
    """403: the key is valid but may not do this (an agent key managing keys, a plan that does not allow it)."""


class NotFound(HarmonyError):
    """404: no such object, or one the key may not see; the API does not say which."""


class InvalidRequest(HarmonyError):
    """422: the request named bad values; ``fields`` maps each field to its problem."""

    @property
    def fields(self) -> dict[str, str]:
        fields = self.details.get("fields")
        return dict(fields) if isinstance(fields, dict) else {}


class RateLimited(HarmonyError):
    """429: the key used its requests for this minute; ``retry_after`` is how many seconds to wait, when known."""

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None, *, retry_after: float | None
    ) -> None:
        super().__init__(status, code, message, details)
        self.retry_after = retry_after


class ServerError(HarmonyError):
    """5xx: something failed on the server's side (or a proxy in front of it); the request may be tried again."""


class SignatureError(Exception):
    """A webhook delivery that is not provably from Harmony and fresh: answer 400 and ignore it."""

"""What an app's ``classify`` hook may say about a provider's answer.

The manifest binds the hook and the shared client (``tools.provider``) acts on what it reads; both import it
from here, so neither needs the other for the type.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import httpx


class Reading(StrEnum):
    """What an app's ``classify`` hook reads in a provider's answer that the HTTP status alone misstates."""

    #: The provider did nothing and asks to slow down: sent again after Retry-After (or a backoff), like a 429.
    RATE_LIMITED = "rate_limited"
    #: The provider refused the credentials in its own words: refreshed once and sent again, like a 401.
    REFUSED_TOKEN = "refused_token"
    #: Whatever the status, the thing asked about does not exist.
    NOT_FOUND = "not_found"


Classify = Callable[[httpx.Response], Reading | None]
"""An app's hook: called on every answer, success or not; None leaves the answer to its HTTP status."""

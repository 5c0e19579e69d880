"""The HTTP status of each kind of refusal, for the two HTTP front ends: REST and the console.

Use cases refuse with a code (``store.errors.CompanionError``) and never an HTTP status; this table is
where the codes meet HTTP, once, so the API and the console answer the same refusal alike.
"""

from __future__ import annotations

from store.errors import CompanionError

STATUS_OF_CODE = {
    "bad_request": 400,
    "oauth_refused": 400,
    "invalid_arguments": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "gone": 410,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_request": 422,
    "not_configured": 422,
    "rate_limited": 429,
    "provider_unreachable": 502,
}


def status_of(error: CompanionError) -> int:
    """The status a refusal answers with: by its code, and 400 for a code no table row names."""
    return STATUS_OF_CODE.get(error.code, 400)

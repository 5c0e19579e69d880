"""What Google's APIs share (Gmail, Calendar, People): how they say "slow down".

Not an app: the Google apps' adapters point their ``api.classify`` here.
"""

from __future__ import annotations

import httpx

from tools.provider import Reading, json_body

#: Google says "slow down" with a 403 and one of these reasons as often as with a 429.
RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}


def classify(response: httpx.Response) -> Reading | None:
    """A 403 whose reason is a rate limit is one: retried after Retry-After, never reported as a refusal."""
    if response.status_code != 403:
        return None
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    errors = error.get("errors") if isinstance(error, dict) else None
    reasons = {e.get("reason") for e in errors if isinstance(e, dict)} if isinstance(errors, list) else set()
    return Reading.RATE_LIMITED if reasons & RATE_LIMIT_REASONS else None

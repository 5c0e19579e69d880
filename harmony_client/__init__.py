"""harmony_client: the Python SDK of the Harmony API (``/api/v1``), typed, sync and async.

    from harmony_client import Harmony

    harmony = Harmony(api_key="hck_...", base_url="http://127.0.0.1:8000/api/v1")
    for meeting in harmony.meetings.list(date_from="2026-01-25", date_to="2026-02-01"):
        print(meeting.title, meeting.status)

It talks HTTP only and imports nothing from the server, so it installs and
runs anywhere the API is reachable. See docs/python-client.md.
"""

from harmony_client import webhooks
from harmony_client._http import VERSION as __version__
from harmony_client.client import AsyncHarmony, Harmony
from harmony_client.errors import (
    Forbidden,
    HarmonyError,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    SignatureError,
    Unauthorized,
)
from harmony_client.pagination import AsyncPager, SyncPager

__all__ = [
    "AsyncHarmony",
    "AsyncPager",
    "Forbidden",
    "Harmony",
    "HarmonyError",
    "InvalidRequest",
    "NotFound",
    "RateLimited",
    "ServerError",
    "SignatureError",
    "SyncPager",
    "Unauthorized",
    "__version__",
    "webhooks",
]

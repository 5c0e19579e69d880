"""The two clients: ``Harmony`` for ordinary code, ``AsyncHarmony`` for asyncio (or trio) code.

Both take the same options and have the same resources; each owns one HTTP
connection pool, so make one client and share it, and close it when done
(``with Harmony(...) as harmony:`` does).
"""

from __future__ import annotations

from types import TracebackType

import httpx

from harmony_client._http import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, AsyncHttp, SyncHttp
from harmony_client.models import RateLimit
from harmony_client.resources.approvals import Approvals, AsyncApprovals
from harmony_client.resources.contacts import AsyncContacts, Contacts
from harmony_client.resources.insights import AsyncInsights, Insights
from harmony_client.resources.integrations import AsyncIntegrations, Integrations
from harmony_client.resources.keys import AsyncKeys, Keys
from harmony_client.resources.meetings import AsyncMeetings, Meetings
from harmony_client.resources.rules import AsyncRules, Rules


class Harmony:
    """The Harmony API.

    ``api_key`` defaults to ``$HARMONY_API_KEY``; ``base_url`` (the API root,
    ending in ``/api/v1``) to ``$HARMONY_BASE_URL``, then to a local
    ``companion serve``. ``max_retries`` bounds the retries after a 429 (and
    after a 5xx on reads); 0 turns them off. ``transport`` replaces the
    network, for tests (``httpx.MockTransport``) or a custom proxy setup.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = SyncHttp(api_key, base_url, timeout, max_retries, transport)
        self.meetings = Meetings(self._http)
        self.contacts = Contacts(self._http)
        self.insights = Insights(self._http)
        self.keys = Keys(self._http)
        self.approvals = Approvals(self._http)
        self.rules = Rules(self._http)
        self.integrations = Integrations(self._http)

    @property
    def rate_limit(self) -> RateLimit | None:
        """The key's rate limit as of the last answer; None before the first."""
        return self._http.rate_limit

    def close(self) -> None:
        self._http.client.close()

    def __enter__(self) -> Harmony:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


class AsyncHarmony:
    """The Harmony API for async code; options as for ``Harmony``, with an ``httpx.AsyncBaseTransport``."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = AsyncHttp(api_key, base_url, timeout, max_retries, transport)
        self.meetings = AsyncMeetings(self._http)
        self.contacts = AsyncContacts(self._http)
        self.insights = AsyncInsights(self._http)
        self.keys = AsyncKeys(self._http)
        self.approvals = AsyncApprovals(self._http)
        self.rules = AsyncRules(self._http)
        self.integrations = AsyncIntegrations(self._http)

    @property
    def rate_limit(self) -> RateLimit | None:
        """The key's rate limit as of the last answer; None before the first."""
        return self._http.rate_limit

    async def aclose(self) -> None:
        await self._http.client.aclose()

    async def __aenter__(self) -> AsyncHarmony:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

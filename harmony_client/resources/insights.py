"""``client.insights``: what Harmony drew from meetings (topics, risks, sentiment, next steps), with their data."""

from __future__ import annotations

from harmony_client._http import AsyncHttp, SyncHttp, query, segment
from harmony_client.models import Insight, InsightData, InsightDetail
from harmony_client.pagination import AsyncPager, SyncPager


class Insights:
    def __init__(self, http: SyncHttp) -> None:
        self._http = http

    def list(self, *, meeting_id: str | None = None, kind: str | None = None, per_page: int = 20) -> SyncPager[Insight]:
        """Every insight of the meetings the key may see, newest first; filter by meeting or kind."""
        return SyncPager(self._http, "/insights", Insight, query(meeting_id=meeting_id, kind=kind, per_page=per_page))

    def get(self, insight_id: str) -> InsightDetail:
        return self._http.get(f"/insights/{segment(insight_id)}", InsightDetail)

    def data(self, insight_id: str) -> InsightData:
        return self._http.get(f"/insights/{segment(insight_id)}/data", InsightData)


class AsyncInsights:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http

    def list(
        self, *, meeting_id: str | None = None, kind: str | None = None, per_page: int = 20
    ) -> AsyncPager[Insight]:
        return AsyncPager(self._http, "/insights", Insight, query(meeting_id=meeting_id, kind=kind, per_page=per_page))

    async def get(self, insight_id: str) -> InsightDetail:
        return await self._http.get(f"/insights/{segment(insight_id)}", InsightDetail)

    async def data(self, insight_id: str) -> InsightData:
        return await self._http.get(f"/insights/{segment(insight_id)}/data", InsightData)

"""Insights: what Harmony drew from meetings (topics, sentiment, risks), with their data."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from server.api.auth import api_caller
from server.api.errors import ApiError
from server.api.resources import InsightData, InsightDetail, InsightFilters, InsightOut, insight_out
from server.api.router import ApiRouter
from server.api.services import services_of
from server.services.pages import Page, paginate
from store.models import Insight, Meeting
from store.principal import Principal
from store.sharing import visible_meetings

api = ApiRouter("Insights")


async def _insight(session: AsyncSession, principal: Principal, insight_id: str) -> Insight:
    insight = await session.scalar(
        select(Insight)
        .join(Meeting, Meeting.id == Insight.meeting_id)
        .where(Insight.id == insight_id, visible_meetings(principal))
    )
    if insight is None:
        raise ApiError(404, "Insight not found")
    return insight


@api.get("/insights", query=InsightFilters, response=Page[InsightOut], summary="List insights")
async def list_insights(request: Request, query: InsightFilters) -> Page[InsightOut]:
    """Insights of the meetings the key's person may see, newest first."""
    principal = api_caller(request)
    found = select(Insight).join(Meeting, Meeting.id == Insight.meeting_id).where(visible_meetings(principal))
    if query.meeting_id:
        found = found.where(Insight.meeting_id == query.meeting_id)
    if query.kind:
        found = found.where(Insight.kind == query.kind)
    async with services_of(request).db.session() as session:
        rows, pagination = await paginate(
            session, found, (Insight.created_at, Insight.id), query, key=lambda i: (i.created_at, i.id)
        )
    return Page[InsightOut](data=[insight_out(i) for i in rows], pagination=pagination)


@api.get("/insights/{id}", response=InsightDetail, errors=(404,), summary="Get insight details")
async def get_insight(request: Request) -> InsightDetail:
    principal = api_caller(request)
    async with services_of(request).db.session() as session:
        insight = await _insight(session, principal, request.path_params["id"])
    return InsightDetail.model_validate(insight)


@api.get("/insights/{id}/data", response=InsightData, errors=(404,), summary="Get insight data")
async def get_insight_data(request: Request) -> InsightData:
    principal = api_caller(request)
    async with services_of(request).db.session() as session:
        insight = await _insight(session, principal, request.path_params["id"])
    return InsightData(insight_id=insight.id, kind=insight.kind, data=dict(insight.data or {}))

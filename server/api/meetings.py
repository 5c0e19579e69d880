"""Meetings: list with filters, one meeting, its transcript, summary and insights.

Every query goes through Harmony's sharing rules (``store.sharing``): a
meeting the key's person may not see answers 404, exactly like one that does
not exist, so the API never tells that it is there.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from server.api.auth import api_caller
from server.api.errors import ApiError
from server.api.resources import (
    InsightOut,
    MeetingDetail,
    MeetingFilters,
    MeetingOut,
    SummaryOut,
    TranscriptOut,
    action_item_out,
    contact_out,
    insight_out,
    meeting_out,
    summary_out,
    transcript_line,
)
from server.api.router import ApiRouter
from server.api.services import services_of
from server.services.pages import Page, PageQuery, paginate
from store.meetings import parts_of
from store.models import Insight, Meeting, Summary, Team, TranscriptSegment, User
from store.principal import Principal
from store.sharing import visible_meetings
from tools.times import start_of

api = ApiRouter("Meetings")


async def visible_meeting(session: AsyncSession, principal: Principal, meeting_id: str) -> Meeting:
    meeting = await session.scalar(select(Meeting).where(Meeting.id == meeting_id, visible_meetings(principal)))
    if meeting is None:
        raise ApiError(404, "Meeting not found")
    return meeting


@api.get("/meetings", query=MeetingFilters, response=Page[MeetingOut], summary="List meetings")
async def list_meetings(request: Request, query: MeetingFilters) -> Page[MeetingOut]:
    """Meetings the key's person may see, newest first. Filters combine; dates are whole UTC days, inclusive."""
    principal = api_caller(request)
    found = select(Meeting).where(visible_meetings(principal))
    if query.date_from:
        found = found.where(Meeting.date >= start_of(query.date_from))
    if query.date_to:
        found = found.where(Meeting.date < start_of(query.date_to + timedelta(days=1)))
    if query.status:
        found = found.where(Meeting.status == query.status)
    if query.team_id:
        found = found.where(Meeting.team_id == query.team_id)
    if query.user_id:
        found = found.where(Meeting.owner_id == query.user_id)
    async with services_of(request).db.session() as session:
        rows, pagination = await paginate(
            session, found, (Meeting.date, Meeting.id), query, key=lambda m: (m.date, m.id)
        )
    return Page[MeetingOut](data=[meeting_out(m) for m in rows], pagination=pagination)


@api.get("/meetings/{id}", response=MeetingDetail, errors=(404,), summary="Get meeting details")
async def get_meeting(request: Request) -> MeetingDetail:
    principal = api_caller(request)
    async with services_of(request).db.session() as session:
        meeting = await visible_meeting(session, principal, request.path_params["id"])
        team = await session.scalar(select(Team.name).where(Team.id == meeting.team_id)) if meeting.team_id else None
        owner = (
            await session.scalar(select(User.email).where(User.id == meeting.owner_id)) if meeting.owner_id else None
        )
        parts = await parts_of(session, meeting.id)
        return MeetingDetail(
            **meeting_out(meeting).model_dump(),
            team=team,
            owner=owner,
            contacts=[contact_out(c) for c in parts.contacts],
            action_items=[action_item_out(i) for i in parts.action_items],
            transcript_segments=parts.transcript_segments,
            has_summary=parts.has_summary,
        )


@api.get("/meetings/{id}/transcript", response=TranscriptOut, errors=(404,), summary="Get transcript")
async def get_transcript(request: Request) -> TranscriptOut:
    """The transcript in speaking order; empty until the meeting is processed."""
    principal = api_caller(request)
    async with services_of(request).db.session() as session:
        meeting = await visible_meeting(session, principal, request.path_params["id"])
        segments = await session.scalars(
            select(TranscriptSegment)
            .where(TranscriptSegment.meeting_id == meeting.id)
            .order_by(TranscriptSegment.position)
        )
        return TranscriptOut(meeting_id=meeting.id, transcript=[transcript_line(s) for s in segments])


@api.get("/meetings/{id}/summary", response=SummaryOut, errors=(404,), summary="Get summary")
async def get_summary(request: Request) -> SummaryOut:
    """The summary; 404 with the meeting's status while there is none yet."""
    principal = api_caller(request)
    async with services_of(request).db.session() as session:
        meeting = await visible_meeting(session, principal, request.path_params["id"])
        summary = await session.get(Summary, meeting.id)
        if summary is None:
            raise ApiError(404, f"Meeting {meeting.id} has no summary yet", details={"status": meeting.status.value})
        return summary_out(summary)


@api.get("/meetings/{id}/insights", query=PageQuery, response=Page[InsightOut], errors=(404,), summary="Get insights")
async def get_meeting_insights(request: Request, query: PageQuery) -> Page[InsightOut]:
    principal = api_caller(request)
    async with services_of(request).db.session() as session:
        meeting = await visible_meeting(session, principal, request.path_params["id"])
        found = select(Insight).where(Insight.meeting_id == meeting.id)
        rows, pagination = await paginate(
            session, found, (Insight.created_at, Insight.id), query, key=lambda i: (i.created_at, i.id)
        )
    return Page[InsightOut](data=[insight_out(i) for i in rows], pagination=pagination)

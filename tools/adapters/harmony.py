"""Harmony's own meeting data. Its "provider API" is the integration store itself.

Every query goes through the sharing rules in ``store.sharing``, so a tool
never shows a member a meeting the web app would hide from them; an object the
caller may not see is reported as not found, never as forbidden.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import Field
from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from manifests import MANIFEST_DIR
from store.meetings import parts_of
from store.models import (
    ActionItem,
    Contact,
    Insight,
    Meeting,
    MeetingContact,
    MeetingStatus,
    Summary,
    Team,
    User,
)
from store.sharing import visible_contacts, visible_meetings
from tools.arguments import Arguments
from tools.context import ToolContext
from tools.errors import NotFound
from tools.pagination import keyset, page_of
from tools.times import hms, start_of

#: The manifest this adapter carries out; the entry point in pyproject.toml registers the pair.
MANIFEST = MANIFEST_DIR / "harmony.yaml"


class ListMeetings(Arguments):
    date_from: date | None = None
    date_to: date | None = None
    status: MeetingStatus | None = None
    query: str | None = None
    contact_email: str | None = None
    limit: int = 20
    cursor: str | None = None


class MeetingRef(Arguments):
    meeting_id: str


class ListInsights(Arguments):
    meeting_id: str | None = None
    kind: str | None = None
    limit: int = 20
    cursor: str | None = None


class SearchContacts(Arguments):
    query: str | None = None
    limit: int = 20
    cursor: str | None = None


class ContactRef(Arguments):
    contact_id: str | None = None
    email: str | None = None


class CreateActionItem(Arguments):
    meeting_id: str
    text: str = Field(min_length=1)
    assignee_email: str | None = None
    due_date: date | None = None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _meeting_row(meeting: Meeting, team: str | None, owner: str | None) -> dict[str, Any]:
    return {
        "id": meeting.id,
        "title": meeting.title,
        "date": _iso(meeting.date),
        "duration": meeting.duration,
        "status": meeting.status.value,
        "team": team,
        "owner": owner,
    }


def _meetings_with_names(ctx: ToolContext) -> Select[Meeting, str | None, str | None]:
    return (
        select(Meeting, Team.name, User.email)
        .outerjoin(Team, Team.id == Meeting.team_id)
        .outerjoin(User, User.id == Meeting.owner_id)
        .where(visible_meetings(ctx.principal))
    )


async def _visible_meeting(ctx: ToolContext, session: AsyncSession, meeting_id: str) -> Meeting:
    meeting = await session.scalar(select(Meeting).where(Meeting.id == meeting_id, visible_meetings(ctx.principal)))
    if meeting is None:
        raise NotFound(f"No meeting {meeting_id} in this workspace that you can see")
    return meeting


async def list_meetings(ctx: ToolContext, args: ListMeetings) -> dict[str, Any]:
    query = _meetings_with_names(ctx)
    if args.date_from:
        query = query.where(Meeting.date >= start_of(args.date_from))
    if args.date_to:
        query = query.where(Meeting.date < start_of(args.date_to + timedelta(days=1)))
    if args.status:
        query = query.where(Meeting.status == args.status)
    if args.query:
        query = query.where(func.lower(Meeting.title).contains(args.query.lower(), autoescape=True))
    if args.contact_email:
        query = query.where(
            Meeting.id.in_(
                select(MeetingContact.meeting_id)
                .join(Contact, Contact.id == MeetingContact.contact_id)
                .where(func.lower(Contact.email) == args.contact_email.lower())
            )
        )
    query = keyset(query, (Meeting.date, Meeting.id), cursor=args.cursor, limit=args.limit, descending=True)
    async with ctx.sessions() as session:
        rows = (await session.execute(query)).all()
    page, next_cursor = page_of(rows, args.limit, lambda row: (row[0].date, row[0].id))
    return {"meetings": [_meeting_row(*row) for row in page], "next_cursor": next_cursor}


async def get_meeting(ctx: ToolContext, args: MeetingRef) -> dict[str, Any]:
    async with ctx.sessions() as session:
        row = (await session.execute(_meetings_with_names(ctx).where(Meeting.id == args.meeting_id))).one_or_none()
        if row is None:
            raise NotFound(f"No meeting {args.meeting_id} in this workspace that you can see")
        parts = await parts_of(session, row[0].id)
        return {
            **_meeting_row(*row),
            "contacts": [_contact_row(c) for c in parts.contacts],
            "action_items": [_action_item_row(i) for i in parts.action_items],
            "transcript_segments": parts.transcript_segments,
            "has_summary": parts.has_summary,
        }


async def get_transcript(ctx: ToolContext, args: MeetingRef) -> dict[str, Any]:
    async with ctx.sessions() as session:
        meeting = await session.scalar(
            select(Meeting)
            .options(selectinload(Meeting.segments))
            .where(Meeting.id == args.meeting_id, visible_meetings(ctx.principal))
        )
        if meeting is None:
            raise NotFound(f"No meeting {args.meeting_id} in this workspace that you can see")
        return {
            "meeting_id": meeting.id,
            "title": meeting.title,
            "transcript": [
                {"speaker": s.speaker, "text": s.text, "timestamp": hms(s.offset_seconds)} for s in meeting.segments
            ],
        }


async def get_summary(ctx: ToolContext, args: MeetingRef) -> dict[str, Any]:
    async with ctx.sessions() as session:
        meeting = await _visible_meeting(ctx, session, args.meeting_id)
        summary = await session.get(Summary, meeting.id)
        if summary is None:
            raise NotFound(f"Meeting {meeting.id} has no summary yet (status: {meeting.status.value})")
        return {
            "meeting_id": meeting.id,
            "title": meeting.title,
            "summary": summary.text,
            "key_points": list(summary.key_points),
        }


async def list_insights(ctx: ToolContext, args: ListInsights) -> dict[str, Any]:
    query = select(Insight).join(Meeting, Meeting.id == Insight.meeting_id).where(visible_meetings(ctx.principal))
    if args.meeting_id:
        query = query.where(Insight.meeting_id == args.meeting_id)
    if args.kind:
        query = query.where(Insight.kind == args.kind)
    query = keyset(query, (Insight.created_at, Insight.id), cursor=args.cursor, limit=args.limit, descending=True)
    async with ctx.sessions() as session:
        rows = list(await session.scalars(query))
    page, next_cursor = page_of(rows, args.limit, lambda insight: (insight.created_at, insight.id))
    return {
        "insights": [
            {
                "id": i.id,
                "meeting_id": i.meeting_id,
                "kind": i.kind,
                "title": i.title,
                "data": i.data,
                "created_at": _iso(i.created_at),
            }
            for i in page
        ],
        "next_cursor": next_cursor,
    }


def _contact_row(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "name": contact.name,
        "email": contact.email,
        "company": contact.company,
        "title": contact.title,
        "phone": contact.phone,
    }


async def search_contacts(ctx: ToolContext, args: SearchContacts) -> dict[str, Any]:
    query = select(Contact).where(visible_contacts(ctx.principal))
    if args.query:
        needle = args.query.lower()
        query = query.where(
            or_(
                func.lower(Contact.name).contains(needle, autoescape=True),
                func.lower(Contact.email).contains(needle, autoescape=True),
                func.lower(Contact.company).contains(needle, autoescape=True),
            )
        )
    query = keyset(query, (Contact.name, Contact.id), cursor=args.cursor, limit=args.limit, descending=False)
    async with ctx.sessions() as session:
        rows = list(await session.scalars(query))
    page, next_cursor = page_of(rows, args.limit, lambda contact: (contact.name, contact.id))
    return {"contacts": [_contact_row(c) for c in page], "next_cursor": next_cursor}


async def get_contact(ctx: ToolContext, args: ContactRef) -> dict[str, Any]:
    query = select(Contact).where(visible_contacts(ctx.principal))
    if args.contact_id:
        query = query.where(Contact.id == args.contact_id)
    if args.email:
        query = query.where(func.lower(Contact.email) == args.email.lower())
    async with ctx.sessions() as session:
        contact = await session.scalar(query)
        if contact is None:
            raise NotFound(f"No contact {args.contact_id or args.email} in this workspace that you can see")
        meetings = (
            await session.execute(
                _meetings_with_names(ctx)
                .join(MeetingContact, MeetingContact.meeting_id == Meeting.id)
                .where(MeetingContact.contact_id == contact.id)
                .order_by(Meeting.date.desc(), Meeting.id.desc())
            )
        ).all()
        return {**_contact_row(contact), "meetings": [_meeting_row(*row) for row in meetings]}


def _action_item_row(item: ActionItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "meeting_id": item.meeting_id,
        "text": item.text,
        "assignee_email": item.assignee_email,
        "due_date": item.due_date,
        "done": item.done,
        "created_at": _iso(item.created_at),
    }


async def create_action_item(ctx: ToolContext, args: CreateActionItem) -> dict[str, Any]:
    async with ctx.sessions() as session, session.begin():
        meeting = await _visible_meeting(ctx, session, args.meeting_id)
        item = ActionItem(
            meeting_id=meeting.id,
            text=args.text,
            assignee_email=args.assignee_email,
            due_date=args.due_date.isoformat() if args.due_date else None,
            created_by=ctx.principal.user_id,
        )
        session.add(item)
        await session.flush()
        return _action_item_row(item)

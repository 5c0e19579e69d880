"""What belongs to one meeting, read once for every place that shows a meeting in full (tools and API)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ActionItem, Contact, MeetingContact, Summary, TranscriptSegment


@dataclass(frozen=True)
class MeetingParts:
    contacts: list[Contact]
    action_items: list[ActionItem]
    transcript_segments: int
    has_summary: bool


async def parts_of(session: AsyncSession, meeting_id: str) -> MeetingParts:
    """The meeting's contacts (by name), action items (oldest first), transcript size and whether it has a summary."""
    contacts = await session.scalars(
        select(Contact).join(MeetingContact).where(MeetingContact.meeting_id == meeting_id).order_by(Contact.name)
    )
    items = await session.scalars(
        select(ActionItem).where(ActionItem.meeting_id == meeting_id).order_by(ActionItem.created_at)
    )
    segments = await session.scalar(
        select(func.count()).select_from(TranscriptSegment).where(TranscriptSegment.meeting_id == meeting_id)
    )
    summary = await session.scalar(select(Summary.meeting_id).where(Summary.meeting_id == meeting_id))
    return MeetingParts(list(contacts), list(items), segments or 0, summary is not None)

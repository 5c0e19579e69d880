"""What belongs to one meeting, read once for every place that shows a meeting in full (tools and API)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BindParameter, bindparam, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import ActionItem, Contact, MeetingContact, Summary, TranscriptSegment


@dataclass(frozen=True)
class MeetingParts:
    contacts: list[Contact]
    action_items: list[ActionItem]
    transcript_segments: int
    has_summary: bool


# Built once: the meeting is a bound parameter, so each read skips building the statements and their cache keys.
_MEETING: BindParameter[str] = bindparam("meeting_id")
_CONTACTS = select(Contact).join(MeetingContact).where(MeetingContact.meeting_id == _MEETING).order_by(Contact.name)
_ACTION_ITEMS = select(ActionItem).where(ActionItem.meeting_id == _MEETING).order_by(ActionItem.created_at)
# Both figures in one statement: each statement is a round trip, and under load every round trip is a wait.
_SEGMENTS_AND_SUMMARY = select(
    select(func.count())
    .select_from(TranscriptSegment)
    .where(TranscriptSegment.meeting_id == _MEETING)
    .scalar_subquery(),
    exists().where(Summary.meeting_id == _MEETING),
)


async def parts_of(session: AsyncSession, meeting_id: str) -> MeetingParts:
    """The meeting's contacts (by name), action items (oldest first), transcript size and whether it has a summary."""
    meeting = {"meeting_id": meeting_id}
    contacts = await session.scalars(_CONTACTS, meeting)
    items = await session.scalars(_ACTION_ITEMS, meeting)
    segments, summarized = (await session.execute(_SEGMENTS_AND_SUMMARY, meeting)).one()
    return MeetingParts(list(contacts), list(items), segments or 0, bool(summarized))

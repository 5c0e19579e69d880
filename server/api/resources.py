"""What the API answers about Harmony's data: one pydantic model per resource, shared by its endpoints."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from server.services.pages import PageQuery
from store.models import ActionItem, Contact, Insight, Meeting, MeetingStatus, Summary, TranscriptSegment
from tools.times import hms


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class MeetingOut(Out):
    id: str = Field(examples=["mtg_abc123"])
    title: str = Field(examples=["Sales Call - Acme Corp"])
    date: datetime
    duration: int = Field(description="Seconds", examples=[1800])
    status: MeetingStatus
    team_id: str | None
    owner_id: str | None


class ContactOut(Out):
    id: str
    name: str
    email: str
    company: str
    title: str
    phone: str


class ActionItemOut(Out):
    id: str
    text: str
    assignee_email: str | None
    due_date: str | None
    done: bool
    created_at: datetime


class MeetingDetail(MeetingOut):
    team: str | None = Field(description="The team's name")
    owner: str | None = Field(description="The owner's e-mail")
    contacts: list[ContactOut]
    action_items: list[ActionItemOut]
    transcript_segments: int
    has_summary: bool


class TranscriptLine(BaseModel):
    speaker: str = Field(examples=["John Smith"])
    text: str = Field(examples=["Thanks for joining today."])
    timestamp: str = Field(description="HH:MM:SS from the start", examples=["00:00:05"])
    offset_seconds: float


class TranscriptOut(BaseModel):
    meeting_id: str
    transcript: list[TranscriptLine]


class SummaryOut(BaseModel):
    meeting_id: str
    summary: str
    key_points: list[Any]
    created_at: datetime


class InsightOut(Out):
    id: str
    meeting_id: str
    kind: str
    title: str
    created_at: datetime


class InsightDetail(InsightOut):
    data: dict[str, Any]


class InsightData(BaseModel):
    insight_id: str
    kind: str
    data: dict[str, Any]


class MeetingFilters(PageQuery):
    date_from: date | None = Field(default=None, description="First day, YYYY-MM-DD (UTC)")
    date_to: date | None = Field(default=None, description="Last day, YYYY-MM-DD (UTC), inclusive")
    status: MeetingStatus | None = None
    team_id: str | None = Field(default=None, max_length=64)
    user_id: str | None = Field(default=None, max_length=64, description="The meeting's owner")


class ContactFilters(PageQuery):
    query: str | None = Field(default=None, max_length=200, description="Words in the name, e-mail or company")


class InsightFilters(PageQuery):
    meeting_id: str | None = Field(default=None, max_length=64)
    kind: str | None = Field(default=None, max_length=64)


def transcript_line(segment: TranscriptSegment) -> TranscriptLine:
    return TranscriptLine(
        speaker=segment.speaker, text=segment.text, timestamp=hms(segment.offset_seconds),
        offset_seconds=segment.offset_seconds,
    )  # fmt: skip


def summary_out(summary: Summary) -> SummaryOut:
    return SummaryOut(
        meeting_id=summary.meeting_id, summary=summary.text, key_points=list(summary.key_points),
        created_at=summary.created_at,
    )  # fmt: skip


def meeting_out(meeting: Meeting) -> MeetingOut:
    return MeetingOut.model_validate(meeting)


def contact_out(contact: Contact) -> ContactOut:
    return ContactOut.model_validate(contact)


def action_item_out(item: ActionItem) -> ActionItemOut:
    return ActionItemOut.model_validate(item)


def insight_out(insight: Insight) -> InsightOut:
    return InsightOut.model_validate(insight)

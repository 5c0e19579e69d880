"""What the API answers, as typed objects: one pydantic model per schema of ``/api/v1/openapi.json``.

The names drop the server's ``Out`` suffixes (``MeetingOut`` is ``Meeting``,
``KeyOut`` is ``ApiKey``, ``NewKey`` is ``NewApiKey``, ``JobOut`` is
``ProcessingJob``, ``StoredFileOut`` is ``StoredFile``); the fields are the
server's, one for one. Models keep fields a newer server adds (``extra="allow"``)
and accept enum values this client does not know yet, so an old client keeps
working when the API grows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

#: A known member of ``E`` when the value is one, else the value as a string: a new value is no crash.
OpenEnum = Annotated[E | str, Field(union_mode="left_to_right")]


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class MeetingStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    UPLOADED = "uploaded"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


class KeyKind(enum.StrEnum):
    AGENT = "agent"
    USER = "user"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Meeting(Model):
    id: str
    title: str
    date: datetime
    duration: int = Field(description="Seconds")
    status: OpenEnum[MeetingStatus]
    team_id: str | None
    owner_id: str | None


class Contact(Model):
    id: str
    name: str
    email: str
    company: str
    title: str
    phone: str


class ActionItem(Model):
    id: str
    text: str
    assignee_email: str | None
    due_date: str | None
    done: bool
    created_at: datetime


class MeetingDetail(Meeting):
    team: str | None = Field(description="The team's name")
    owner: str | None = Field(description="The owner's e-mail")
    contacts: list[Contact]
    action_items: list[ActionItem]
    transcript_segments: int
    has_summary: bool


class TranscriptLine(Model):
    speaker: str
    text: str
    timestamp: str = Field(description="HH:MM:SS from the start")
    offset_seconds: float


class Transcript(Model):
    meeting_id: str
    transcript: list[TranscriptLine]


class Summary(Model):
    meeting_id: str
    summary: str
    key_points: list[Any]
    created_at: datetime


class Insight(Model):
    id: str
    meeting_id: str
    kind: str
    title: str
    created_at: datetime


class InsightDetail(Insight):
    data: dict[str, Any]


class InsightData(Model):
    insight_id: str
    kind: str
    data: dict[str, Any]


class Pagination(Model):
    page: int | None = Field(description="The page number; None when paging by cursor")
    per_page: int
    total: int | None = Field(description="Items matching the filters; None when paging by cursor")
    has_more: bool
    next_cursor: str | None = Field(description="Pass as cursor for the next page; None on the last one")


class Page(Model, Generic[T]):
    """One page of a list: ``data`` and its ``pagination``, as the seed shows it."""

    data: list[T]
    pagination: Pagination

    @property
    def has_more(self) -> bool:
        return self.pagination.has_more


class ApiKey(Model):
    id: str
    prefix: str = Field(description="The first characters, to recognise the key")
    name: str
    kind: OpenEnum[KeyKind]
    scopes: list[str]
    person_facing: bool = Field(description="Its owner said its host shows approval forms to them, not to the model")
    owner: str = Field(description="The owner's e-mail")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None = Field(description="In the future while a rotated key's grace period runs")


class NewApiKey(ApiKey):
    token: str = Field(description="The key itself, shown in this answer only: store it now")


class KeyList(Model):
    data: list[ApiKey]


class StoredFile(Model):
    filename: str
    content_type: str
    size: int = Field(description="Bytes")
    sha256: str = Field(description="Hex digest of the bytes stored")


class UploadAccepted(Model):
    id: str = Field(description="The new meeting's id")
    status: OpenEnum[MeetingStatus]
    title: str
    date: datetime
    team_id: str | None
    file: StoredFile
    transcript: StoredFile | None
    status_url: str = Field(description="Where to follow processing")


class ProcessingJob(Model):
    id: str
    state: OpenEnum[JobState]
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class ProcessingStatus(Model):
    meeting_id: str
    status: OpenEnum[MeetingStatus]
    error: str | None = Field(description="Why processing failed, when the status is failed")
    job: ProcessingJob | None


@dataclass(frozen=True)
class RateLimit:
    """The key's budget as of the last answer (``X-RateLimit-*``): ``reset`` is when the minute's count restarts."""

    limit: int
    remaining: int
    reset: datetime

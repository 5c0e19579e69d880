"""Uploading a recording, and following its processing.

``POST /meetings/upload`` streams the files to disk (``server.services.processing.storage``)
and answers 202 at once: the meeting exists, ``uploaded``, and a job that will
process it is queued in the same transaction. ``GET /meetings/{id}/status``
shows the meeting's state and the job's.

The uploader owns the meeting, so they always see it; with a ``team_id`` the
team's members see it too. Anyone else gets 404, as for any meeting.
Uploading is a write: the Solo plan's read-only API access refuses it (403).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from server.api.auth import api_caller
from server.api.errors import ApiError, from_validation, invalid
from server.api.meetings import visible_meeting
from server.api.router import ApiRouter
from server.api.services import services_of
from server.http_status import status_of
from server.services.processing import jobs, storage
from server.services.processing.pipeline import PROCESS_MEETING
from server.services.processing.storage import FilePolicy, FormReader, ReceivedForm, StoredFile, UploadRejected
from store.models import Job, JobStatus, Meeting, MeetingStatus, Recording, Team, TeamMember, new_id, utcnow
from store.plans import RULES
from store.principal import Principal

api = ApiRouter("Meetings")

FILE_FIELDS = {
    "file": FilePolicy({**storage.RECORDING_TYPES, **storage.TRANSCRIPT_TYPES}),
    "transcript": FilePolicy(storage.TRANSCRIPT_TYPES, suffix=".transcript"),
}


class UploadFields(BaseModel):
    """The text fields of an upload."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str = Field(min_length=1, max_length=500, pattern=r"\S", examples=["Customer Call"])
    date: AwareDatetime = Field(
        description="When the meeting took place: ISO 8601 with a time zone", examples=["2026-02-01T10:00:00Z"]
    )
    team_id: str = Field(
        default="",
        max_length=32,
        pattern=r"^[A-Za-z0-9_-]*$",
        description="A team whose members will also see the meeting (by default only you and admins do)",
    )

    @field_validator("title")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("must not contain control characters (line breaks, tabs, NUL)")
        return value

    @field_validator("date")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range once converted to UTC") from None


def _upload_form() -> dict[str, Any]:
    fields = UploadFields.model_json_schema()
    recording = ", ".join(sorted(FILE_FIELDS["file"].types))
    return {
        "type": "object",
        "required": ["file", *fields.get("required", [])],
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": f"The recording, or a transcript alone. Accepted types: {recording}.",
            },
            "transcript": {
                "type": "string",
                "format": "binary",
                "description": "A WebVTT (text/vtt) or SRT (application/x-subrip) transcript of the recording.",
            },
            **fields["properties"],
        },
    }


class StoredFileOut(BaseModel):
    filename: str = Field(examples=["recording.mp3"])
    content_type: str = Field(examples=["audio/mpeg"])
    size: int = Field(description="Bytes")
    sha256: str = Field(description="Hex digest of the bytes stored")


class UploadAccepted(BaseModel):
    id: str = Field(examples=["mtg_abc123"])
    status: MeetingStatus = Field(examples=["uploaded"])
    title: str
    date: datetime
    team_id: str | None
    file: StoredFileOut
    transcript: StoredFileOut | None
    status_url: str = Field(description="Where to follow processing: GET it until the status is processed or failed")


class JobOut(BaseModel):
    id: str
    state: JobStatus
    attempts: int = Field(description="Attempts started so far")
    max_attempts: int
    next_attempt_at: datetime | None = Field(description="When a queued job is due")
    error: str | None = Field(description="Why the last attempt failed")
    created_at: datetime
    finished_at: datetime | None


class ProcessingStatus(BaseModel):
    meeting_id: str
    status: MeetingStatus
    error: str | None = Field(description="Why processing failed, when the status is failed")
    job: JobOut | None = Field(description="The processing job; none for a meeting that was not uploaded")


def _stored_out(stored: StoredFile) -> StoredFileOut:
    return StoredFileOut(
        filename=stored.filename, content_type=stored.content_type, size=stored.size, sha256=stored.sha256
    )


def _fields_of(form: ReceivedForm) -> UploadFields:
    """The text fields, or a 422 naming every problem of the form at once (file fields included)."""
    problems = dict(form.problems)
    recording = form.files.get("file")
    if recording is None and "file" not in problems:
        problems["file"] = "required: the recording, or a WebVTT or SRT transcript on its own"
    if recording is not None and recording.content_type in storage.TRANSCRIPT_TYPES and "transcript" in form.files:
        problems["transcript"] = "the file is already a transcript; send the recording as file"
    fields: UploadFields | None = None
    try:
        fields = UploadFields.model_validate(form.fields)
    except ValidationError as exc:
        problems.update(from_validation(exc).details["fields"])
    if problems or fields is None:
        raise invalid(problems)
    return fields


async def _check_team(request: Request, principal: Principal, team_id: str) -> None:
    async with services_of(request).db.session() as session:
        in_workspace = (Team.id == team_id) & (Team.workspace_id == principal.workspace_id)
        if await session.scalar(select(Team.id).where(in_workspace)) is None:
            raise invalid({"team_id": "no such team in this workspace"})
        member = await session.get(TeamMember, (team_id, principal.user_id))
    if member is None and not principal.is_admin:
        raise invalid({"team_id": "you are not a member of this team"})


def _refused(exc: UploadRejected) -> ApiError:
    return ApiError(status_of(exc), exc.message, code=exc.code, details=exc.details)


async def _receive(request: Request, reader: FormReader) -> ReceivedForm:
    """The form, streamed to disk; a body announced as too large is refused before a byte is read."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > reader.max_bytes + storage.FORM_OVERHEAD_BYTES:
        raise _refused(storage.too_large(reader.max_bytes))
    try:
        return await reader.read(request.headers.get("content-type", ""), request.stream())
    except UploadRejected as exc:
        raise _refused(exc) from None
    except ClientDisconnect:
        raise ApiError(400, "The upload was interrupted before it was complete.") from None


@api.post(
    "/meetings/upload",
    response=UploadAccepted,
    status=202,
    multipart=_upload_form(),
    errors=(400, 403, 413, 415, 422),
    summary="Upload recording",
)
async def upload_recording(request: Request) -> JSONResponse:
    """Upload a recording (or a transcript alone) as multipart/form-data; processing starts in the background.

    Fields: ``file`` (required: audio/mpeg, audio/mp4, audio/wav, audio/x-wav, audio/webm, audio/ogg,
    video/mp4, video/webm, or a text/vtt or application/x-subrip transcript), ``transcript`` (optional:
    a WebVTT or SRT transcript of the recording), ``title``, ``date`` (ISO 8601 with a time zone) and
    ``team_id`` (optional). A part sent as application/octet-stream is typed by its file name's extension.
    The files together may not exceed the upload limit (413); a type outside the list answers 415.
    The answer is 202 with the meeting, ``uploaded``; follow ``status_url`` until it is ``processed``
    or ``failed``. With no transcript and no speech-to-text step configured, processing fails, saying so.
    """
    principal = api_caller(request)
    if not RULES[principal.plan].may_write:
        raise ApiError(
            403,
            f"Uploads are not part of the {principal.plan.value} plan's API access; they start with Plus.",
            details={"plan": principal.plan.value},
        )
    services = services_of(request)
    data_dir = services.settings.data_dir
    meeting_id = new_id("mtg")
    reader = FormReader(
        data_dir / "recordings" / principal.workspace_id,
        meeting_id,
        FILE_FIELDS,
        set(UploadFields.model_fields),
        max_bytes=services.settings.upload_max_bytes,
    )
    form = await _receive(request, reader)
    try:
        fields = _fields_of(form)
        if fields.team_id:
            await _check_team(request, principal, fields.team_id)
        async with services.db.transaction() as session:
            _record(session, principal, meeting_id, fields, form, data_dir)
    except BaseException:
        await form.discard()
        raise
    status_url = f"{services.settings.base_url}/api/v1/meetings/{meeting_id}/status"
    transcript = form.files.get("transcript")
    accepted = UploadAccepted(
        id=meeting_id,
        status=MeetingStatus.UPLOADED,
        title=fields.title,
        date=fields.date,
        team_id=fields.team_id or None,
        file=_stored_out(form.files["file"]),
        transcript=_stored_out(transcript) if transcript else None,
        status_url=status_url,
    )
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers={"Location": status_url})


def _record(
    session: AsyncSession, principal: Principal, meeting_id: str, fields: UploadFields, form: ReceivedForm, root: Path
) -> None:
    """The meeting, its recording and the job that will process it: one transaction, so all or none exist."""
    recording = form.files["file"]
    transcript = recording if recording.content_type in storage.TRANSCRIPT_TYPES else form.files.get("transcript")
    session.add(
        Meeting(
            id=meeting_id,
            workspace_id=principal.workspace_id,
            team_id=fields.team_id or None,
            owner_id=principal.user_id,
            title=fields.title,
            date=fields.date,
            duration=0,
            status=MeetingStatus.UPLOADED,
            created_at=utcnow(),
        )
    )
    session.add(
        Recording(
            meeting_id=meeting_id,
            path=recording.path.relative_to(root).as_posix(),
            filename=recording.filename,
            content_type=recording.content_type,
            size=recording.size,
            sha256=recording.sha256,
            transcript_path=transcript.path.relative_to(root).as_posix() if transcript else None,
            transcript_content_type=transcript.content_type if transcript else None,
            uploaded_by=principal.user_id,
        )
    )
    jobs.enqueue(session, PROCESS_MEETING, meeting_id)


def _job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        state=job.status,
        attempts=job.attempts,
        max_attempts=jobs.MAX_ATTEMPTS,
        next_attempt_at=job.run_after if job.status is JobStatus.QUEUED else None,
        error=job.last_error,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


@api.get("/meetings/{id}/status", response=ProcessingStatus, errors=(403, 404), summary="Check processing status")
async def processing_status(request: Request) -> ProcessingStatus:
    """The meeting's processing state (uploaded, processing, processed or failed) and its job's."""
    principal = api_caller(request)
    meeting_id = request.path_params["id"]
    if "\x00" in meeting_id:  # no id has one, and PostgreSQL refuses it in a query
        raise ApiError(404, "Meeting not found")
    async with services_of(request).db.session() as session:
        meeting = await visible_meeting(session, principal, meeting_id)
        job = await session.scalar(
            select(Job)
            .where(Job.kind == PROCESS_MEETING, Job.subject_id == meeting.id)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(1)
        )
    failed = meeting.status is MeetingStatus.FAILED
    return ProcessingStatus(
        meeting_id=meeting.id,
        status=meeting.status,
        error=job.last_error if failed and job is not None else None,
        job=_job_out(job) if job is not None else None,
    )

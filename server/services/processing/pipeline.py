"""The processing pipeline: a meeting's recording goes through steps, and the meeting ends processed or failed.

A step is anything with a ``name`` and ``async run(context)``: it reads the
recording, and adds to what the meeting will hold (transcript segments, a
summary, insights). Steps are found by name in a ``StepRegistry``, so
speech-to-text and summarisation are plug-ins beside the one local step
that ships (``transcript_file``: a WebVTT or SRT transcript uploaded with the
recording).

The meeting moves ``uploaded → processing → processed | failed``, and each
move commits in one transaction with its webhook events in the outbox and
with the job's own state:

- ``uploaded → processing`` emits ``meeting.started``. Harmony defines that
  event as "Recording began"; for an uploaded recording the nearest moment
  the server knows of is processing starting, so it is sent then, once.
- ``processing → processed`` writes what the steps produced and emits
  ``meeting.processed`` and one ``insight.generated`` per insight.
- ``→ failed`` emits ``meeting.failed`` with the reason.

Steps write nothing themselves: what they produce is kept in the context and
written at the end, so a retried or abandoned attempt leaves no half result,
and no database transaction stays open while a step waits on a service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import httpx
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from server.services.processing import jobs
from server.services.processing.jobs import Claim, LeaseLost
from server.services.webhooks.outbox import enqueue
from server.settings import Settings
from store.db import Database
from store.models import Insight, Meeting, MeetingStatus, Recording, Summary, TranscriptSegment, new_id

log = logging.getLogger(__name__)

#: The job kind that processes one uploaded meeting; its subject is the meeting id.
PROCESS_MEETING = "process_meeting"

NO_TRANSCRIPT = (
    "No transcript: none was uploaded with the recording (send a WebVTT or SRT file in the 'transcript' field) "
    "and no speech-to-text step is configured"
)


class StepFailed(Exception):
    """The recording cannot be processed, and trying again will not help; the message says why, to people."""


@dataclass(frozen=True)
class Segment:
    speaker: str
    text: str
    offset_seconds: float


@dataclass(frozen=True)
class SummaryDraft:
    text: str
    key_points: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class InsightDraft:
    kind: str
    title: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordingFiles:
    """The uploaded files of one meeting, as absolute paths under the data directory."""

    path: Path
    filename: str
    content_type: str
    size: int
    sha256: str
    transcript_path: Path | None
    transcript_content_type: str | None


@dataclass
class ProcessingContext:
    """What a step gets: the meeting, its files, the shared HTTP client and settings, and what steps produced."""

    meeting_id: str
    workspace_id: str
    title: str
    date: datetime
    recording: RecordingFiles
    http: httpx.AsyncClient
    settings: Settings
    segments: list[Segment] = field(default_factory=list)
    duration: int | None = None
    summary: SummaryDraft | None = None
    insights: list[InsightDraft] = field(default_factory=list)

    def add_insight(self, kind: str, title: str, data: dict[str, Any] | None = None) -> None:
        self.insights.append(InsightDraft(kind, title, data or {}))


@runtime_checkable
class Step(Protocol):
    """One stage of processing.

    ``run`` adds to the context. A step that produces a transcript leaves an
    existing one alone (an uploaded transcript beats speech-to-text). Raise
    ``StepFailed`` for a problem retrying cannot fix (a malformed file); any
    other exception is taken as passing trouble and the job is retried.
    """

    name: str

    async def run(self, context: ProcessingContext) -> None: ...


class StepRegistry:
    """Steps by name: the built-in ones and those plug-ins register."""

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self._steps: dict[str, Step] = {}
        for step in steps:
            self.register(step)

    def register(self, step: Step) -> Step:
        if not isinstance(step, Step) or not step.name:
            raise TypeError(f"{step!r} is not a processing step: it needs a name and an async run(context)")
        if step.name in self._steps:
            raise ValueError(f"a processing step named {step.name!r} is already registered")
        self._steps[step.name] = step
        return step

    def names(self) -> list[str]:
        return sorted(self._steps)

    def resolve(self, names: Iterable[str]) -> list[Step]:
        """The steps named, in that order; an unknown name is an error at start-up, not a silent skip."""
        names = list(names)
        unknown = [name for name in names if name not in self._steps]
        if unknown:
            known = ", ".join(self.names()) or "none"
            raise ValueError(f"unknown processing step(s) {', '.join(unknown)} (registered: {known})")
        return [self._steps[name] for name in names]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Pipeline:
    """Runs the steps for one claimed job and records the outcome."""

    def __init__(
        self, db: Database, steps: Sequence[Step], *, data_dir: Path, http: httpx.AsyncClient, settings: Settings
    ) -> None:
        self.db = db
        self.steps = list(steps)
        self.data_dir = data_dir
        self.http = http
        self.settings = settings

    async def process(self, claim: Claim) -> None:
        """One attempt at the job: succeed, fail for good, or queue a retry. ``LeaseLost`` escapes: stop there."""
        if claim.attempts > jobs.MAX_ATTEMPTS:
            # Every earlier attempt ended without a word: the worker died or stalled past its lease each time.
            await self._fail(claim, f"Processing stopped unfinished {claim.attempts - 1} times; gave up")
            return
        current: str | None = None
        try:
            context = await self._begin(claim)
            if context is None:
                return
            for step in self.steps:
                current = step.name
                await step.run(context)
            current = None
            if not context.segments:
                raise StepFailed(NO_TRANSCRIPT)
            await self._finish(claim, context)
        except LeaseLost:
            raise
        except StepFailed as exc:
            await self._fail(claim, str(exc))
        except Exception as exc:
            # The details go to the log only: an exception's text may carry a URL or a provider's answer.
            log.exception("processing job %s failed in %s (attempt %d)", claim.job_id, current, claim.attempts)
            where = f"Step {current}" if current else "Processing"
            reason = f"{where} failed unexpectedly ({type(exc).__name__})"
            if claim.attempts >= jobs.MAX_ATTEMPTS:
                await self._fail(claim, f"{reason}; gave up after {claim.attempts} attempts")
            else:
                await jobs.retry(self.db, claim, reason)

    async def _begin(self, claim: Claim) -> ProcessingContext | None:
        async with self.db.transaction() as session:
            await jobs.hold(session, claim)
            meeting = await session.get(Meeting, claim.subject_id)
            recording = await session.get(Recording, claim.subject_id)
            if meeting is None or recording is None:
                await jobs.fail(session, claim, "The meeting or its recording was deleted")
                return None
            if meeting.status not in (MeetingStatus.UPLOADED, MeetingStatus.PROCESSING):
                await jobs.fail(session, claim, f"The meeting is {meeting.status.value}, not waiting to be processed")
                return None
            if meeting.status is MeetingStatus.UPLOADED:
                meeting.status = MeetingStatus.PROCESSING
                data = {"meeting_id": meeting.id, "title": meeting.title, "date": _iso(meeting.date)}
                await enqueue(session, meeting.workspace_id, "meeting.started", data)
            return ProcessingContext(
                meeting_id=meeting.id,
                workspace_id=meeting.workspace_id,
                title=meeting.title,
                date=meeting.date,
                recording=self._files(recording),
                http=self.http,
                settings=self.settings,
            )

    def _files(self, recording: Recording) -> RecordingFiles:
        transcript = self._under_data_dir(recording.transcript_path) if recording.transcript_path else None
        return RecordingFiles(
            path=self._under_data_dir(recording.path),
            filename=recording.filename,
            content_type=recording.content_type,
            size=recording.size,
            sha256=recording.sha256,
            transcript_path=transcript,
            transcript_content_type=recording.transcript_content_type,
        )

    def _under_data_dir(self, relative: str) -> Path:
        root = self.data_dir.resolve()
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise StepFailed("The recording's stored path lies outside the data directory")
        return path

    async def _finish(self, claim: Claim, context: ProcessingContext) -> None:
        async with self.db.transaction() as session:
            await jobs.hold(session, claim)
            meeting = await session.get(Meeting, context.meeting_id)
            if meeting is None or meeting.status is not MeetingStatus.PROCESSING:
                await jobs.fail(session, claim, "The meeting was deleted or changed while it was processed")
                return
            await session.execute(delete(TranscriptSegment).where(TranscriptSegment.meeting_id == meeting.id))
            session.add_all(
                TranscriptSegment(
                    meeting_id=meeting.id,
                    position=position,
                    speaker=segment.speaker[:200],
                    text=segment.text,
                    offset_seconds=segment.offset_seconds,
                )
                for position, segment in enumerate(context.segments)
            )
            if context.summary is not None:
                await session.merge(
                    Summary(meeting_id=meeting.id, text=context.summary.text, key_points=context.summary.key_points)
                )
            await self._insights(session, meeting, context.insights)
            meeting.status = MeetingStatus.PROCESSED
            if context.duration is not None:
                meeting.duration = context.duration
            data = {"meeting_id": meeting.id, "title": meeting.title, "duration": meeting.duration}
            await enqueue(session, meeting.workspace_id, "meeting.processed", data)
            await jobs.succeed(session, claim)

    async def _insights(self, session: AsyncSession, meeting: Meeting, drafts: list[InsightDraft]) -> None:
        for draft in drafts:
            insight = Insight(
                id=new_id("ins"),
                workspace_id=meeting.workspace_id,
                meeting_id=meeting.id,
                kind=draft.kind,
                title=draft.title,
                data=draft.data,
            )
            session.add(insight)
            data = {"insight_id": insight.id, "meeting_id": meeting.id, "kind": insight.kind, "title": insight.title}
            await enqueue(session, meeting.workspace_id, "insight.generated", data)

    async def _fail(self, claim: Claim, reason: str) -> None:
        async with self.db.transaction() as session:
            await jobs.hold(session, claim)
            meeting = await session.get(Meeting, claim.subject_id)
            if meeting is not None and meeting.status in (MeetingStatus.UPLOADED, MeetingStatus.PROCESSING):
                meeting.status = MeetingStatus.FAILED
                data = {"meeting_id": meeting.id, "title": meeting.title, "reason": reason}
                await enqueue(session, meeting.workspace_id, "meeting.failed", data)
            await jobs.fail(session, claim, reason)

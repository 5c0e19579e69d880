"""``client.meetings``: list and read meetings, their transcripts, summaries and insights; upload recordings."""

from __future__ import annotations

from datetime import date, datetime

from harmony_client._files import FileInput, multipart
from harmony_client._http import AsyncHttp, Call, SyncHttp, query, segment
from harmony_client.models import (
    Insight,
    Meeting,
    MeetingDetail,
    MeetingStatus,
    Page,
    ProcessingStatus,
    Summary,
    Transcript,
    UploadAccepted,
)
from harmony_client.pagination import AsyncPager, SyncPager

Day = date | str


def _filters(
    date_from: Day | None, date_to: Day | None, status: MeetingStatus | str | None, team_id: str | None,
    user_id: str | None,
) -> dict[str, str | int]:  # fmt: skip
    return query(date_from=date_from, date_to=date_to, status=status, team_id=team_id, user_id=user_id)


def _upload(
    file: FileInput, title: str, when: datetime | str, transcript: FileInput | None, team_id: str | None
) -> Call:
    fields = {"title": title, "date": when.isoformat() if isinstance(when, datetime) else when}
    return Call(
        "POST",
        "/meetings/upload",
        data={**fields, **({"team_id": team_id} if team_id else {})},
        files=multipart({"file": file, "transcript": transcript}),
    )


class Meetings:
    def __init__(self, http: SyncHttp) -> None:
        self._http = http

    def list(
        self,
        *,
        date_from: Day | None = None,
        date_to: Day | None = None,
        status: MeetingStatus | str | None = None,
        team_id: str | None = None,
        user_id: str | None = None,
        per_page: int = 20,
    ) -> SyncPager[Meeting]:
        """Every meeting the key may see, newest first, fetched ``per_page`` at a time as you iterate.

        Dates are whole UTC days (``"2026-01-25"`` or a ``date``), both ends included.
        """
        params = {**_filters(date_from, date_to, status, team_id, user_id), "per_page": per_page}
        return SyncPager(self._http, "/meetings", Meeting, params)

    def list_page(
        self,
        *,
        page: int = 1,
        per_page: int = 20,
        cursor: str | None = None,
        date_from: Day | None = None,
        date_to: Day | None = None,
        status: MeetingStatus | str | None = None,
        team_id: str | None = None,
        user_id: str | None = None,
    ) -> Page[Meeting]:
        """One page, by number (with a ``total``) or by a previous page's ``next_cursor``."""
        params = {
            **_filters(date_from, date_to, status, team_id, user_id),
            **query(page=None if cursor else page, per_page=per_page, cursor=cursor),
        }
        return self._http.get("/meetings", Page[Meeting], params)

    def get(self, meeting_id: str) -> MeetingDetail:
        return self._http.get(f"/meetings/{segment(meeting_id)}", MeetingDetail)

    def get_transcript(self, meeting_id: str) -> Transcript:
        return self._http.get(f"/meetings/{segment(meeting_id)}/transcript", Transcript)

    def get_summary(self, meeting_id: str) -> Summary:
        """The summary; ``NotFound`` (with the meeting's ``status`` in ``details``) until there is one."""
        return self._http.get(f"/meetings/{segment(meeting_id)}/summary", Summary)

    def get_insights(self, meeting_id: str, *, per_page: int = 20) -> SyncPager[Insight]:
        return SyncPager(self._http, f"/meetings/{segment(meeting_id)}/insights", Insight, {"per_page": per_page})

    def upload(
        self,
        file: FileInput,
        *,
        title: str,
        date: datetime | str,
        transcript: FileInput | None = None,
        team_id: str | None = None,
    ) -> UploadAccepted:
        """Upload a recording (or a WebVTT/SRT transcript alone); processing runs on the server afterwards.

        ``date`` needs a time zone. Follow the processing with ``status(accepted.id)``.
        """
        return self._http.request(_upload(file, title, date, transcript, team_id), UploadAccepted)

    def status(self, meeting_id: str) -> ProcessingStatus:
        return self._http.get(f"/meetings/{segment(meeting_id)}/status", ProcessingStatus)


class AsyncMeetings:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http

    def list(
        self,
        *,
        date_from: Day | None = None,
        date_to: Day | None = None,
        status: MeetingStatus | str | None = None,
        team_id: str | None = None,
        user_id: str | None = None,
        per_page: int = 20,
    ) -> AsyncPager[Meeting]:
        """Every meeting the key may see, newest first: ``async for meeting in client.meetings.list()``."""
        params = {**_filters(date_from, date_to, status, team_id, user_id), "per_page": per_page}
        return AsyncPager(self._http, "/meetings", Meeting, params)

    async def list_page(
        self,
        *,
        page: int = 1,
        per_page: int = 20,
        cursor: str | None = None,
        date_from: Day | None = None,
        date_to: Day | None = None,
        status: MeetingStatus | str | None = None,
        team_id: str | None = None,
        user_id: str | None = None,
    ) -> Page[Meeting]:
        params = {
            **_filters(date_from, date_to, status, team_id, user_id),
            **query(page=None if cursor else page, per_page=per_page, cursor=cursor),
        }
        return await self._http.get("/meetings", Page[Meeting], params)

    async def get(self, meeting_id: str) -> MeetingDetail:
        return await self._http.get(f"/meetings/{segment(meeting_id)}", MeetingDetail)

    async def get_transcript(self, meeting_id: str) -> Transcript:
        return await self._http.get(f"/meetings/{segment(meeting_id)}/transcript", Transcript)

    async def get_summary(self, meeting_id: str) -> Summary:
        return await self._http.get(f"/meetings/{segment(meeting_id)}/summary", Summary)

    def get_insights(self, meeting_id: str, *, per_page: int = 20) -> AsyncPager[Insight]:
        return AsyncPager(self._http, f"/meetings/{segment(meeting_id)}/insights", Insight, {"per_page": per_page})

    async def upload(
        self,
        file: FileInput,
        *,
        title: str,
        date: datetime | str,
        transcript: FileInput | None = None,
        team_id: str | None = None,
    ) -> UploadAccepted:
        return await self._http.request(_upload(file, title, date, transcript, team_id), UploadAccepted)

    async def status(self, meeting_id: str) -> ProcessingStatus:
        return await self._http.get(f"/meetings/{segment(meeting_id)}/status", ProcessingStatus)

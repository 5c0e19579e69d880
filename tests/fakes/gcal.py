"""A fake of Google Calendar API v3, on Google's OAuth server (see ``tests/fakes/google.py``).

Routes are those of https://www.googleapis.com/calendar/v3 (calendarList.list, calendars.get, events.list,
events.insert, events.get, freebusy.query) under the same path, with Google's resource shapes (``kind``, ``items``,
``nextPageToken``, ``start.dateTime``/``start.date``) and its error body::

    {"error": {"code": 404, "message": "Not Found", "errors": [{"domain": "global", "reason": "notFound",
     "message": "Not Found"}], "status": "NOT_FOUND"}}

Where no call names them, Calendar's words for a status (``PLAIN``) are its own, not Google's canonical ones.

events.insert keeps a client's event ``id`` (base32hex: ``a-v`` and ``0-9``, 5 to 1024 characters, unique per
calendar) and answers 409 ``duplicate``, "The requested identifier already exists.", for one the calendar holds,
deleted (cancelled) events included, as Google keeps their ids.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.google import GoogleFake, google_error

API = "/calendar/v3"
SCOPES = "https://www.googleapis.com/auth/calendar.readonly https://www.googleapis.com/auth/calendar.events"
PRIMARY_ID = "alice@acme.test"
TEAM_ID = "team@group.calendar.google.com"
HOLIDAYS_ID = "en.german#holiday@group.v.calendar.google.com"
PRIVATE_ID = "private@group.calendar.google.com"

#: What Calendar says for a status when nothing more specific applies: (reason, message).
PLAIN = {
    400: ("badRequest", "Bad Request"),
    403: ("forbidden", "Forbidden"),
    404: ("notFound", "Not Found"),
    429: ("rateLimitExceeded", "Rate Limit Exceeded"),
    500: ("backendError", "Backend Error"),
    502: ("backendError", "Backend Error"),
    503: ("backendError", "The service is currently unavailable."),
}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
EVENT_ID = re.compile(r"^[a-v0-9]{5,1024}$")


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(token: str | None) -> int | None:
    if not token:
        return 0
    try:
        kind, _, number = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return int(number) if kind == "offset" else None
    except ValueError:
        return None


def _instant(text: Any) -> datetime | None:
    """An RFC 3339 moment; Google refuses one without an offset."""
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


class GoogleCalendarFake(GoogleFake):
    scope = SCOPES
    plain = PLAIN

    def __init__(self) -> None:
        super().__init__(
            [
                Route(f"{API}/users/me/calendarList", self.calendar_list, methods=["GET"]),
                Route(f"{API}/calendars/{{calendarId}}", self.get_calendar, methods=["GET"]),
                Route(f"{API}/calendars/{{calendarId}}/events", self.list_events, methods=["GET"]),
                Route(f"{API}/calendars/{{calendarId}}/events", self.insert_event, methods=["POST"]),
                Route(f"{API}/calendars/{{calendarId}}/events/{{eventId}}", self.get_event, methods=["GET"]),
                Route(f"{API}/freeBusy", self.free_busy, methods=["POST"]),
            ]
        )
        self.calendars: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.add_calendar(PRIMARY_ID, PRIMARY_ID, primary=True)
        self.add_calendar(TEAM_ID, "Team", access_role="writer")
        self.add_calendar(HOLIDAYS_ID, "Holidays in Germany", access_role="reader")
        self.add_calendar(PRIVATE_ID, "Private")
        #: Other people's calendars, as free/busy shows them: e-mail -> busy (start, end) pairs.
        self.others: dict[str, list[tuple[str, str]]] = {}
        #: Google may answer a page with fewer items than maxResults; tests lower this to see paging.
        self.largest_page = 250

    # -- knobs ---------------------------------------------------------------------------------

    def add_calendar(
        self, calendar_id: str, summary: str, *, primary: bool = False, access_role: str = "owner"
    ) -> dict[str, Any]:
        calendar = {
            "kind": "calendar#calendarListEntry",
            "etag": f'"{secrets.token_hex(8)}"',
            "id": calendar_id,
            "summary": summary,
            "timeZone": "Europe/Berlin",
            "accessRole": access_role,
            "defaultReminders": [],
            **({"primary": True} if primary else {}),
        }
        self.calendars[calendar_id] = calendar
        self.events.setdefault(calendar_id, [])
        return calendar

    def add_event(
        self,
        calendar_id: str,
        summary: str,
        start: str,
        end: str,
        *,
        attendees: tuple[str, ...] = (),
        status: str = "confirmed",
        transparency: str = "opaque",
    ) -> dict[str, Any]:
        """An event as Google stores it; a start like 2030-01-07 makes an all-day event."""
        timed = "T" in start
        event_id = secrets.token_hex(13)
        event = {
            "kind": "calendar#event",
            "id": event_id,
            "status": status,
            "htmlLink": self._link(event_id, calendar_id),
            "summary": summary,
            "start": {"dateTime": start} if timed else {"date": start},
            "end": {"dateTime": end} if timed else {"date": end},
            "transparency": transparency,
            "attendees": [{"email": email, "responseStatus": "needsAction"} for email in attendees],
            "iCalUID": f"{event_id}@google.com",
        }
        self.events[calendar_id].append(event)
        return event

    # -- helpers -------------------------------------------------------------------------------

    def _calendar(self, calendar_id: str) -> dict[str, Any] | None:
        if calendar_id == "primary":
            calendar_id = next(c for c in self.calendars.values() if c.get("primary"))["id"]
        return self.calendars.get(calendar_id)

    @staticmethod
    def _link(event_id: str, calendar_id: str) -> str:
        eid = base64.urlsafe_b64encode(f"{event_id} {calendar_id}".encode()).decode().rstrip("=")
        return f"https://www.google.com/calendar/event?eid={eid}"

    @staticmethod
    def _moment(when: dict[str, Any], zone: ZoneInfo) -> datetime:
        if "dateTime" in when:
            return datetime.fromisoformat(when["dateTime"])
        return datetime.combine(date.fromisoformat(when["date"]), datetime.min.time(), tzinfo=zone)

    # -- calendarList.list, calendars.get ----------------------------------------------------------

    async def calendar_list(self, request: Request) -> Response:
        query = request.query_params
        size = min(int(query.get("maxResults") or 100), 250, self.largest_page)
        start = _offset(query.get("pageToken"))
        if start is None:
            return google_error(400, "Invalid Value", "invalid", location="pageToken", locationType="parameter")
        entries = list(self.calendars.values())
        chunk = entries[start : start + size]
        body: dict[str, Any] = {"kind": "calendar#calendarList", "etag": '"p33c"', "items": chunk}
        if start + size < len(entries):
            body["nextPageToken"] = _page_token(start + size)
        else:
            body["nextSyncToken"] = "sync-" + secrets.token_hex(6)
        return JSONResponse(body)

    async def get_calendar(self, request: Request) -> Response:
        calendar = self._calendar(request.path_params["calendarId"])
        if calendar is None:
            return google_error(404, "Not Found")
        return JSONResponse(
            {
                "kind": "calendar#calendar",
                "etag": calendar["etag"],
                "id": calendar["id"],
                "summary": calendar["summary"],
                "timeZone": calendar["timeZone"],
            }
        )

    # -- events.list -----------------------------------------------------------------------------

    async def list_events(self, request: Request) -> Response:
        calendar = self._calendar(request.path_params["calendarId"])
        if calendar is None:
            return google_error(404, "Not Found")
        query = request.query_params
        single = query.get("singleEvents") == "true"
        if query.get("orderBy") == "startTime" and not single:
            return google_error(400, "The requested ordering is not available for the particular query.", "badRequest")
        low, high = query.get("timeMin"), query.get("timeMax")
        time_min, time_max = _instant(low) if low else None, _instant(high) if high else None
        if (low and time_min is None) or (high and time_max is None):
            return google_error(400, "Bad Request", "badRequest")
        if time_min and time_max and time_max <= time_min:
            return google_error(400, "The specified time range is empty.", "timeRangeEmpty")
        size = min(int(query.get("maxResults") or 250), 2500, self.largest_page)
        start = _offset(query.get("pageToken"))
        if start is None:
            return google_error(400, "Invalid Value", "invalid", location="pageToken", locationType="parameter")
        zone = ZoneInfo(calendar["timeZone"])
        words = (query.get("q") or "").lower()
        found = []
        for event in self.events[calendar["id"]]:
            if event["status"] == "cancelled" and query.get("showDeleted") != "true":
                continue
            if time_min and self._moment(event["end"], zone) <= time_min:
                continue
            if time_max and self._moment(event["start"], zone) >= time_max:
                continue
            text = " ".join(
                [event.get("summary", ""), event.get("description", ""), event.get("location", "")]
                + [a["email"] for a in event.get("attendees", [])]
            )
            if words and words not in text.lower():
                continue
            found.append(event)
        if query.get("orderBy") == "startTime":
            found.sort(key=lambda e: self._moment(e["start"], zone))
        body: dict[str, Any] = {
            "kind": "calendar#events",
            "etag": '"p32g"',
            "summary": calendar["summary"],
            "updated": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "timeZone": calendar["timeZone"],
            "accessRole": calendar["accessRole"],
            "defaultReminders": [],
            "items": found[start : start + size],
        }
        if start + size < len(found):
            body["nextPageToken"] = _page_token(start + size)
        else:
            body["nextSyncToken"] = "sync-" + secrets.token_hex(6)
        return JSONResponse(body)

    # -- events.insert ---------------------------------------------------------------------------

    def _when(self, given: Any, which: str) -> tuple[dict[str, Any] | None, datetime | None, Response | None]:
        """A start or end as sent, as Google stores it (with the offset of its zone), and as a moment."""
        if not isinstance(given, dict) or not given.get("dateTime"):
            return None, None, google_error(400, f"Missing {which} time.", "required")
        zone_name = given.get("timeZone")
        try:
            moment = datetime.fromisoformat(given["dateTime"])
            zone = ZoneInfo(zone_name) if zone_name else None
        except (ValueError, KeyError):
            return None, None, google_error(400, f"Invalid time zone definition for {which} time.", "invalid")
        if moment.tzinfo is None:
            if zone is None:
                return None, None, google_error(400, f"Missing time zone definition for {which} time.", "required")
            moment = moment.replace(tzinfo=zone)
        shown = moment.astimezone(zone) if zone else moment
        stored = {"dateTime": shown.isoformat(), **({"timeZone": zone_name} if zone_name else {})}
        return stored, moment, None

    async def insert_event(self, request: Request) -> Response:
        calendar = self._calendar(request.path_params["calendarId"])
        if calendar is None:
            return google_error(404, "Not Found")
        if calendar["accessRole"] not in ("owner", "writer"):
            return google_error(403, "You need to have writer access to this calendar.", "requiredAccessLevel")
        if request.query_params.get("sendUpdates", "none") not in ("all", "externalOnly", "none"):
            return google_error(400, "Invalid Value", "invalid", location="sendUpdates", locationType="parameter")
        sent = await request.json()
        start, start_at, problem = self._when(sent.get("start"), "start")
        if problem is None:
            end, end_at, problem = self._when(sent.get("end"), "end")
        if problem is not None:
            return problem
        assert start_at is not None and end_at is not None
        if end_at <= start_at:
            return google_error(400, "The specified time range is empty.", "timeRangeEmpty")
        attendees = sent.get("attendees") or []
        if any(not EMAIL.match(str(a.get("email", ""))) for a in attendees):
            return google_error(400, "Invalid attendee email.", "invalid")
        event_id = sent.get("id") or secrets.token_hex(13)
        if not EVENT_ID.match(str(event_id)):
            return google_error(400, "Invalid resource id value.", "invalid")
        if any(e["id"] == event_id for e in self.events[calendar["id"]]):
            return google_error(409, "The requested identifier already exists.", "duplicate")
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        owner = next(c for c in self.calendars.values() if c.get("primary"))["id"]
        event = {
            "kind": "calendar#event",
            "etag": f'"{secrets.randbelow(10**16)}"',
            "id": event_id,
            "status": "confirmed",
            "htmlLink": self._link(event_id, calendar["id"]),
            "created": now,
            "updated": now,
            "summary": sent.get("summary", ""),
            **{k: sent[k] for k in ("description", "location") if k in sent},
            "creator": {"email": owner, "self": True},
            "organizer": {"email": calendar["id"], "self": calendar["id"] == owner},
            "start": start,
            "end": end,
            "iCalUID": f"{event_id}@google.com",
            "sequence": 0,
            "attendees": [{"email": a["email"], "responseStatus": "needsAction"} for a in attendees],
            "reminders": {"useDefault": True},
            "eventType": "default",
        }
        if not attendees:
            del event["attendees"]
        self.events[calendar["id"]].append(event)
        return JSONResponse(event)

    # -- events.get ------------------------------------------------------------------------------

    async def get_event(self, request: Request) -> Response:
        """An event by id, a deleted one too: Google answers it with ``status: cancelled``."""
        calendar = self._calendar(request.path_params["calendarId"])
        wanted = request.path_params["eventId"]
        event = next((e for e in self.events[calendar["id"]] if e["id"] == wanted), None) if calendar else None
        if event is None:
            return google_error(404, "Not Found")
        return JSONResponse(event)

    # -- freebusy.query --------------------------------------------------------------------------

    async def free_busy(self, request: Request) -> Response:
        sent = await request.json()
        time_min, time_max = _instant(sent.get("timeMin")), _instant(sent.get("timeMax"))
        if time_min is None or time_max is None:
            return google_error(400, "Bad Request", "badRequest")
        if time_max <= time_min:
            return google_error(400, "The specified time range is empty.", "timeRangeEmpty")
        try:
            zone = ZoneInfo(sent.get("timeZone") or "UTC")
        except (ValueError, KeyError):
            return google_error(400, "Invalid Value", "invalid")
        answer: dict[str, Any] = {}
        for index, item in enumerate(sent.get("items") or []):
            wanted = str(item.get("id", ""))
            calendar = self._calendar(wanted)
            if index >= 50:
                answer[wanted] = {"errors": [{"domain": "global", "reason": "tooManyCalendarsRequested"}], "busy": []}
            elif calendar is not None:
                calendar_zone = ZoneInfo(calendar["timeZone"])
                periods = [
                    (self._moment(e["start"], calendar_zone), self._moment(e["end"], calendar_zone))
                    for e in self.events[calendar["id"]]
                    if e["status"] != "cancelled" and e.get("transparency") != "transparent"
                ]
                answer[wanted] = {"busy": self._busy(periods, time_min, time_max, zone)}
            elif wanted.lower() in self.others:
                periods = [
                    (datetime.fromisoformat(s), datetime.fromisoformat(e)) for s, e in self.others[wanted.lower()]
                ]
                answer[wanted] = {"busy": self._busy(periods, time_min, time_max, zone)}
            else:
                answer[wanted] = {"errors": [{"domain": "global", "reason": "notFound"}], "busy": []}
        return JSONResponse(
            {
                "kind": "calendar#freeBusy",
                "timeMin": time_min.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "timeMax": time_max.astimezone(UTC).isoformat().replace("+00:00", "Z"),
                "calendars": answer,
            }
        )

    @staticmethod
    def _busy(
        periods: list[tuple[datetime, datetime]], low: datetime, high: datetime, zone: ZoneInfo
    ) -> list[dict[str, str]]:
        """Busy periods overlapping the query, merged and clipped to it, in the zone the query asked for."""
        merged: list[list[datetime]] = []
        for start, end in sorted(p for p in periods if p[1] > low and p[0] < high):
            start, end = max(start, low), min(end, high)
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return [{"start": s.astimezone(zone).isoformat(), "end": e.astimezone(zone).isoformat()} for s, e in merged]


def days_from_now(days: int, hour: int = 10) -> str:
    """A moment ``days`` from today at ``hour`` UTC, for events a sync window must hold."""
    moment = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0) + timedelta(days=days)
    return moment.isoformat()

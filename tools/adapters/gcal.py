"""Google Calendar, through its REST API v3 (https://www.googleapis.com/calendar/v3).

Lists page with ``maxResults``/``pageToken`` in and ``nextPageToken`` out. Moments are RFC 3339 with an
offset; an event's ``start`` and ``end`` hold either ``dateTime`` (a timed event) or ``date`` (an all-day one).
A calendar id may contain ``@`` and ``#`` (``en.german#holiday@group.v.calendar.google.com``), so it is
percent-encoded in paths; ``primary`` names the signed-in person's main calendar.

Harmony reads only the calendars the person picked, ``ctx.options["calendars"]`` (by default ``primary``).

events.insert takes the client's own event ``id`` (base32hex, 5 to 1024 characters, unique per calendar) and
answers 409 when the calendar already has it. An approved create sends one derived from its approval, so
running the approval once more returns the event the first run made instead of making another.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, Field

from manifests import MANIFEST_DIR
from tools.adapters import google
from tools.arguments import Arguments
from tools.context import ToolContext
from tools.errors import InvalidArguments, NotFound, ToolError
from tools.idempotency import base32hex_key
from tools.pagination import decode_cursor, encode_cursor, every_page
from tools.provider import ProviderError
from tools.sync import SyncRecord

#: The manifest this adapter carries out; the entry point in pyproject.toml registers the pair.
MANIFEST = MANIFEST_DIR / "gcal.yaml"
#: The shared client reads Google's answers Google's way (its 403 rate limits).
classify = google.classify

PRIMARY = "primary"
#: calendarList's largest page; events.list allows 2500, but 250 keeps each answer of a sync small.
PAGE_SIZE = 250
SYNC_PAST = timedelta(days=30)
SYNC_AHEAD = timedelta(days=90)
#: Free slots are a planning aid; a month of them is already more than an answer can usefully hold.
LONGEST_FREE_TIME_SEARCH = timedelta(days=31)
#: freeBusy answers for at most 50 calendars (calendarExpansionMax).
FREE_BUSY_CALENDARS = 50
NOT_A_CURSOR = "not a cursor returned by this tool; pass next_cursor from the previous page"


class ListEvents(Arguments):
    time_min: AwareDatetime | None = None
    time_max: AwareDatetime | None = None
    query: str | None = None
    limit: int = Field(default=50, ge=1, le=250)
    cursor: str | None = None


class CreateEvent(Arguments):
    summary: str
    start: datetime
    end: datetime
    time_zone: str | None = None
    description: str | None = None
    location: str | None = None
    attendees: list[str] | None = None
    calendar_id: str | None = None
    send_updates: Literal["all", "externalOnly", "none"] = "none"


class FindFreeTime(Arguments):
    time_min: AwareDatetime
    time_max: AwareDatetime
    duration_minutes: int = Field(ge=5, le=720)
    attendees: list[str] | None = None
    working_hours_start: time = time(9, 0)
    working_hours_end: time = time(17, 0)
    time_zone: str | None = None
    include_weekends: bool = False


# -- shared pieces ------------------------------------------------------------------------------------


def selected_calendars(ctx: ToolContext) -> list[str]:
    """The calendars Harmony may read, in the order picked; ``primary`` when none are.

    The picker stores a list; the option is declared as a string field (the manifest has no list type), so a
    comma-separated value typed into that field is read the same way.
    """
    chosen = ctx.options.get("calendars")
    if isinstance(chosen, str):
        chosen = chosen.split(",")
    ids = [str(item).strip() for item in chosen or []]
    return list(dict.fromkeys(i for i in ids if i)) or [PRIMARY]


def _events_path(calendar_id: str) -> str:
    return f"/calendars/{quote(calendar_id, safe='')}/events"


def _zone(name: str, field: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArguments({field: f"{name!r} is not an IANA time zone, such as Europe/Berlin"}) from None


def _home_zone(ctx: ToolContext) -> str:
    return ctx.principal.timezone or "UTC"


def _calendar_zone(listing: dict[str, Any], fallback: str) -> ZoneInfo:
    """The zone an all-day event's date is read in: the calendar's own, as Google Calendar shows it."""
    try:
        return ZoneInfo(str(listing.get("timeZone") or fallback))
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _moment(when: dict[str, Any], zone: ZoneInfo) -> datetime:
    """An event's start or end as an aware datetime; an all-day date is midnight in the calendar's zone."""
    if when.get("dateTime"):
        return datetime.fromisoformat(when["dateTime"])
    return datetime.combine(date.fromisoformat(when["date"]), time(), tzinfo=zone)


def _event(item: dict[str, Any], calendar_id: str) -> dict[str, Any]:
    start, end = item.get("start") or {}, item.get("end") or {}
    return {
        "id": item["id"],
        "calendar_id": calendar_id,
        "summary": item.get("summary", ""),
        "start": start.get("dateTime") or start.get("date", ""),
        "end": end.get("dateTime") or end.get("date", ""),
        "all_day": "date" in start and "dateTime" not in start,
        "location": item.get("location"),
        "attendees": [
            {
                "email": attendee.get("email", ""),
                "name": attendee.get("displayName"),
                "response_status": attendee.get("responseStatus", "needsAction"),
            }
            for attendee in item.get("attendees", [])
        ],
        "html_link": item.get("htmlLink", ""),
    }


async def _read_events(ctx: ToolContext, calendar_id: str, params: dict[str, Any]) -> dict[str, Any]:
    """One page of events.list; a picked calendar that is gone is named, since the person must pick again."""
    try:
        return dict(await ctx.api.json("GET", _events_path(calendar_id), params=params))
    except ProviderError as exc:
        if exc.status == 404:
            raise NotFound(
                f"Google Calendar has no calendar {calendar_id!r} for this account any more; "
                "pick the calendars again in the app's settings."
            ) from None
        raise


# -- connection test and calendar picker ----------------------------------------------------------------


async def signed_in(ctx: ToolContext) -> str:
    """Test connection: one entry of the calendar list, which names the account when it is the primary calendar."""
    listing = await ctx.api.json("GET", "/users/me/calendarList", params={"maxResults": 1})
    first: dict[str, Any] = next(iter(listing.get("items") or []), {})
    if first.get("primary"):
        return f"Signed in to Google Calendar ({first['id']})"
    return "Signed in to Google Calendar"


async def list_calendars(ctx: ToolContext) -> list[dict[str, Any]]:
    """Every calendar in the person's calendar list, for the picker: id, summary, primary, accessRole.

    ``summary`` is the person's own name for the calendar when they gave it one (``summaryOverride``),
    as Google Calendar itself shows it.
    """

    async def page(token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        listing = await ctx.api.json(
            "GET", "/users/me/calendarList", params={"maxResults": PAGE_SIZE, "pageToken": token}
        )
        return listing.get("items", []), listing.get("nextPageToken")

    return [
        {
            "id": entry["id"],
            "summary": entry.get("summaryOverride") or entry.get("summary", ""),
            "primary": bool(entry.get("primary", False)),
            "accessRole": entry.get("accessRole", ""),
        }
        async for entry in every_page(page)
    ]


# -- gcal_list_events -----------------------------------------------------------------------------------
#
# Each calendar answers in start order, page by page; the tool merges them into one start order. Its cursor
# must let the next call continue that merge exactly, so it records, for every calendar not yet read to the
# end, the page token of the page its next event is on and how many events of that page were already
# returned. The next call fetches that page again and skips those. (Handing out each calendar's
# nextPageToken alone would either skip the unreturned rest of a page or break the order across pages.)
# The cursor also keeps the window and search words, since Google's page tokens belong to one query.


@dataclass(frozen=True)
class _Window:
    time_min: datetime
    time_max: datetime | None
    query: str | None
    page_size: int

    def params(self) -> dict[str, Any]:
        return {
            "timeMin": self.time_min.isoformat(),
            "timeMax": self.time_max.isoformat() if self.time_max else None,
            "q": self.query,
            "singleEvents": "true",
            "orderBy": "startTime",
            "maxResults": self.page_size,
        }


@dataclass
class _Stream:
    """One calendar's events not yet returned: the rest of its current page, and where the next page is."""

    calendar_id: str
    zone: ZoneInfo
    page_token: str | None
    taken: int
    items: list[dict[str, Any]]
    next_token: str | None

    def position(self) -> list[Any] | None:
        if self.items:
            return [self.page_token, self.taken]
        if self.next_token:
            return [self.next_token, 0]
        return None


def _cursor_of(window: _Window, streams: list[_Stream]) -> str | None:
    positions = {s.calendar_id: p for s in streams if (p := s.position()) is not None}
    if not positions:
        return None
    frame = [window.time_min.isoformat(), window.time_max.isoformat() if window.time_max else None, window.query]
    return encode_cursor([*frame, window.page_size], positions)


def _from_cursor(cursor: str) -> tuple[_Window, dict[str, tuple[str | None, int]]]:
    frame, positions = decode_cursor(cursor, 2)
    try:
        time_min, time_max, query, page_size = frame
        window = _Window(
            datetime.fromisoformat(time_min),
            datetime.fromisoformat(time_max) if time_max else None,
            str(query) if query else None,
            int(page_size),
        )
        at = {str(c): (str(t) if t else None, int(n)) for c, (t, n) in dict(positions).items()}
    except (TypeError, ValueError):
        window = None
    if window is None or window.time_min.tzinfo is None or (window.time_max and window.time_max.tzinfo is None):
        raise InvalidArguments({"cursor": NOT_A_CURSOR})
    return window, at


def _same_window(arguments: ListEvents, window: _Window) -> None:
    """Arguments given beside a cursor must be the ones the cursor's query was made with."""
    differ = {
        "time_min": arguments.time_min is not None and arguments.time_min != window.time_min,
        "time_max": arguments.time_max is not None and arguments.time_max != window.time_max,
        "query": arguments.query is not None and arguments.query != window.query,
    }
    problems = {
        name: "differs from the query the cursor continues; leave it out" for name, bad in differ.items() if bad
    }
    if problems:
        raise InvalidArguments(problems)


async def _open(ctx: ToolContext, calendar_id: str, window: _Window, token: str | None, taken: int) -> _Stream:
    listing = await _read_events(ctx, calendar_id, {**window.params(), "pageToken": token})
    return _Stream(
        calendar_id=calendar_id,
        zone=_calendar_zone(listing, _home_zone(ctx)),
        page_token=token,
        taken=taken,
        items=list(listing.get("items", []))[taken:],
        next_token=listing.get("nextPageToken"),
    )


async def _refill(ctx: ToolContext, stream: _Stream, window: _Window) -> None:
    # Google may answer a page with no items and a token for the next one, so keep going until items or the end.
    while not stream.items and stream.next_token:
        listing = await _read_events(ctx, stream.calendar_id, {**window.params(), "pageToken": stream.next_token})
        stream.page_token, stream.taken = stream.next_token, 0
        stream.items = list(listing.get("items", []))
        stream.next_token = listing.get("nextPageToken")


async def list_events(ctx: ToolContext, arguments: ListEvents) -> dict[str, Any]:
    calendars = selected_calendars(ctx)
    if arguments.cursor:
        window, positions = _from_cursor(arguments.cursor)
        _same_window(arguments, window)
    else:
        window = _Window(
            arguments.time_min or datetime.now(UTC).replace(microsecond=0),
            arguments.time_max,
            arguments.query,
            arguments.limit,
        )
        positions = dict.fromkeys(calendars, (None, 0))
    if window.time_max is not None and window.time_max <= window.time_min:
        raise InvalidArguments({"time_max": "must be after time_min"})
    # A calendar unpicked since the first page is not read again; one picked since then waits for a new query.
    reading = [c for c in calendars if c in positions]
    try:
        # The first page of each calendar at once; a failure cancels the others rather than leaving them running.
        async with asyncio.TaskGroup() as group:
            opening = [group.create_task(_open(ctx, c, window, *positions[c])) for c in reading]
    except* ToolError as failed:
        raise failed.exceptions[0] from None
    streams = [task.result() for task in opening]
    # Beside a cursor, a limit left out is the first page's, like the rest of the query.
    limit = arguments.limit if not arguments.cursor or "limit" in arguments.model_fields_set else window.page_size
    events: list[dict[str, Any]] = []
    while len(events) < limit:
        for stream in streams:
            await _refill(ctx, stream, window)
        ready = [s for s in streams if s.items]
        if not ready:
            break
        # min() keeps the first of equal starts, so ties follow the order the calendars were picked in.
        earliest = min(ready, key=lambda s: _moment(s.items[0]["start"], s.zone))
        events.append(_event(earliest.items.pop(0), earliest.calendar_id))
        earliest.taken += 1
    return {"events": events, "next_cursor": _cursor_of(window, streams)}


# -- gcal_create_event ----------------------------------------------------------------------------------


async def create_event(ctx: ToolContext, arguments: CreateEvent) -> dict[str, Any]:
    calendar_id = arguments.calendar_id or PRIMARY
    if calendar_id != PRIMARY and calendar_id not in selected_calendars(ctx):
        raise InvalidArguments(
            {"calendar_id": "not among the calendars picked for Harmony; use primary or one of those"}
        )
    zone_name = arguments.time_zone or _home_zone(ctx)
    zone = _zone(zone_name, "time_zone")

    def local(moment: datetime) -> datetime:
        return moment if moment.tzinfo else moment.replace(tzinfo=zone)

    if local(arguments.end) <= local(arguments.start):
        raise InvalidArguments({"end": "must be after start"})
    event: dict[str, Any] = {
        "summary": arguments.summary,
        "start": {"dateTime": arguments.start.isoformat(), "timeZone": zone_name},
        "end": {"dateTime": arguments.end.isoformat(), "timeZone": zone_name},
    }
    if arguments.description is not None:
        event["description"] = arguments.description
    if arguments.location is not None:
        event["location"] = arguments.location
    if arguments.attendees:
        event["attendees"] = [{"email": email} for email in arguments.attendees]
    event_id = base32hex_key(ctx.approval_id, "gcal.event") if ctx.approval_id else None
    if event_id:
        event["id"] = event_id
    try:
        # Without an id, a POST that creates is not repeated after a 5xx: the event may exist already. With
        # one, a repeat is refused with 409 if it does, so it may be retried like any safe request.
        created = await ctx.api.json(
            "POST",
            _events_path(calendar_id),
            params={"sendUpdates": arguments.send_updates},
            json=event,
            idempotent=event_id is not None,
        )
    except ProviderError as exc:
        if event_id is None or exc.status != 409:
            raise
        created = await _created_before(ctx, calendar_id, event_id)
    return _event(created, calendar_id)


async def _created_before(ctx: ToolContext, calendar_id: str, event_id: str) -> dict[str, Any]:
    """The event an earlier run of this approval created, which Google named when it refused the id again."""
    event = dict(await ctx.api.json("GET", f"{_events_path(calendar_id)}/{event_id}"))
    # Google keeps a deleted event's id, as a cancelled event, so the id cannot be used for a new one.
    if event.get("status") == "cancelled":
        raise NotFound(
            "An earlier run of this approved call created the event and it has been deleted since; "
            "it was not created again."
        )
    return event


# -- gcal_find_free_time --------------------------------------------------------------------------------


def _merged(periods: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(periods):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _free_slots(
    arguments: FindFreeTime, zone: ZoneInfo, busy: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """Gaps between busy periods, inside each day's working hours, at least the duration asked for.

    Everything is compared in UTC: aware datetimes sharing one ZoneInfo subtract as wall-clock times, which is
    an hour off across a daylight-saving change.
    """
    shortest = timedelta(minutes=arguments.duration_minutes)
    busy = _merged([(s.astimezone(UTC), e.astimezone(UTC)) for s, e in busy])
    begin, finish = arguments.time_min.astimezone(UTC), arguments.time_max.astimezone(UTC)
    slots: list[tuple[datetime, datetime]] = []
    day, last_day = begin.astimezone(zone).date(), finish.astimezone(zone).date()
    while day <= last_day:
        if arguments.include_weekends or day.weekday() < 5:
            opens = datetime.combine(day, arguments.working_hours_start, tzinfo=zone).astimezone(UTC)
            closes = datetime.combine(day, arguments.working_hours_end, tzinfo=zone).astimezone(UTC)
            free_from, free_until = max(begin, opens), min(finish, closes)
            for busy_start, busy_end in busy:
                if busy_end <= free_from:
                    continue
                if busy_start >= free_until:
                    break
                if busy_start - free_from >= shortest:
                    slots.append((free_from, busy_start))
                free_from = max(free_from, busy_end)
            if free_until - free_from >= shortest:
                slots.append((free_from, free_until))
        day += timedelta(days=1)
    return slots


async def find_free_time(ctx: ToolContext, arguments: FindFreeTime) -> dict[str, Any]:
    zone_name = arguments.time_zone or _home_zone(ctx)
    zone = _zone(zone_name, "time_zone")
    if arguments.working_hours_end <= arguments.working_hours_start:
        raise InvalidArguments({"working_hours_end": "must be after working_hours_start"})
    if arguments.time_max <= arguments.time_min:
        raise InvalidArguments({"time_max": "must be after time_min"})
    if arguments.time_max - arguments.time_min > LONGEST_FREE_TIME_SEARCH:
        raise InvalidArguments({"time_max": f"at most {LONGEST_FREE_TIME_SEARCH.days} days after time_min"})
    calendars = list(dict.fromkeys([*selected_calendars(ctx), *(a.lower() for a in arguments.attendees or [])]))
    if len(calendars) > FREE_BUSY_CALENDARS:
        raise InvalidArguments(
            {"attendees": f"Google answers for at most {FREE_BUSY_CALENDARS} calendars at once, picked ones included"}
        )
    # A free/busy query changes nothing, so a 5xx may be retried.
    answer = await ctx.api.json(
        "POST",
        "/freeBusy",
        json={
            "timeMin": arguments.time_min.isoformat(),
            "timeMax": arguments.time_max.isoformat(),
            "timeZone": zone_name,
            "items": [{"id": calendar} for calendar in calendars],
        },
        idempotent=True,
    )
    found = answer.get("calendars") or {}
    busy: list[tuple[datetime, datetime]] = []
    unavailable: list[dict[str, str]] = []
    for calendar in calendars:
        entry = found.get(calendar)
        if entry is None:
            unavailable.append({"calendar": calendar, "reason": "notFound"})
            continue
        if entry.get("errors"):
            unavailable.append({"calendar": calendar, "reason": str(entry["errors"][0].get("reason", "unknown"))})
        busy.extend(
            (datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"]))
            for period in entry.get("busy", [])
        )
    return {
        "time_zone": zone_name,
        "free": [
            {
                "start": start.astimezone(zone).isoformat(),
                "end": end.astimezone(zone).isoformat(),
                "minutes": int((end - start).total_seconds() // 60),
            }
            for start, end in _free_slots(arguments, zone, busy)
        ],
        "unavailable": unavailable,
    }


# -- sync -----------------------------------------------------------------------------------------------


async def _stable_ids(ctx: ToolContext) -> list[str]:
    """The picked calendars with ``primary`` replaced by its real id (the account's address).

    External ids must not change when the person later picks the same calendar by its id in the picker.
    """
    ids = selected_calendars(ctx)
    if PRIMARY in ids:
        primary = await ctx.api.json("GET", f"/calendars/{PRIMARY}")
        ids = [str(primary["id"]) if i == PRIMARY else i for i in ids]
    return list(dict.fromkeys(ids))


async def list_events_for_sync(ctx: ToolContext, since: str | None) -> AsyncIterator[SyncRecord]:
    """Sync events: every event of the picked calendars from 30 days ago to 90 days ahead.

    ``since`` is not used as Google's ``updatedMin``: the window slides, so an event nobody changed still
    enters it as its day comes within 90 days, and only reading the whole window sees it. ``showDeleted``
    brings cancelled occurrences, which come back as deleted records.
    """
    now = datetime.now(UTC).replace(microsecond=0)
    window = {
        "timeMin": (now - SYNC_PAST).isoformat(),
        "timeMax": (now + SYNC_AHEAD).isoformat(),
        "singleEvents": "true",
        "showDeleted": "true",
        "maxResults": PAGE_SIZE,
    }
    for calendar_id in await _stable_ids(ctx):
        async for item, zone in _every_event(ctx, calendar_id, window):
            external_id = f"{calendar_id}:{item['id']}"
            if item.get("status") == "cancelled":
                # A cancelled occurrence may carry nothing but its id and status.
                yield SyncRecord(external_id=external_id, deleted=True)
                continue
            yield SyncRecord(
                external_id=external_id,
                fields={
                    "summary": item.get("summary", ""),
                    "start": _moment(item["start"], zone).isoformat(),
                    "end": _moment(item["end"], zone).isoformat(),
                    "attendees": [a["email"].lower() for a in item.get("attendees", []) if a.get("email")],
                    "html_link": item.get("htmlLink", ""),
                },
            )


async def _every_event(
    ctx: ToolContext, calendar_id: str, params: dict[str, Any]
) -> AsyncIterator[tuple[dict[str, Any], ZoneInfo]]:
    """Every event of one calendar's query, each with the calendar's zone for reading all-day dates."""

    async def page(token: str | None) -> tuple[list[tuple[dict[str, Any], ZoneInfo]], str | None]:
        listing = await _read_events(ctx, calendar_id, {**params, "pageToken": token})
        zone = _calendar_zone(listing, _home_zone(ctx))
        return [(item, zone) for item in listing.get("items", [])], listing.get("nextPageToken")

    async for found in every_page(page):
        yield found

"""Google Calendar's tools, picker and sync against a fake of Calendar API v3 on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from zoneinfo import ZoneInfo

import pytest

from server.http_status import status_of
from server.services.integrations.lifecycle import IntegrationError
from tests.fakes.gcal import HOLIDAYS_ID, PRIMARY_ID, PRIVATE_ID, TEAM_ID, GoogleCalendarFake, days_from_now
from tests.providers import Harness, connected
from tools.adapters.gcal import CreateEvent, create_event, list_calendars
from tools.errors import NotFound
from tools.idempotency import base32hex_key

pytestmark = pytest.mark.anyio

#: Monday 7 January 2030 to the Monday after, in Berlin (UTC+1 in winter).
WEEK = {"time_min": "2030-01-07T00:00:00+01:00", "time_max": "2030-01-14T00:00:00+01:00"}
MONDAY = {"time_min": "2030-01-07T00:00:00+01:00", "time_max": "2030-01-08T00:00:00+01:00"}
EVENTS = "/calendar/v3/calendars/{}/events"


@pytest.fixture
async def gcal(settings, registry):
    """Three calendars picked; the private one is not."""
    picked = {"calendars": [PRIMARY_ID, TEAM_ID, HOLIDAYS_ID]}
    async with connected(settings, registry, GoogleCalendarFake(), "gcal", options=picked) as harness:
        yield harness


@pytest.fixture
async def primary_only(settings, registry):
    async with connected(settings, registry, GoogleCalendarFake(), "gcal") as harness:
        yield harness


def requests_to(harness: Harness, path: str, method: str = "GET") -> list:
    return [s for s in harness.fake.api_requests() if s.path == path and s.method == method]


def as_someone_in(harness: Harness, timezone: str) -> Harness:
    """The same person in a workspace whose time zone is ``timezone``."""
    return dataclasses.replace(harness, principal=dataclasses.replace(harness.principal, timezone=timezone))


# -- gcal_list_events -------------------------------------------------------------------------------------


async def test_events_of_the_picked_calendars_come_merged_in_start_order(gcal):
    fake = gcal.fake
    fake.add_event(PRIMARY_ID, "Standup", "2030-01-07T09:00:00+01:00", "2030-01-07T09:15:00+01:00")
    fake.add_event(TEAM_ID, "Planning", "2030-01-07T08:00:00+01:00", "2030-01-07T09:00:00+01:00")
    fake.add_event(
        PRIMARY_ID,
        "Customer call",
        "2030-01-08T14:00:00+01:00",
        "2030-01-08T15:00:00+01:00",
        attendees=("carol@globex.example",),
    )
    fake.add_event(PRIVATE_ID, "Dentist", "2030-01-07T12:00:00+01:00", "2030-01-07T13:00:00+01:00")
    listed = await gcal.ok("gcal_list_events", WEEK)
    assert [(e["summary"], e["calendar_id"]) for e in listed["events"]] == [
        ("Planning", TEAM_ID),
        ("Standup", PRIMARY_ID),
        ("Customer call", PRIMARY_ID),
    ]
    call = listed["events"][2]
    assert call["start"] == "2030-01-08T14:00:00+01:00" and call["all_day"] is False
    assert call["attendees"] == [{"email": "carol@globex.example", "name": None, "response_status": "needsAction"}]
    assert call["html_link"].startswith("https://www.google.com/calendar/event?eid=")
    assert listed["next_cursor"] is None
    assert requests_to(gcal, EVENTS.format(PRIVATE_ID)) == []


async def test_without_picked_calendars_only_the_primary_one_is_read_with_occurrences_in_start_order(primary_only):
    primary_only.fake.add_event(PRIMARY_ID, "Customer call", "2030-01-08T14:00:00+01:00", "2030-01-08T15:00:00+01:00")
    listed = await primary_only.ok("gcal_list_events", {**WEEK, "query": "customer", "limit": 20})
    assert [e["calendar_id"] for e in listed["events"]] == ["primary"]
    [sent] = primary_only.fake.api_requests()
    assert sent.path == EVENTS.format("primary")
    assert sent.query == {
        "timeMin": "2030-01-07T00:00:00+01:00",
        "timeMax": "2030-01-14T00:00:00+01:00",
        "q": "customer",
        "singleEvents": "true",
        "orderBy": "startTime",
        "maxResults": "20",
    }


async def test_an_all_day_event_sorts_from_midnight_in_its_calendars_time_zone(gcal):
    """The holiday calendar's id holds # and @: it reaches Google only when percent-encoded in the path."""
    gcal.fake.add_event(TEAM_ID, "Planning", "2030-01-07T08:00:00+01:00", "2030-01-07T09:00:00+01:00")
    gcal.fake.add_event(TEAM_ID, "Late call", "2030-01-06T23:30:00+00:00", "2030-01-07T00:30:00+00:00")
    gcal.fake.add_event(HOLIDAYS_ID, "Holiday", "2030-01-07", "2030-01-08")
    listed = await gcal.ok("gcal_list_events", WEEK)
    assert [e["summary"] for e in listed["events"]] == ["Holiday", "Late call", "Planning"]
    holiday = listed["events"][0]
    assert (holiday["start"], holiday["end"], holiday["all_day"]) == ("2030-01-07", "2030-01-08", True)
    assert holiday["calendar_id"] == HOLIDAYS_ID


async def test_the_cursor_walks_several_calendars_in_one_start_order_without_gaps_or_repeats(gcal):
    for hour in (8, 9, 10, 11, 14, 15, 16):
        gcal.fake.add_event(
            PRIMARY_ID, f"P{hour}", f"2030-01-07T{hour:02}:00:00+01:00", f"2030-01-07T{hour:02}:30:00+01:00"
        )
    for hour in (10, 12, 13, 17):
        gcal.fake.add_event(
            TEAM_ID, f"T{hour}", f"2030-01-07T{hour:02}:15:00+01:00", f"2030-01-07T{hour:02}:45:00+01:00"
        )
    pages, cursor = [], None
    while True:
        listed = await gcal.ok("gcal_list_events", {**WEEK, "limit": 3} if cursor is None else {"cursor": cursor})
        pages.append([e["summary"] for e in listed["events"]])
        cursor = listed["next_cursor"]
        if cursor is None:
            break
    assert pages == [
        ["P8", "P9", "P10"],
        ["T10", "P11", "T12"],
        ["T13", "P14", "P15"],
        ["P16", "T17"],
    ]


async def test_arguments_beside_a_cursor_must_be_those_of_its_query(gcal):
    for day in range(7, 11):
        gcal.fake.add_event(
            PRIMARY_ID, "Review", f"2030-01-{day:02}T10:00:00+01:00", f"2030-01-{day:02}T11:00:00+01:00"
        )
    first = await gcal.ok("gcal_list_events", {**WEEK, "query": "review", "limit": 2})
    same = await gcal.ok("gcal_list_events", {**WEEK, "query": "review", "cursor": first["next_cursor"]})
    assert [e["start"][:10] for e in same["events"]] == ["2030-01-09", "2030-01-10"]
    other = await gcal.call("gcal_list_events", {"query": "standup", "cursor": first["next_cursor"]})
    assert other.error_code == "invalid_arguments" and "query" in other.message


async def test_a_cursor_the_tool_did_not_make_is_refused(gcal):
    result = await gcal.call("gcal_list_events", {"cursor": "bm90LWEtY3Vyc29y"})
    assert result.error_code == "invalid_arguments" and "cursor" in result.message
    assert gcal.fake.api_requests() == []


async def test_a_time_without_an_offset_is_refused_naming_the_field(gcal):
    result = await gcal.call("gcal_list_events", {"time_min": "2030-01-07T09:00:00"})
    assert result.error_code == "invalid_arguments" and "time_min" in result.message
    assert gcal.fake.api_requests() == []


async def test_an_empty_window_is_refused_before_google_is_asked(gcal):
    result = await gcal.call("gcal_list_events", {"time_min": WEEK["time_max"], "time_max": WEEK["time_min"]})
    assert result.error_code == "invalid_arguments" and "time_max" in result.message
    assert gcal.fake.api_requests() == []


async def test_a_picked_calendar_that_is_gone_is_named(settings, registry):
    gone = "gone@group.calendar.google.com"
    picked = {"calendars": [PRIMARY_ID, gone]}
    async with connected(settings, registry, GoogleCalendarFake(), "gcal", options=picked) as gcal:
        result = await gcal.call("gcal_list_events", WEEK)
    assert result.error_code == "not_found"
    assert gone in result.message and "pick the calendars again" in result.message


async def test_picked_calendars_may_be_stored_as_comma_separated_text(settings, registry):
    picked = {"calendars": f"{PRIMARY_ID}, {TEAM_ID}"}
    async with connected(settings, registry, GoogleCalendarFake(), "gcal", options=picked) as gcal:
        await gcal.ok("gcal_list_events", WEEK)
        assert sorted(s.path for s in gcal.fake.api_requests()) == sorted(
            [EVENTS.format(PRIMARY_ID), EVENTS.format(TEAM_ID)]
        )


# -- gcal_create_event ------------------------------------------------------------------------------------


async def test_an_event_is_created_as_a_google_event_resource(gcal):
    created = await gcal.ok(
        "gcal_create_event",
        {
            "summary": "Follow-up with Globex",
            "start": "2030-01-09T14:00:00",
            "end": "2030-01-09T14:30:00",
            "time_zone": "Europe/Berlin",
            "description": "Next steps from the pricing call",
            "location": "Meet",
            "attendees": ["carol@globex.example", "dan@globex.example"],
            "send_updates": "all",
        },
    )
    assert created["summary"] == "Follow-up with Globex" and created["calendar_id"] == "primary"
    assert (created["start"], created["end"]) == ("2030-01-09T14:00:00+01:00", "2030-01-09T14:30:00+01:00")
    assert [a["email"] for a in created["attendees"]] == ["carol@globex.example", "dan@globex.example"]
    assert created["id"] == gcal.fake.events[PRIMARY_ID][0]["id"] and created["html_link"]
    [sent] = requests_to(gcal, EVENTS.format("primary"), "POST")
    assert sent.query == {"sendUpdates": "all"}
    assert json.loads(sent.body) == {
        "summary": "Follow-up with Globex",
        "start": {"dateTime": "2030-01-09T14:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2030-01-09T14:30:00", "timeZone": "Europe/Berlin"},
        "description": "Next steps from the pricing call",
        "location": "Meet",
        "attendees": [{"email": "carol@globex.example"}, {"email": "dan@globex.example"}],
    }


async def test_an_event_is_in_the_workspaces_time_zone_and_e_mails_nobody_unless_asked(gcal):
    in_new_york = as_someone_in(gcal, "America/New_York")
    created = await in_new_york.ok(
        "gcal_create_event", {"summary": "Prep", "start": "2030-01-09T09:00:00", "end": "2030-01-09T09:30:00"}
    )
    assert created["start"] == "2030-01-09T09:00:00-05:00"
    [sent] = requests_to(gcal, EVENTS.format("primary"), "POST")
    assert sent.query == {"sendUpdates": "none"}
    assert json.loads(sent.body)["start"] == {"dateTime": "2030-01-09T09:00:00", "timeZone": "America/New_York"}


async def test_an_event_goes_only_on_the_primary_or_a_picked_calendar(gcal):
    event = {"summary": "Sprint review", "start": "2030-01-10T10:00:00", "end": "2030-01-10T11:00:00"}
    refused = await gcal.call("gcal_create_event", {**event, "calendar_id": PRIVATE_ID})
    assert refused.error_code == "invalid_arguments" and "calendar_id" in refused.message
    assert gcal.fake.api_requests() == []
    created = await gcal.ok("gcal_create_event", {**event, "calendar_id": TEAM_ID})
    assert created["calendar_id"] == TEAM_ID and gcal.fake.events[TEAM_ID][0]["summary"] == "Sprint review"


async def test_times_and_time_zones_are_checked_before_google_is_asked(gcal):
    backwards = {"summary": "x", "start": "2030-01-10T11:00:00", "end": "2030-01-10T10:00:00"}
    result = await gcal.call("gcal_create_event", backwards)
    assert result.error_code == "invalid_arguments" and "end" in result.message
    nowhere = {"summary": "x", "start": "2030-01-10T10:00:00", "end": "2030-01-10T11:00:00", "time_zone": "Mars/Base"}
    result = await gcal.call("gcal_create_event", nowhere)
    assert result.error_code == "invalid_arguments" and "time_zone" in result.message
    assert gcal.fake.api_requests() == []


async def test_googles_refusal_reads_in_googles_words(gcal):
    event = {"summary": "x", "start": "2030-01-10T10:00:00", "end": "2030-01-10T11:00:00"}
    # An address without a dot in its domain is refused before Google sees it, naming the attendee.
    result = await gcal.call("gcal_create_event", {**event, "attendees": ["carol@globex"]})
    assert result.error_code == "invalid_arguments" and "attendees.0" in result.message
    result = await gcal.call("gcal_create_event", {**event, "calendar_id": HOLIDAYS_ID})
    assert result.error_code == "forbidden"
    assert result.message.startswith(
        "Google Calendar refused the request: You need to have writer access to this calendar."
    )


async def test_a_5xx_after_creating_is_not_retried(gcal):
    """A 502 may hide an event that was made; sending the POST again could put it on the calendar twice."""
    gcal.fake.fail_next(502, when=lambda seen: seen.method == "POST")
    event = {"summary": "Once", "start": "2030-01-10T10:00:00", "end": "2030-01-10T11:00:00"}
    result = await gcal.call("gcal_create_event", event)
    assert result.error_code == "provider_unavailable"
    assert len(requests_to(gcal, EVENTS.format("primary"), "POST")) == 1


async def run_approved(harness: Harness, approval_id: str, arguments: CreateEvent) -> dict:
    """The adapter as the gateway runs an approved call, each time in a context of its own, as a new process would."""
    ctx = await harness.context()
    ctx.approval_id = approval_id
    return await create_event(ctx, arguments)


FOLLOW_UP = CreateEvent.model_validate(
    {"summary": "Follow-up", "start": "2030-01-10T10:00:00", "end": "2030-01-10T11:00:00", "time_zone": "Europe/Berlin"}
)


async def test_an_auto_allowed_event_carries_no_id_and_google_makes_one(gcal):
    created = await gcal.ok("gcal_create_event", FOLLOW_UP.model_dump(mode="json", exclude_defaults=True))
    [sent] = requests_to(gcal, EVENTS.format("primary"), "POST")
    assert "id" not in json.loads(sent.body)
    assert created["id"] == gcal.fake.events[PRIMARY_ID][0]["id"]


async def test_an_approved_event_run_again_is_the_event_the_first_run_made(gcal):
    first = await run_approved(gcal, "apr_0123456789abcdef", FOLLOW_UP)
    again = await run_approved(gcal, "apr_0123456789abcdef", FOLLOW_UP)
    assert again == first
    assert [e["id"] for e in gcal.fake.events[PRIMARY_ID]] == [base32hex_key("apr_0123456789abcdef", "gcal.event")]
    posts = requests_to(gcal, EVENTS.format("primary"), "POST")
    assert [json.loads(p.body)["id"] for p in posts] == [first["id"], first["id"]]
    # Google refused the second with 409; the event came from events.get by that id.
    assert requests_to(gcal, f"{EVENTS.format('primary')}/{first['id']}")


async def test_each_approval_makes_its_own_event(gcal):
    one = await run_approved(gcal, "apr_0123456789abcdef", FOLLOW_UP)
    other = await run_approved(gcal, "apr_fedcba9876543210", FOLLOW_UP)
    assert one["id"] != other["id"] and len(gcal.fake.events[PRIMARY_ID]) == 2


async def test_an_approved_event_is_retried_after_a_5xx_since_its_id_makes_a_repeat_harmless(gcal):
    gcal.fake.fail_next(502, when=lambda seen: seen.method == "POST")
    created = await run_approved(gcal, "apr_0123456789abcdef", FOLLOW_UP)
    assert len(requests_to(gcal, EVENTS.format("primary"), "POST")) == 2
    assert [e["id"] for e in gcal.fake.events[PRIMARY_ID]] == [created["id"]]


async def test_an_event_deleted_since_the_first_run_is_not_created_again(gcal):
    first = await run_approved(gcal, "apr_0123456789abcdef", FOLLOW_UP)
    gcal.fake.events[PRIMARY_ID][0]["status"] = "cancelled"
    with pytest.raises(NotFound, match="deleted since"):
        await run_approved(gcal, "apr_0123456789abcdef", FOLLOW_UP)
    assert [e["id"] for e in gcal.fake.events[PRIMARY_ID]] == [first["id"]]


# -- gcal_find_free_time ----------------------------------------------------------------------------------


async def test_free_time_is_when_no_picked_calendar_nor_attendee_is_busy(gcal):
    fake = gcal.fake
    fake.add_event(PRIMARY_ID, "Standup", "2030-01-07T09:00:00+01:00", "2030-01-07T10:00:00+01:00")
    fake.add_event(TEAM_ID, "Planning", "2030-01-07T09:30:00+01:00", "2030-01-07T11:00:00+01:00")
    fake.add_event(PRIMARY_ID, "1:1", "2030-01-07T11:30:00+01:00", "2030-01-07T12:00:00+01:00")
    fake.add_event(
        PRIMARY_ID, "Focus", "2030-01-07T15:00:00+01:00", "2030-01-07T16:00:00+01:00", transparency="transparent"
    )
    fake.add_event(TEAM_ID, "Retro", "2030-01-07T16:00:00+01:00", "2030-01-07T17:00:00+01:00")
    fake.others["carol@globex.example"] = [("2030-01-07T12:00:00Z", "2030-01-07T13:30:00Z")]
    found = await gcal.ok(
        "gcal_find_free_time",
        {**MONDAY, "duration_minutes": 45, "attendees": ["Carol@globex.example"], "time_zone": "Europe/Berlin"},
    )
    assert found == {
        "time_zone": "Europe/Berlin",
        "free": [
            {"start": "2030-01-07T12:00:00+01:00", "end": "2030-01-07T13:00:00+01:00", "minutes": 60},
            {"start": "2030-01-07T14:30:00+01:00", "end": "2030-01-07T16:00:00+01:00", "minutes": 90},
        ],
        "unavailable": [],
    }
    [sent] = requests_to(gcal, "/calendar/v3/freeBusy", "POST")
    assert json.loads(sent.body) == {
        "timeMin": "2030-01-07T00:00:00+01:00",
        "timeMax": "2030-01-08T00:00:00+01:00",
        "timeZone": "Europe/Berlin",
        "items": [{"id": PRIMARY_ID}, {"id": TEAM_ID}, {"id": HOLIDAYS_ID}, {"id": "carol@globex.example"}],
    }


async def test_weekends_are_left_out_unless_asked_for(gcal):
    weekend = {"time_min": "2030-01-12T00:00:00+01:00", "time_max": "2030-01-14T00:00:00+01:00"}
    hours = {"duration_minutes": 60, "working_hours_start": "10:00", "working_hours_end": "12:00"}
    assert (await gcal.ok("gcal_find_free_time", {**weekend, **hours, "time_zone": "Europe/Berlin"}))["free"] == []
    found = await gcal.ok(
        "gcal_find_free_time", {**weekend, **hours, "time_zone": "Europe/Berlin", "include_weekends": True}
    )
    assert [(slot["start"], slot["minutes"]) for slot in found["free"]] == [
        ("2030-01-12T10:00:00+01:00", 120),
        ("2030-01-13T10:00:00+01:00", 120),
    ]


async def test_working_hours_are_those_of_the_workspaces_time_zone_by_default(gcal):
    found = await as_someone_in(gcal, "America/New_York").ok(
        "gcal_find_free_time",
        {"time_min": "2030-01-07T00:00:00-05:00", "time_max": "2030-01-08T00:00:00-05:00", "duration_minutes": 30},
    )
    assert found["time_zone"] == "America/New_York"
    assert found["free"] == [{"start": "2030-01-07T09:00:00-05:00", "end": "2030-01-07T17:00:00-05:00", "minutes": 480}]
    [sent] = requests_to(gcal, "/calendar/v3/freeBusy", "POST")
    assert json.loads(sent.body)["timeZone"] == "America/New_York"


async def test_an_attendee_whose_calendar_google_cannot_read_is_reported(gcal):
    found = await gcal.ok(
        "gcal_find_free_time", {**MONDAY, "duration_minutes": 30, "attendees": ["x@elsewhere.example"]}
    )
    assert found["unavailable"] == [{"calendar": "x@elsewhere.example", "reason": "notFound"}]


async def test_a_free_time_search_is_bounded_and_its_hours_must_make_sense(gcal):
    too_long = {"time_min": "2030-01-01T00:00:00Z", "time_max": "2030-03-01T00:00:00Z", "duration_minutes": 30}
    result = await gcal.call("gcal_find_free_time", too_long)
    assert result.error_code == "invalid_arguments" and "time_max" in result.message
    upside_down = {**MONDAY, "duration_minutes": 30, "working_hours_start": "17:00", "working_hours_end": "09:00"}
    result = await gcal.call("gcal_find_free_time", upside_down)
    assert result.error_code == "invalid_arguments" and "working_hours_end" in result.message
    assert gcal.fake.api_requests() == []


async def test_a_5xx_on_the_free_busy_query_is_retried(gcal):
    """Asking for free/busy changes nothing, so the POST is safe to send again."""
    gcal.fake.fail_next(503, when=lambda seen: seen.path.endswith("/freeBusy"))
    await gcal.ok("gcal_find_free_time", {**MONDAY, "duration_minutes": 30})
    assert len(requests_to(gcal, "/calendar/v3/freeBusy", "POST")) == 2


# -- the client layer, with Google's answers ---------------------------------------------------------------


async def test_a_refused_token_is_refreshed_and_google_keeps_the_refresh_token(primary_only):
    before = await primary_only.credentials()
    primary_only.fake.expire_access_tokens()
    await primary_only.ok("gcal_list_events", WEEK)
    after = await primary_only.credentials()
    assert primary_only.fake.refreshes == 1
    assert after["access_token"] != before["access_token"] and after["refresh_token"] == before["refresh_token"]
    assert [s.path for s in primary_only.fake.seen] == [EVENTS.format("primary"), "/token", EVENTS.format("primary")]


async def test_a_revoked_refresh_token_asks_for_reconnection(primary_only):
    primary_only.fake.revoke_refresh_tokens()
    result = await primary_only.call("gcal_list_events", WEEK)
    assert result.error_code == "needs_reauth" and "Reconnect" in result.message


async def test_429_waits_as_long_as_retry_after_says(gcal):
    gcal.fake.fail_next(429, headers={"Retry-After": "1"}, when=lambda seen: seen.path == EVENTS.format(TEAM_ID))
    started = time.monotonic()
    await gcal.ok("gcal_list_events", WEEK)
    assert time.monotonic() - started >= 0.9
    assert len(requests_to(gcal, EVENTS.format(TEAM_ID))) == 2


async def test_a_5xx_on_a_read_is_retried(gcal):
    gcal.fake.fail_next(500, times=2, when=lambda seen: seen.path == EVENTS.format(TEAM_ID))
    await gcal.ok("gcal_list_events", WEEK)
    assert len(requests_to(gcal, EVENTS.format(TEAM_ID))) == 3


async def test_calendars_read_side_by_side_share_one_refresh(gcal):
    gcal.fake.expire_access_tokens()
    await gcal.ok("gcal_list_events", WEEK)
    assert gcal.fake.refreshes == 1


async def test_googles_403_rate_limit_reads_as_rate_limiting_not_as_a_refusal(gcal):
    gcal.fake.fail_next(
        403,
        headers={"Retry-After": "600"},
        body={
            "error": {
                "code": 403,
                "message": "Rate Limit Exceeded",
                "errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded", "message": "Rate Limit Exceeded"}],
                "status": "PERMISSION_DENIED",
            }
        },
    )
    result = await gcal.call("gcal_find_free_time", {**MONDAY, "duration_minutes": 30})
    assert result.error_code == "rate_limited" and "600 s" in result.message


# -- connection test, calendar picker, sync ---------------------------------------------------------------


async def test_test_connection_names_the_primary_calendar(gcal):
    assert await gcal.test_connection() == f"Signed in to Google Calendar ({PRIMARY_ID})"
    [sent] = gcal.fake.api_requests()
    assert sent.path == "/calendar/v3/users/me/calendarList" and sent.query == {"maxResults": "1"}


async def test_the_calendar_picker_reads_every_page_of_the_calendar_list(gcal):
    gcal.fake.largest_page = 3
    gcal.fake.calendars[TEAM_ID]["summaryOverride"] = "My team"
    calendars = await list_calendars(await gcal.context())
    assert calendars == [
        {"id": PRIMARY_ID, "summary": PRIMARY_ID, "primary": True, "accessRole": "owner"},
        {"id": TEAM_ID, "summary": "My team", "primary": False, "accessRole": "writer"},
        {"id": HOLIDAYS_ID, "summary": "Holidays in Germany", "primary": False, "accessRole": "reader"},
        {"id": PRIVATE_ID, "summary": "Private", "primary": False, "accessRole": "owner"},
    ]
    assert len(gcal.fake.api_requests()) == 2


async def test_sync_reads_the_window_of_every_picked_calendar_page_by_page(gcal):
    fake = gcal.fake
    fake.largest_page = 2
    kept = [
        fake.add_event(
            PRIMARY_ID, "Last week", days_from_now(-7), days_from_now(-7, 11), attendees=("Carol@Globex.example",)
        ),
        fake.add_event(PRIMARY_ID, "Next week", days_from_now(7), days_from_now(7, 11)),
        fake.add_event(PRIMARY_ID, "Cancelled", days_from_now(3), days_from_now(3, 11), status="cancelled"),
        fake.add_event(TEAM_ID, "Offsite", days_from_now(60), days_from_now(60, 16)),
    ]
    fake.add_event(PRIMARY_ID, "Too old", days_from_now(-45), days_from_now(-45, 11))
    fake.add_event(PRIMARY_ID, "Too far", days_from_now(120), days_from_now(120, 11))
    fake.add_event(PRIVATE_ID, "Not picked", days_from_now(1), days_from_now(1, 11))
    records = {r.external_id: r for r in await gcal.synced()}
    assert set(records) == {f"{PRIMARY_ID}:{e['id']}" for e in kept[:3]} | {f"{TEAM_ID}:{kept[3]['id']}"}
    last_week = records[f"{PRIMARY_ID}:{kept[0]['id']}"]
    assert last_week.fields == {
        "summary": "Last week",
        "start": days_from_now(-7),
        "end": days_from_now(-7, 11),
        "attendees": ["carol@globex.example"],
        "html_link": kept[0]["htmlLink"],
    }
    assert [r.external_id for r in records.values() if r.deleted] == [f"{PRIMARY_ID}:{kept[2]['id']}"]
    sent = requests_to(gcal, EVENTS.format(PRIMARY_ID))
    assert len(sent) == 2 and sent[1].query["pageToken"]
    assert sent[0].query["singleEvents"] == "true" and sent[0].query["showDeleted"] == "true"
    window = datetime.fromisoformat(sent[0].query["timeMax"]) - datetime.fromisoformat(sent[0].query["timeMin"])
    assert window == timedelta(days=120)


async def test_sync_names_the_primary_calendar_by_its_address_and_all_day_dates_by_its_zone(primary_only):
    """External ids must not change when the person later picks the primary calendar by its id."""
    day = (datetime.now(UTC) + timedelta(days=5)).date()
    primary_only.fake.add_event(PRIMARY_ID, "Holiday", day.isoformat(), (day + timedelta(days=1)).isoformat())
    [record] = await primary_only.synced()
    assert record.external_id.startswith(f"{PRIMARY_ID}:")
    berlin = ZoneInfo("Europe/Berlin")
    assert record.fields["start"] == datetime.combine(day, time_of_day(), berlin).isoformat()
    assert record.fields["end"] == datetime.combine(day + timedelta(days=1), time_of_day(), berlin).isoformat()


async def test_the_calendar_picker_refreshes_its_list_and_the_pick_limits_what_is_read(primary_only):
    """Manage > Calendars: Refresh list asks Google; ticking calendars saves them as the connection's option."""
    integrations = primary_only.companion.integrations
    who, connection = primary_only.principal, primary_only.connection_id
    primary_only.fake.add_calendar("new@group.calendar.google.com", "Made a minute ago")
    choices = await integrations.choices(who, connection, "calendars")
    assert "new@group.calendar.google.com" in {c["id"] for c in choices}
    saved = await integrations.set_options(who, connection, {"calendars": [TEAM_ID]})
    assert saved["options"] == {"calendars": [TEAM_ID]}
    await primary_only.ok("gcal_list_events", WEEK)
    assert requests_to(primary_only, EVENTS.format(TEAM_ID)) and not requests_to(
        primary_only, EVENTS.format(PRIMARY_ID)
    )


async def test_a_picker_list_google_cannot_give_is_refused_in_fixed_words(primary_only):
    """Refresh list when Google fails: a refusal the console and the API show, never a crash or Google's text."""
    integrations = primary_only.companion.integrations
    primary_only.fake.fail_next(500, times=5, when=lambda seen: seen.path.endswith("/calendarList"))
    with pytest.raises(IntegrationError) as refused:
        await integrations.choices(primary_only.principal, primary_only.connection_id, "calendars")
    assert refused.value.code == "provider_unreachable" and status_of(refused.value) == 502

"""harmony_client, the Python SDK, against the real app: in process (async) and on a live uvicorn server (sync).

Auto-pagination over the 24 demo meetings, filters, each resource (approvals
decided for an assistant's real calls, rules explained and simulated against
recorded ones, an app connected to a fake Linear and walked through its life),
typed errors parsed from real error answers, rate-limit headers and a real 429,
an upload and its status, the models checked field by field against
``/api/v1/openapi.json``, webhook verification against the server's signer
and the documented receiver snippet, and the seed's three use cases as the
seed writes them. Only the retry timing runs on ``httpx.MockTransport``: a
real 429 asks for up to a minute's wait.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import hmac
import io
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from sqlalchemy import delete, select, update
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import harmony_client
from harmony_client import (
    AsyncHarmony,
    Forbidden,
    Harmony,
    HarmonyError,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    SignatureError,
    Unauthorized,
    _http,
    models,
    webhooks,
)
from server.app import Companion, create_app
from server.services import demo
from server.services.demo import DemoKeys
from server.services.webhooks import signing
from store.models import Base, Insight, Meeting, MeetingContact, MeetingStatus, Plan, Team, Workspace
from tests.conftest import TEST_SECRET, free_port, mcp_client
from tests.fakes.base import serve
from tests.fakes.linear import LinearFake
from tests.providers import provider_settings
from tests.webhook_receiver import load_snippet

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000/api/v1"
ADMIN = "admin@acme.test"
ALICE = "alice@acme.test"
SECRET = "whsec_test-secret"
AUDIO = os.urandom(64 * 1024)
VTT = b"WEBVTT\n\n00:00:05.000 --> 00:00:07.000\n<v Alice Archer>Thanks for joining today.</v>\n"
T = TypeVar("T")


class Recording(httpx.AsyncBaseTransport):
    """The app in process, noting each request's URL: shows how many pages a walk fetched, and when."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.urls: list[httpx.URL] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(request.url)
        return await self.inner.handle_async_request(request)


@pytest.fixture
async def app(companion, demo_keys) -> AsyncIterator[Any]:
    app = create_app(companion)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def connect(app) -> AsyncIterator[Callable[..., AsyncHarmony]]:
    """AsyncHarmony clients on the app in process; closed at the end."""
    clients: list[AsyncHarmony] = []

    def connect(key: str, **options: Any) -> AsyncHarmony:
        options.setdefault("transport", httpx.ASGITransport(app=app))
        client = AsyncHarmony(api_key=key, base_url=BASE, **options)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.aclose()


@pytest.fixture
def admin(connect, demo_keys) -> AsyncHarmony:
    return connect(demo_keys.user_keys[ADMIN])


@pytest.fixture
def sync_client(live_server, demo_keys) -> Callable[[], Harmony]:
    """A Harmony on the live server, with the admin's user key. Use it in a thread (``in_thread``)."""
    return lambda: Harmony(api_key=demo_keys.user_keys[ADMIN], base_url=f"{live_server}/api/v1")


async def in_thread(work: Callable[[], T]) -> T:
    """Run sync client code off the event loop, which serves the live server."""
    return await anyio.to_thread.run_sync(work)


async def collect(pager: harmony_client.AsyncPager[T]) -> list[T]:
    return [item async for item in pager]


async def meeting_ids(companion, *where: Any) -> set[str]:
    async with companion.db.session() as session:
        return set(await session.scalars(select(Meeting.id).where(*where)))


# --- The package stands alone ---


def test_the_package_imports_nothing_from_the_server():
    root = Path(harmony_client.__file__).parent
    imported: set[str] = set()
    for source in root.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    assert not imported & {"server", "store", "tools", "approvals", "manifests"}


async def test_the_models_match_the_openapi_document_field_by_field(app):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        schemas = (await http.get("/openapi.json")).json()["components"]["schemas"]
    pairs = {
        "MeetingOut": models.Meeting, "MeetingDetail": models.MeetingDetail, "ContactOut": models.Contact,
        "ActionItemOut": models.ActionItem, "TranscriptLine": models.TranscriptLine,
        "TranscriptOut": models.Transcript, "SummaryOut": models.Summary, "InsightOut": models.Insight,
        "InsightDetail": models.InsightDetail, "InsightData": models.InsightData, "Pagination": models.Pagination,
        "Page_MeetingOut_": models.Page[models.Meeting], "KeyOut": models.ApiKey, "NewKey": models.NewApiKey,
        "KeyList": models.KeyList, "UploadAccepted": models.UploadAccepted, "StoredFileOut": models.StoredFile,
        "ProcessingStatus": models.ProcessingStatus, "JobOut": models.ProcessingJob,
        "ApprovalOut": models.Approval, "ApprovalList": models.ApprovalList, "RuleOut": models.Rule,
        "RuleList": models.RuleList, "Condition": models.Condition, "RuleContext": models.RuleContext,
        "HourWindow": models.HourWindow, "Cap": models.Cap, "Explanation": models.Explanation,
        "RuleMatch": models.RuleMatch, "ShadowDecision": models.ShadowDecision, "CapApplied": models.CapApplied,
        "Simulation": models.Simulation, "SimulatedCall": models.SimulatedCall, "AppOut": models.App,
        "AppList": models.AppList, "ToolSummary": models.ToolSummary, "SyncFields": models.SyncFields,
        "ConnectionOut": models.Connection, "ConnectionList": models.ConnectionList,
        "OAuthStarted": models.OAuthStart, "TestResult": models.ConnectionTest, "ChoiceList": models.ChoiceList,
        "MappingsOut": models.Mappings, "SyncRunOut": models.SyncRun, "SyncRunList": models.SyncRunList,
    }  # fmt: skip
    for name, model in pairs.items():
        schema = schemas[name]
        # A field named for a Python keyword (``from``) carries the API's name as its alias.
        names = {info.alias or field: info for field, info in model.model_fields.items()}
        required = {field for field, info in names.items() if info.is_required()}
        assert set(names) == set(schema["properties"]), name
        assert required == set(schema.get("required", [])), name
    for name, enum in (
        ("MeetingStatus", models.MeetingStatus), ("KeyKind", models.KeyKind), ("ApprovalStatus", models.ApprovalStatus),
        ("Effect", models.Effect),
    ):  # fmt: skip
        assert [member.value for member in enum] == schemas[name]["enum"]
    assert [member.value for member in models.JobState] == schemas["JobStatus"]["enum"]


async def test_the_key_can_come_from_the_environment_and_the_address_defaults_to_a_local_companion(
    app, demo_keys, monkeypatch
):
    monkeypatch.setenv("HARMONY_API_KEY", demo_keys.user_keys[ADMIN])
    monkeypatch.delenv("HARMONY_BASE_URL", raising=False)
    transport = Recording(app)
    async with AsyncHarmony(transport=transport) as harmony:
        page = await harmony.meetings.list_page(date_from=date(2026, 1, 25), per_page=1)
    assert page.pagination.per_page == 1
    assert str(transport.urls[0]) == "http://127.0.0.1:8000/api/v1/meetings?date_from=2026-01-25&page=1&per_page=1"
    monkeypatch.delenv("HARMONY_API_KEY")
    with pytest.raises(ValueError, match="HARMONY_API_KEY"):
        Harmony()


# --- Pagination ---


async def test_list_walks_all_24_meetings_by_cursor_a_page_at_a_time(app, demo_keys):
    transport = Recording(app)
    async with AsyncHarmony(api_key=demo_keys.user_keys[ADMIN], base_url=BASE, transport=transport) as harmony:
        pager = harmony.meetings.list(per_page=5)
        assert transport.urls == [], "nothing is fetched before iteration"
        walked = aiter(pager)
        first = await anext(walked)
        assert isinstance(first, models.Meeting) and len(transport.urls) == 1
        meetings = [first, *[m async for m in walked]]
    assert len(meetings) == 24 and len({m.id for m in meetings}) == 24
    assert [m.date for m in meetings] == sorted((m.date for m in meetings), reverse=True)
    assert len(transport.urls) == 5
    assert "cursor" not in transport.urls[0].params and all("cursor" in url.params for url in transport.urls[1:])
    assert {url.params["per_page"] for url in transport.urls} == {"5"}


async def test_the_sync_client_walks_them_too_and_the_seeds_page_loop_agrees(sync_client):
    def walk() -> tuple[list[str], list[str], int | None]:
        with sync_client() as api:
            by_cursor = [m.id for m in api.meetings.list(per_page=7)]
            # The seed's "Use Pagination" loop, with the one-page call.
            all_meetings = []
            page = 1
            while True:
                response = api.meetings.list_page(page=page, per_page=10)
                all_meetings.extend(response.data)
                if not response.has_more:
                    break
                page += 1
            return by_cursor, [m.id for m in all_meetings], api.meetings.list_page(per_page=1).pagination.total

    by_cursor, by_page, total = await in_thread(walk)
    assert by_cursor == by_page and len(set(by_cursor)) == 24 and total == 24


async def test_pages_walks_whole_pages_and_list_page_follows_a_cursor(admin):
    pages = [page async for page in admin.meetings.list(per_page=10).pages()]
    assert [len(p.data) for p in pages] == [10, 10, 4] and [p.has_more for p in pages] == [True, True, False]
    assert pages[0].pagination.total == 24 and pages[1].pagination.total is None
    second = await admin.meetings.list_page(per_page=10, cursor=pages[0].pagination.next_cursor)
    assert [m.id for m in second.data] == [m.id for m in pages[1].data] and second.pagination.page is None


# --- Filters and resources ---


async def test_filters_narrow_the_list(admin, companion):
    processed = await collect(admin.meetings.list(status="processed", per_page=100))
    assert {m.id for m in processed} == await meeting_ids(companion, Meeting.status == MeetingStatus.PROCESSED)
    assert all(m.status is models.MeetingStatus.PROCESSED for m in processed)
    async with companion.db.session() as session:
        product = await session.scalar(select(Team.id).where(Team.name == "Product"))
    of_team = await collect(admin.meetings.list(team_id=product))
    assert {m.id for m in of_team} == await meeting_ids(companion, Meeting.team_id == product)
    owner = of_team[0].owner_id
    assert owner is not None
    owned = await collect(admin.meetings.list(user_id=owner, status=models.MeetingStatus.PROCESSED))
    expected = await meeting_ids(companion, Meeting.owner_id == owner, Meeting.status == MeetingStatus.PROCESSED)
    assert {m.id for m in owned} == expected
    day = processed[3].date.date()
    same_day = await collect(admin.meetings.list(date_from=day, date_to=day.isoformat()))
    assert processed[3].id in {m.id for m in same_day} and all(m.date.date() == day for m in same_day)


async def test_a_meeting_with_its_transcript_summary_and_insights(admin, companion):
    async with companion.db.session() as session:
        meeting_id = await session.scalar(select(Meeting.id).where(Meeting.status == MeetingStatus.PROCESSED))
        expected_insights = set(await session.scalars(select(Insight.id).where(Insight.meeting_id == meeting_id)))
    meeting = await admin.meetings.get(meeting_id)
    assert isinstance(meeting, models.MeetingDetail) and meeting.has_summary and meeting.transcript_segments == 12
    assert meeting.owner and meeting.team and isinstance(meeting.date, datetime) and meeting.date.tzinfo
    assert all(isinstance(c, models.Contact) for c in meeting.contacts) and meeting.action_items
    transcript = await admin.meetings.get_transcript(meeting_id)
    assert transcript.meeting_id == meeting_id and len(transcript.transcript) == 12
    assert transcript.transcript[0].timestamp == "00:00:05" and transcript.transcript[0].offset_seconds == 5.0
    summary = await admin.meetings.get_summary(meeting_id)
    assert summary.meeting_id == meeting_id and summary.summary and len(summary.key_points) == 4
    insights = await collect(admin.meetings.get_insights(meeting_id, per_page=1))
    assert {i.id for i in insights} == expected_insights


async def test_contacts_and_their_meetings(admin, companion):
    everyone = await collect(admin.contacts.list(per_page=5))
    assert len(everyone) == 12 and [c.name for c in everyone] == sorted(c.name for c in everyone)
    globex = await collect(admin.contacts.list(query="GLOBEX"))
    assert {c.email for c in globex} == {"carol@globex.example", "dan@globex.example"}
    carol = next(c for c in globex if c.name == "Carol Chen")
    assert await admin.contacts.get(carol.id) == carol
    async with companion.db.session() as session:
        attended = set(
            await session.scalars(select(MeetingContact.meeting_id).where(MeetingContact.contact_id == carol.id))
        )
    assert {m.id for m in await collect(admin.contacts.meetings(carol.id, per_page=2))} == attended


async def test_insights_with_their_data(admin, companion):
    everything = await collect(admin.insights.list(per_page=10))
    async with companion.db.session() as session:
        assert len(everything) == len(list(await session.scalars(select(Insight.id))))
    first = everything[0]
    detail = await admin.insights.get(first.id)
    data = await admin.insights.data(first.id)
    assert isinstance(detail, models.InsightDetail) and detail.id == first.id
    assert (data.insight_id, data.kind, data.data) == (first.id, first.kind, detail.data)
    of_kind = await collect(admin.insights.list(kind=first.kind))
    of_meeting = await collect(admin.insights.list(meeting_id=first.meeting_id))
    assert of_kind and all(i.kind == first.kind for i in of_kind)
    assert first.id in {i.id for i in of_meeting} and all(i.meeting_id == first.meeting_id for i in of_meeting)


async def test_keys_are_created_listed_rotated_and_revoked(admin, connect, demo_keys):
    created = await admin.keys.create(name="warehouse sync", kind="agent", scopes=["api"])
    assert created.token.startswith(created.prefix) and created.scopes == ["api"] and created.owner == ADMIN
    fresh = connect(created.token)
    assert (await fresh.meetings.list_page(per_page=1)).data
    rotated = await admin.keys.rotate(created.id, grace_seconds=0)
    assert rotated.id != created.id and rotated.name == "warehouse sync"
    listed = {k.id: k for k in await admin.keys.list()}
    assert listed[created.id].revoked_at is not None and listed[rotated.id].revoked_at is None
    assert all(isinstance(k, models.ApiKey) and not hasattr(k, "token") for k in listed.values())
    await admin.keys.revoke(rotated.id)
    with pytest.raises(Unauthorized):
        await connect(rotated.token).meetings.get("anything")
    with pytest.raises(NotFound):
        await admin.keys.revoke(rotated.id)
    with pytest.raises(Forbidden) as refused:
        await connect(demo_keys.keys[ALICE]).keys.list()
    assert refused.value.status == 403 and refused.value.code == "forbidden"


async def test_a_person_marks_their_own_agent_key_person_facing(admin, connect, demo_keys):
    desktop = await admin.keys.create(name="desktop", person_facing=True)
    assert desktop.person_facing is True
    plain = await admin.keys.create(name="script")
    assert plain.person_facing is False
    changed = await admin.keys.change(plain.id, person_facing=True)
    assert changed.person_facing is True and changed.id == plain.id
    with pytest.raises(Forbidden):
        await connect(desktop.token).keys.change(desktop.id, person_facing=False)


# --- Errors and rate limits ---


async def test_errors_are_typed_from_the_error_body(admin, connect, companion):
    with pytest.raises(NotFound) as missing:
        await admin.meetings.get("mtg_nope")
    error = missing.value
    assert (error.status, error.code, error.message, error.details) == (404, "not_found", "Meeting not found", {})
    async with companion.db.session() as session:
        waiting = await session.scalar(select(Meeting.id).where(Meeting.status == MeetingStatus.PROCESSING))
    with pytest.raises(NotFound) as no_summary:
        await admin.meetings.get_summary(waiting)
    assert no_summary.value.details == {"status": "processing"}
    with pytest.raises(InvalidRequest) as too_many:
        await admin.meetings.list_page(per_page=101)
    assert too_many.value.status == 422 and too_many.value.code == "invalid_request"
    assert set(too_many.value.fields) == {"per_page"}
    with pytest.raises(InvalidRequest) as bad_filters:
        await collect(admin.meetings.list(status="lost", date_from="last week"))
    assert set(bad_filters.value.fields) == {"status", "date_from"}
    with pytest.raises(Unauthorized) as anonymous:
        await connect("hck_not_a_key").meetings.list_page()
    assert anonymous.value.status == 401 and anonymous.value.code == "unauthorized"
    assert all(isinstance(e.value, HarmonyError) for e in (missing, too_many, anonymous))


async def test_rate_limit_headers_are_on_the_client_after_each_call(admin):
    assert admin.rate_limit is None
    await admin.meetings.list_page(per_page=1)
    first = admin.rate_limit
    await admin.meetings.list_page(per_page=1)
    assert first is not None and first.limit == 300, "the demo workspace is on Max"
    assert admin.rate_limit is not None and admin.rate_limit.remaining < first.remaining
    assert first.reset.tzinfo is not None and 0 < (first.reset - datetime.now(UTC)).total_seconds() <= 60


async def test_past_the_plans_limit_the_answer_is_rate_limited_with_retry_after(connect, companion, demo_keys):
    async with companion.db.transaction() as session:
        await session.execute(update(Workspace).values(plan=Plan.SOLO))
    harmony = connect(demo_keys.keys[ALICE], max_retries=0)
    left = 60 - time.time() % 60
    if left < 5:  # 21 requests must fall in one minute window
        await asyncio.sleep(left + 0.05)
    for _ in range(20):
        await harmony.meetings.list_page(per_page=1)
    with pytest.raises(RateLimited) as limited:
        await harmony.meetings.list_page(per_page=1)
    error = limited.value
    assert error.status == 429 and error.code == "rate_limited" and error.details["limit"] == 20
    assert error.retry_after is not None and 1 <= error.retry_after <= 60
    assert harmony.rate_limit is not None and (harmony.rate_limit.limit, harmony.rate_limit.remaining) == (20, 0)


# --- Retry timing: the only tests on a mock transport ---

PAGE = {"data": [], "pagination": {"page": 1, "per_page": 20, "total": 0, "has_more": False, "next_cursor": None}}
KEY = {
    "id": "key_1", "prefix": "hck_abc", "name": "", "kind": "agent", "scopes": ["api"], "person_facing": False,
    "owner": ADMIN,
    "created_at": "2026-02-01T10:00:00Z", "last_used_at": None, "revoked_at": None, "token": "hck_abc123",
}  # fmt: skip
LIMITED = {"error": {"code": "rate_limited", "message": "Slow down", "details": {"limit": 20}}}
BROKEN = {"error": {"code": "server_error", "message": "Something went wrong on our side.", "details": {}}}


def scripted(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering ``answers`` in order (the last one for ever after), recording the requests."""
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers[min(len(sent), len(answers)) - 1]

    return httpx.MockTransport(answer), sent


def counted(body: dict[str, Any]) -> httpx.Response:
    """A 200 with rate-limit headers: 59 of 60 left until 1770000000."""
    budget = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "59", "X-RateLimit-Reset": "1770000000"}
    return httpx.Response(200, json=body, headers=budget)


def limited(retry_after: str | None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(429, json=LIMITED, headers=headers)


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(_http, "sleep", waits.append)

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(_http, "asleep", asleep)
    return waits


@pytest.mark.parametrize(
    ("answers", "call", "max_retries", "waits", "outcome"),
    [
        pytest.param([limited("2"), counted(PAGE)], "get", 3, [2.0], "ok", id="429-then-200-waits-retry-after"),
        pytest.param([limited("1")], "get", 3, [1.0, 1.0, 1.0], RateLimited, id="bounded-by-max-retries"),
        pytest.param([limited(None)], "get", 3, [1.0, 2.0, 4.0], RateLimited, id="backoff-without-retry-after"),
        pytest.param([limited("120")], "get", 3, [], RateLimited, id="a-wait-over-a-minute-is-not-slept"),
        pytest.param([limited("5")], "get", 0, [], RateLimited, id="max-retries-0-retries-nothing"),
        pytest.param(
            [httpx.Response(500, json=BROKEN), httpx.Response(200, json=PAGE)], "get", 3, [1.0], "ok",
            id="get-retried-after-500",
        ),
        pytest.param([httpx.Response(503, text="<html>")], "post", 3, [], ServerError, id="post-never-after-5xx"),
        pytest.param([limited("3"), httpx.Response(201, json=KEY)], "post", 3, [3.0], "ok", id="post-after-429"),
    ],
)  # fmt: skip
def test_retry_timing(slept, answers, call, max_retries, waits, outcome):
    transport, sent = scripted(*answers)
    with Harmony(api_key="hck_test", base_url=BASE, transport=transport, max_retries=max_retries) as harmony:
        run = (lambda: harmony.meetings.list_page()) if call == "get" else (lambda: harmony.keys.create())
        if outcome == "ok":
            run()
        else:
            with pytest.raises(outcome):
                run()
    assert slept == waits and len(sent) == len(waits) + 1
    if answers[-1].headers.get("X-RateLimit-Limit"):
        assert harmony.rate_limit == models.RateLimit(60, 59, datetime.fromtimestamp(1770000000, UTC))


async def test_retry_timing_async_and_the_error_keeps_retry_after(slept):
    transport, sent = scripted(limited("2"), limited("7"))
    async with AsyncHarmony(api_key="hck_test", base_url=BASE, transport=transport, max_retries=1) as harmony:
        with pytest.raises(RateLimited) as error:
            await harmony.meetings.get("mtg_1")
    assert slept == [2.0] and len(sent) == 2 and error.value.retry_after == 7.0
    assert error.value.message == "Slow down" and error.value.details == {"limit": 20}


def test_an_upload_retried_after_429_sends_the_whole_files_again(slept, tmp_path):
    accepted = {
        "id": "mtg_1", "status": "uploaded", "title": "Call", "date": "2026-02-01T10:00:00Z", "team_id": None,
        "file": {"filename": "call.mp3", "content_type": "audio/mpeg", "size": 3, "sha256": "x"},
        "transcript": None, "status_url": f"{BASE}/meetings/mtg_1/status",
    }  # fmt: skip
    transport, sent = scripted(limited("1"), httpx.Response(202, json=accepted))
    (tmp_path / "call.mp3").write_bytes(AUDIO)
    with Harmony(api_key="hck_test", base_url=BASE, transport=transport) as harmony:
        answer = harmony.meetings.upload(
            tmp_path / "call.mp3", title="Call", date="2026-02-01T10:00:00Z", transcript=io.BytesIO(VTT)
        )
        with pytest.raises(ValueError, match="seekable"):
            harmony.meetings.upload(Unseekable(VTT), title="Call", date="2026-02-01T10:00:00Z")
    assert answer.id == "mtg_1" and slept == [1.0] and len(sent) == 2
    for body in (request.read() for request in sent):
        assert body.count(AUDIO) == body.count(VTT) == 1
        assert b'name="title"\r\n\r\nCall' in body and b'filename="call.mp3"' in body


class Unseekable(io.BytesIO):
    def seekable(self) -> bool:
        return False


# --- Uploads ---


async def test_an_upload_over_a_real_socket_is_accepted_and_its_status_readable(sync_client, tmp_path):
    (tmp_path / "call.mp3").write_bytes(AUDIO)

    def upload() -> tuple[models.UploadAccepted, models.ProcessingStatus, models.MeetingDetail]:
        with sync_client() as harmony:
            accepted = harmony.meetings.upload(
                tmp_path / "call.mp3", title="Customer Call", date=datetime(2026, 2, 1, 10, tzinfo=UTC),
                transcript=("call.vtt", VTT),
            )  # fmt: skip
            return accepted, harmony.meetings.status(accepted.id), harmony.meetings.get(accepted.id)

    accepted, status, meeting = await in_thread(upload)
    assert accepted.status is models.MeetingStatus.UPLOADED and accepted.title == meeting.title == "Customer Call"
    assert accepted.date == datetime(2026, 2, 1, 10, tzinfo=UTC) and accepted.status_url.endswith("/status")
    assert accepted.file.sha256 == hashlib.sha256(AUDIO).hexdigest() and accepted.file.content_type == "audio/mpeg"
    assert accepted.transcript is not None and accepted.transcript.content_type == "text/vtt"
    assert status.meeting_id == accepted.id and isinstance(status.status, models.MeetingStatus)
    assert status.job is not None and isinstance(status.job.state, models.JobState) and status.job.max_attempts >= 1


async def test_an_upload_with_bad_fields_is_invalid_request_naming_them(admin):
    with pytest.raises(InvalidRequest) as invalid:
        await admin.meetings.upload(("call.vtt", VTT), title="Call", date=datetime(2026, 2, 1, 10))
    assert set(invalid.value.fields) == {"date"}, "a date without a time zone is refused"


# --- Webhook verification ---


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    """Headers for ``body`` signed with the documented scheme, built here independently of the SDK."""
    timestamp = str(int(time.time() if at is None else at))
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Harmony-Timestamp": timestamp, "X-Harmony-Signature": f"v1={digest}"}


def test_verify_accepts_what_the_server_signs_and_agrees_with_the_documented_snippet():
    event = {"event": "meeting.processed", "timestamp": "2026-02-01T15:30:00Z", "data": {"title": "Café ✓"}}
    body = json.dumps(event, ensure_ascii=False)
    headers = signing.headers(SECRET, delivery_id="whd_1", event="meeting.processed", timestamp=int(time.time()),
                              body=body)  # fmt: skip
    documented = load_snippet()
    assert webhooks.verify(SECRET, headers, body.encode()) == json.loads(body)
    assert webhooks.verify(SECRET, {k.lower(): v for k, v in headers.items()}, body) == json.loads(body)
    assert documented.verify_webhook(SECRET, httpx.Headers(headers), body.encode()) == json.loads(body)
    stale = {**headers, **signed(body.encode(), at=time.time() - 301)}
    for bad_headers, bad_body in ((headers, body.encode() + b" "), (stale, body.encode())):
        with pytest.raises(SignatureError):
            webhooks.verify(SECRET, bad_headers, bad_body)
        with pytest.raises(documented.InvalidWebhook):
            documented.verify_webhook(SECRET, httpx.Headers(bad_headers), bad_body)


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        (lambda: {}, "missing or malformed X-Harmony-Timestamp"),
        (lambda: {"X-Harmony-Timestamp": "soon", "X-Harmony-Signature": "v1=00"}, "malformed"),
        (lambda: {"X-Harmony-Timestamp": str(int(time.time()))}, "missing X-Harmony-Signature"),
        (lambda: signed(b"{}", at=time.time() + 400), "too long ago [(]or ahead[)]"),
        (lambda: signed(b"{}", secret="whsec_other"), "signature mismatch"),
        (
            lambda: {**signed(b"{}"), "X-Harmony-Signature": "v0=" + signed(b"{}")["X-Harmony-Signature"][3:]},
            "mismatch",
        ),
    ],
)
def test_verify_refuses(headers, problem):
    """Headers are built when the test runs: a timestamp made at collection could be stale by then."""
    with pytest.raises(SignatureError, match=problem):
        webhooks.verify(SECRET, headers(), b"{}")


def test_tolerance_is_the_callers_choice():
    old = signed(b"{}", at=time.time() - 600)
    assert webhooks.verify(SECRET, old, b"{}", tolerance=900) == {}
    assert webhooks.sign(SECRET, old["X-Harmony-Timestamp"], "{}") == old["X-Harmony-Signature"]


# --- Approvals, rules and integrations: what a person decides, with their user key ---


async def waiting_call(app: Any, agent_key: str, text: str) -> str:
    """An assistant's call that needs a person's approval; the id of its approval."""
    async with mcp_client(BASE.removesuffix("/api/v1"), agent_key, transport=httpx2.ASGITransport(app=app)) as mcp:
        result = await mcp.call_tool("harmony_create_action_item", {"meeting_id": "mtg_missing", "text": text})
    assert result.structured_content and result.structured_content["status"] == "approval_required"
    return str(result.structured_content["approval_id"])


async def test_a_script_approves_and_denies_what_an_assistant_asked(app, connect, demo_keys):
    alice = connect(demo_keys.user_keys[ALICE])
    to_approve = await waiting_call(app, demo_keys.keys[ALICE], "send the deck to Carol")
    to_deny = await waiting_call(app, demo_keys.keys[ALICE], "fire Bob")
    pending = {a.id: a for a in await alice.approvals.list()}
    assert set(pending) == {to_approve, to_deny}
    shown = pending[to_deny]
    assert shown.status is models.ApprovalStatus.PENDING and shown.tool == "harmony_create_action_item"
    assert shown.arguments["text"] == "fire Bob" and "fire Bob" in shown.full_arguments
    assert shown.expires_at > shown.created_at and shown.approve_url.endswith(to_deny)
    approved = await alice.approvals.approve(to_approve)
    assert approved.status is models.ApprovalStatus.APPROVED and approved.decided_via == "api"
    denied = await alice.approvals.deny(to_deny, reason="not through the assistant")
    assert (denied.status, denied.reason) == (models.ApprovalStatus.DENIED, "not through the assistant")
    assert (await alice.approvals.get(to_deny)).decided_by == denied.decided_by
    assert await alice.approvals.list() == []
    assert {a.id for a in await alice.approvals.list(status=None)} == {to_approve, to_deny}
    with pytest.raises(HarmonyError) as again:
        await alice.approvals.approve(to_deny)
    assert (again.value.status, again.value.code) == (409, "conflict")
    assert again.value.message == f"Approval {to_deny} is already denied"
    with pytest.raises(NotFound):
        await connect(demo_keys.user_keys[ADMIN]).approvals.get(to_approve)  # Alice's own, not a shared one
    with pytest.raises(Forbidden):
        await connect(demo_keys.keys[ALICE]).approvals.approve(to_approve)  # never the assistant's own key


async def test_a_request_is_withdrawn_and_the_sync_client_decides_over_a_socket(live_server, demo_keys):
    async with mcp_client(live_server, demo_keys.keys[ADMIN]) as mcp:
        waiting = await mcp.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": "call Dan"})
        withdrawn = await mcp.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": "call Eve"})
    ids = [str(r.structured_content["approval_id"]) for r in (waiting, withdrawn)]

    def decide() -> tuple[models.Approval, models.Approval]:
        with Harmony(api_key=demo_keys.user_keys[ADMIN], base_url=f"{live_server}/api/v1") as harmony:
            return harmony.approvals.approve(ids[0], remember="1h"), harmony.approvals.cancel(ids[1])

    approved, cancelled = await in_thread(decide)
    assert approved.status is models.ApprovalStatus.APPROVED and approved.remember_rule_id
    assert cancelled.status is models.ApprovalStatus.CANCELLED


async def test_a_script_manages_rules_and_asks_what_they_would_decide(app, admin, connect, demo_keys, companion):
    rule = await admin.rules.create(
        effect="deny", scope="workspace", tool="harmony_create_action_item",
        conditions=[models.Condition(arg="text", op="contains", value="fire")],
        context={"hours": {"from": "00:00", "to": "23:59"}}, description="No firing through the assistant",
    )  # fmt: skip
    assert rule.id and rule.effect is models.Effect.DENY and rule.conditions[0].value == "fire"
    assert rule.context.hours is not None and rule.context.hours.end.hour == 23
    assert [r.id for r in await admin.rules.list()] == [rule.id]
    changed = await admin.rules.update(rule.id, description="No firing", app="harmony")
    assert (changed.description, changed.app, changed.conditions) == ("No firing", "harmony", rule.conditions)
    assert (await admin.rules.update(rule.id, app=None)).app is None, "None clears what may be empty"
    assert await admin.rules.get(rule.id) == await admin.rules.update(rule.id)

    explained = await admin.rules.explain("harmony_create_action_item", {"text": "fire Bob"}, user=ALICE)
    assert explained.effect is models.Effect.DENY and [r.id for r in explained.rules] == [rule.id]
    harmless = await admin.rules.explain("harmony_create_action_item", {"text": "hire Bob"})
    assert harmless.effect is models.Effect.ASK and harmless.rules == [] and harmless.reasons
    with pytest.raises(HarmonyError) as bad_arguments:
        await admin.rules.explain("harmony_create_action_item", {"text": 7})
    assert (bad_arguments.value.status, bad_arguments.value.code) == (400, "invalid_arguments")
    assert set(bad_arguments.value.details["fields"]) == {"arguments.text"}

    alice = connect(demo_keys.user_keys[ALICE])
    await waiting_call(app, demo_keys.keys[ALICE], "email Carol")
    await companion.audit.flush()  # call rows are queued; a replay reads what is written
    allow = {"effect": "allow", "scope": "user", "tool": "harmony_create_action_item"}
    simulated = await alice.rules.simulate(add=[allow], since=datetime.now(UTC) - timedelta(hours=1))
    assert simulated.replayed == 1 and simulated.counts == {"ask->allow": 1}
    call = simulated.calls[0]
    assert (call.before, call.after) == (models.Effect.ASK, models.Effect.ALLOW) and call.recorded == "ask"
    assert simulated.since < call.at < simulated.until
    # Alice's call is decided on its arguments by the admin's rule, so the admin's replay withholds it.
    withheld = await admin.rules.simulate(remove=[rule.id])
    assert (withheld.replayed, withheld.withheld) == (0, 1)

    with pytest.raises(InvalidRequest) as unknown_tool:
        await alice.rules.create(effect="allow", scope="user", tool="harmony_teleport")
    assert unknown_tool.value.fields == {"tool": "'harmony_teleport' matches no tool of any app"}
    with pytest.raises(Forbidden):
        await alice.rules.create(effect="allow", scope="workspace")
    with pytest.raises(NotFound):
        await alice.rules.get(rule.id)
    with pytest.raises(Forbidden):
        await connect(demo_keys.keys[ADMIN]).rules.list()
    await admin.rules.delete(rule.id)
    with pytest.raises(NotFound):
        await admin.rules.get(rule.id)


@dataclass
class LinearWorld:
    """A server whose Linear is a fake on loopback, with its OAuth client configured."""

    companion: Companion
    fake: LinearFake
    keys: DemoKeys
    transport: httpx.ASGITransport


@pytest.fixture
async def linear(settings, registry) -> AsyncIterator[LinearWorld]:
    fake = LinearFake()
    async with serve(fake) as origin:
        companion = Companion.build(provider_settings(settings, "linear", origin), registry=registry)
        async with companion.db.transaction() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
            keys = await demo.seed(session, companion.registry, companion.box, TEST_SECRET.encode())
        app = create_app(companion)
        try:
            async with app.router.lifespan_context(app):
                yield LinearWorld(companion, fake, keys, httpx.ASGITransport(app=app))
        finally:
            await companion.aclose()


async def test_a_script_connects_an_app_and_walks_its_life(linear):
    fake = linear.fake
    async with (
        AsyncHarmony(api_key=linear.keys.user_keys[ALICE], base_url=BASE, transport=linear.transport) as alice,
        AsyncHarmony(api_key=linear.keys.keys[ALICE], base_url=BASE, transport=linear.transport) as assistant,
    ):
        offered = {a.id: a for a in await alice.integrations.apps()}
        assert offered["linear"].methods == ["oauth2", "api_key"] and offered["linear"].oauth_configured is True
        assert "harmony" not in offered, "built in, not connected"

        connection = await alice.integrations.connect(
            "linear", method="api_key", scope="personal", label="Mine", setup={"api_key": fake.issue_key()}
        )
        assert isinstance(connection, models.Connection)
        assert (connection.status, connection.label, connection.has_credentials) == ("active", "Mine", True)
        assert "api_key" not in connection.setup, "a secret is never answered"
        assert [c.id for c in await alice.integrations.list()] == [connection.id]
        assert (await alice.integrations.test(connection.id)) == models.ConnectionTest(
            ok=True, code=None, message="Signed in to Linear as Alice"
        )
        fake.api_keys.clear()
        failing = await alice.integrations.test(connection.id)
        assert (failing.ok, failing.code, failing.failure) == (False, "needs_reauth", "credentials")
        rotated = await alice.integrations.update_credentials(connection.id, {"api_key": fake.issue_key()})
        assert rotated.id == connection.id and rotated.status == "active"

        mappings = await alice.integrations.mappings(connection.id)
        assert mappings.object == "users" and mappings.direction == "to_harmony"
        with pytest.raises(InvalidRequest) as one_way:
            await alice.integrations.set_mappings(connection.id, direction="bidirectional")
        assert set(one_way.value.fields) == {"direction"}
        assert (await alice.integrations.set_mappings(connection.id, auto_sync=True)).mappings["auto_sync"] is True

        run = await alice.integrations.sync(connection.id)
        assert run.status == "running" and run.connection_id == connection.id
        await linear.companion.sync.wait()
        [done] = await alice.integrations.sync_logs(connection.id)
        assert (done.id, done.status, done.counts["fetched"]) == (run.id, "succeeded", 3)
        started = await alice.integrations.connect("linear", scope="personal")
        assert isinstance(started, models.OAuthStart) and started.authorize_url.endswith(f"/{started.flow_id}/start")

        gone = await alice.integrations.disconnect(connection.id)
        assert gone.status == "disconnected" and gone.has_credentials is False
        await alice.integrations.delete(connection.id)
        with pytest.raises(NotFound):
            await alice.integrations.get(connection.id)
        with pytest.raises(Forbidden):
            await assistant.integrations.list()


# --- The seed's use cases, as the seed writes them ---


async def test_use_case_automated_reporting(sync_client, companion):
    today = datetime.now(UTC).date()
    week_ago = today - timedelta(days=7)

    def weekly_report() -> dict[str, list[str]]:
        report: dict[str, list[str]] = {}
        with sync_client() as harmony:
            # Get last week's meetings
            meetings = harmony.meetings.list(date_from=week_ago.isoformat(), date_to=today.isoformat())
            # Generate report
            for meeting in meetings:
                insights = harmony.meetings.get_insights(meeting.id)
                # Process and report
                report[meeting.id] = [insight.title for insight in insights]
        return report

    report = await in_thread(weekly_report)
    async with companion.db.session() as session:
        meetings = list(await session.scalars(select(Meeting)))
        with_insights = set(await session.scalars(select(Insight.meeting_id)))
    last_week = {m.id for m in meetings if week_ago <= m.date.date() <= today}
    assert set(report) == last_week and last_week
    assert all(bool(report[m]) == (m in with_insights) for m in report)


async def test_use_case_data_warehouse_sync(sync_client):
    class Warehouse:
        """Stands in for the warehouse: rows in a list."""

        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []

        def insert(self, table: str, meeting: models.Meeting, transcript: models.Transcript) -> None:
            lines = [line.model_dump() for line in transcript.transcript]
            self.rows.append({"table": table, **meeting.model_dump(mode="json"), "transcript": lines})

    warehouse = Warehouse()

    def export() -> None:
        with sync_client() as harmony:
            # Export all meetings to data warehouse
            meetings = harmony.meetings.list()
            for meeting in meetings:
                transcript = harmony.meetings.get_transcript(meeting.id)
                warehouse.insert("meetings", meeting, transcript)

    await in_thread(export)
    assert len(warehouse.rows) == 24 and len({row["id"] for row in warehouse.rows}) == 24
    assert all(row["table"] == "meetings" for row in warehouse.rows)
    assert all(len(row["transcript"]) == (12 if row["status"] == "processed" else 0) for row in warehouse.rows)


async def test_use_case_custom_notifications():
    """The seed's Flask handler on Starlette, checking each delivery with harmony_client.webhooks.verify."""
    slack: list[dict[str, Any]] = []

    def send_slack_notification(data: dict[str, Any]) -> None:
        slack.append(data)

    # Webhook handler
    async def handle_webhook(request: Request) -> PlainTextResponse:
        try:
            event = webhooks.verify(SECRET, request.headers, await request.body())
        except SignatureError:
            return PlainTextResponse("invalid signature", status_code=400)
        if event["event"] == "meeting.processed":
            send_slack_notification(event["data"])
        return PlainTextResponse("OK")

    app = Starlette(routes=[Route("/webhook", handle_webhook, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    processed = {"meeting_id": "mtg_abc123", "title": "Sales Call", "duration": 1800}
    body = json.dumps({"event": "meeting.processed", "timestamp": "2026-02-01T15:30:00Z", "data": processed}).encode()
    started = json.dumps({"event": "meeting.started", "timestamp": "2026-02-01T15:00:00Z", "data": {}}).encode()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            answers = [
                await http.post("/webhook", content=body, headers=signed(body)),
                await http.post("/webhook", content=started, headers=signed(started)),
                await http.post("/webhook", content=body.replace(b"1800", b"9999"), headers=signed(body)),
                await http.post("/webhook", content=body, headers=signed(body, at=time.time() - 3600)),
                await http.post("/webhook", content=body, headers=signed(body, secret="whsec_guessed")),
            ]
    finally:
        server.should_exit = True
        await task
    assert [(a.status_code, a.text) for a in answers[:2]] == [(200, "OK"), (200, "OK")]
    assert [a.status_code for a in answers[2:]] == [400, 400, 400], "tampered, replayed, forged"
    assert slack == [processed]

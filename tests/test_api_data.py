"""The REST API's data endpoints, as Harmony's API page describes them: meetings, contacts, insights.

Each promise once: the seed's response shapes, filters, both kinds of pagination and their limits,
the error format, sharing rules inside a workspace, and 404 (never 403) across workspaces.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import select

from server.app import create_app
from store.directory import add_member, create_workspace, workspace_by_slug
from store.keys import create_key
from store.models import Contact, Insight, KeyKind, Meeting, MeetingContact, MeetingStatus, Role, Team

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


@pytest.fixture
async def api(companion, demo_keys) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    app = create_app(companion)
    async with app.router.lifespan_context(app):
        clients: list[httpx.AsyncClient] = []

        def as_key(key: str) -> httpx.AsyncClient:
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=f"{BASE}/api/v1",
                headers={"Authorization": f"Bearer {key}"},
            )  # fmt: skip
            clients.append(client)
            return client

        yield as_key
        for client in clients:
            await client.aclose()


@pytest.fixture
def admin(api, demo_keys) -> httpx.AsyncClient:
    return api(demo_keys.user_keys["admin@acme.test"])


@pytest.fixture
def alice(api, demo_keys) -> httpx.AsyncClient:
    return api(demo_keys.keys["alice@acme.test"])


async def ids(client: httpx.AsyncClient, path: str, **params) -> list[str]:
    answer = await client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["data"]]


async def test_list_meetings_answers_in_the_seeds_shape(admin):
    answer = await admin.get("/meetings")
    body = answer.json()
    assert answer.status_code == 200
    assert set(body) == {"data", "pagination"}
    assert body["pagination"]["page"] == 1 and body["pagination"]["per_page"] == 20
    assert body["pagination"]["total"] == 24 and body["pagination"]["has_more"] is True
    first = body["data"][0]
    assert {"id", "title", "date", "duration", "status"} <= set(first)
    dates = [m["date"] for m in body["data"]]
    assert dates == sorted(dates, reverse=True)


async def test_per_page_is_capped_at_100_and_errors_name_the_field(admin):
    too_many = await admin.get("/meetings", params={"per_page": 101})
    assert too_many.status_code == 422
    error = too_many.json()["error"]
    assert error["code"] == "invalid_request" and "per_page" in error["details"]["fields"]
    bad_status = await admin.get("/meetings", params={"status": "lost"})
    assert "status" in bad_status.json()["error"]["details"]["fields"]
    both = await admin.get("/meetings", params={"page": 2, "cursor": "abc"})
    assert both.status_code == 422


async def test_pages_and_cursors_walk_the_same_meetings_without_gaps(admin):
    by_page = [*await ids(admin, "/meetings", per_page=10), *await ids(admin, "/meetings", per_page=10, page=2)]
    by_page += await ids(admin, "/meetings", per_page=10, page=3)
    walked: list[str] = []
    cursor = None
    while True:
        params = {"per_page": 7, **({"cursor": cursor} if cursor else {})}
        body = (await admin.get("/meetings", params=params)).json()
        walked += [m["id"] for m in body["data"]]
        assert body["pagination"]["total"] is None if cursor else body["pagination"]["total"] == 24
        cursor = body["pagination"]["next_cursor"]
        if cursor is None:
            break
    assert walked == by_page and len(set(walked)) == 24
    assert (await admin.get("/meetings", params={"cursor": "not-ours"})).status_code == 422


async def test_a_cursor_stays_correct_while_meetings_are_added(admin, companion):
    first = (await admin.get("/meetings", params={"per_page": 5})).json()
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        session.add(Meeting(workspace_id=workspace.id, title="Brand new", date=datetime.now(UTC)))
    rest = await ids(admin, "/meetings", per_page=100, cursor=first["pagination"]["next_cursor"])
    assert not set(rest) & {m["id"] for m in first["data"]} and len(rest) == 19


async def test_filters_combine(admin, companion):
    processed = (await admin.get("/meetings", params={"status": "processed", "per_page": 100})).json()
    assert processed["data"] and all(m["status"] == "processed" for m in processed["data"])
    some = processed["data"][3]
    day = some["date"][:10]
    same_day = await ids(admin, "/meetings", date_from=day, date_to=day, per_page=100)
    assert some["id"] in same_day
    async with companion.db.session() as session:
        product = await session.scalar(select(Team.id).where(Team.name == "Product"))
    of_team = (await admin.get("/meetings", params={"team_id": product, "per_page": 100})).json()["data"]
    assert of_team and all(m["team_id"] == product for m in of_team)
    owner = of_team[0]["owner_id"]
    assert all(m["owner_id"] == owner for m in (await admin.get("/meetings", params={"user_id": owner})).json()["data"])


async def test_members_see_their_teams_meetings_and_their_own(alice, admin, companion):
    everything = set(await ids(admin, "/meetings", per_page=100))
    mine = set(await ids(alice, "/meetings", per_page=100))
    async with companion.db.session() as session:
        sales = await session.scalar(select(Team.id).where(Team.name == "Sales"))
        visible = set(await session.scalars(select(Meeting.id).where(Meeting.team_id == sales)))
    assert mine == visible and mine < everything
    hidden = sorted(everything - mine)[0]
    answer = await alice.get(f"/meetings/{hidden}")
    assert answer.status_code == 404 and answer.json() == {
        "error": {"code": "not_found", "message": "Meeting not found", "details": {}}
    }


async def test_a_meeting_its_transcript_summary_and_insights(admin, companion):
    async with companion.db.session() as session:
        meeting = await session.scalar(select(Meeting).where(Meeting.status == MeetingStatus.PROCESSED).limit(1))
    detail = (await admin.get(f"/meetings/{meeting.id}")).json()
    assert detail["id"] == meeting.id and detail["has_summary"] is True and detail["transcript_segments"] == 12
    transcript = (await admin.get(f"/meetings/{meeting.id}/transcript")).json()
    assert transcript["meeting_id"] == meeting.id
    assert transcript["transcript"][0]["text"].startswith("Thanks for joining today.")
    assert transcript["transcript"][0]["timestamp"] == "00:00:05"
    summary = (await admin.get(f"/meetings/{meeting.id}/summary")).json()
    assert summary["meeting_id"] == meeting.id and summary["summary"]
    insights = (await admin.get(f"/meetings/{meeting.id}/insights")).json()
    assert all(i["meeting_id"] == meeting.id for i in insights["data"])


async def test_a_meeting_without_a_summary_says_its_status(admin, companion):
    async with companion.db.session() as session:
        waiting = await session.scalar(select(Meeting.id).where(Meeting.status == MeetingStatus.PROCESSING).limit(1))
    answer = await admin.get(f"/meetings/{waiting}/summary")
    assert answer.status_code == 404 and answer.json()["error"]["details"] == {"status": "processing"}


async def test_contacts_and_their_meetings(admin, companion):
    contacts = (await admin.get("/contacts", params={"per_page": 100})).json()["data"]
    names = [c["name"] for c in contacts]
    assert names == sorted(names)
    carol = next(c for c in contacts if c["email"] == "carol@globex.example")
    assert (await admin.get(f"/contacts/{carol['id']}")).json() == carol
    found = await ids(admin, "/contacts", query="GLOBEX")
    assert carol["id"] in found
    met = await ids(admin, f"/contacts/{carol['id']}/meetings", per_page=100)
    async with companion.db.session() as session:
        expected = set(
            await session.scalars(select(MeetingContact.meeting_id).where(MeetingContact.contact_id == carol["id"]))
        )
    assert set(met) == expected


async def test_insights_with_their_data(admin):
    listed = (await admin.get("/insights", params={"per_page": 100})).json()
    assert listed["data"], "the demo data has insights"
    first = listed["data"][0]
    detail = (await admin.get(f"/insights/{first['id']}")).json()
    data = (await admin.get(f"/insights/{first['id']}/data")).json()
    assert detail["id"] == first["id"] and data == {
        "insight_id": first["id"],
        "kind": first["kind"],
        "data": detail["data"],
    }
    of_kind = (await admin.get("/insights", params={"kind": first["kind"], "per_page": 100})).json()["data"]
    assert of_kind and all(i["kind"] == first["kind"] for i in of_kind)


async def test_another_workspace_is_invisible_not_forbidden(api, admin, companion):
    async with companion.db.transaction() as session:
        other = await create_workspace(session, slug="initech", name="Initech")
        peter, _ = await add_member(session, other, email="peter@initech.test", role=Role.ADMIN)
        meeting = Meeting(workspace_id=other.id, title="Initech only", date=datetime.now(UTC), owner_id=peter.id)
        contact = Contact(workspace_id=other.id, name="Milton", email="milton@initech.test")
        session.add_all([meeting, contact])
        await session.flush()
        insight = Insight(workspace_id=other.id, meeting_id=meeting.id, kind="risk", title="Stapler")
        session.add(insight)
        await session.flush()
        peters_key = await create_key(session, workspace_id=other.id, user_id=peter.id, kind=KeyKind.USER)
    for path in (
        f"/meetings/{meeting.id}", f"/meetings/{meeting.id}/transcript", f"/meetings/{meeting.id}/summary",
        f"/meetings/{meeting.id}/insights", f"/contacts/{contact.id}", f"/contacts/{contact.id}/meetings",
        f"/insights/{insight.id}", f"/insights/{insight.id}/data",
    ):  # fmt: skip
        answer = await admin.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"
    assert meeting.id not in await ids(admin, "/meetings", per_page=100)
    assert await ids(api(peters_key.token), "/meetings") == [meeting.id]


async def test_without_a_valid_key_the_answer_is_401_in_the_error_format(api):
    anonymous = api("hck_not_a_key")
    answer = await anonymous.get("/meetings")
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized"


async def test_the_openapi_document_describes_every_data_endpoint(admin):
    document = (await admin.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    for path in (
        "/meetings",
        "/meetings/{id}",
        "/meetings/{id}/transcript",
        "/contacts/{id}/meetings",
        "/insights/{id}/data",
    ):
        assert "get" in document["paths"][path], path
    listing = document["paths"]["/meetings"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {
        "page",
        "per_page",
        "cursor",
        "date_from",
        "status",
        "team_id",
    }
    page_schema = listing["responses"]["200"]["content"]["application/json"]["schema"]
    components = {"components": document["components"]}
    answer = (await admin.get("/meetings")).json()
    Draft202012Validator({**page_schema, **components}).validate(answer)


async def test_a_nul_character_is_refused_before_it_reaches_the_database(admin):
    for path in ("/meetings/a%00b", "/meetings?team_id=a%00b", "/integrations/x%00"):
        answer = await admin.get(path)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_request", path

"""The audit log page: admins read the whole workspace's log, members their own; filters, pages, CSV, and the chain.

The entries come from real tool calls over MCP; tampering is done the way an
attacker with database access would do it, by changing a row in place.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import httpx2
import pytest
from mcp.shared.exceptions import MCPError
from sqlalchemy import select, text

from server.web import audit
from store.models import AuditEntry, User, utcnow
from tests.conftest import mcp_client

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
SECRET_TEXT = "Quote Carol 12% off, code PINEAPPLE"


def shown_ids(page: str) -> list[int]:
    return [int(found) for found in re.findall(r'<tr id="entry-(\d+)"', page)]


async def ids_where(companion, *conditions) -> list[int]:
    async with companion.db.session() as session:
        return list(await session.scalars(select(AuditEntry.id).where(*conditions).order_by(AuditEntry.id.desc())))


async def user_id(companion, email: str) -> str:
    async with companion.db.session() as session:
        return await session.scalar(select(User.id).where(User.email == email))


@pytest.fixture
async def calls(app_client, demo_keys, companion):
    """Alice asks to create two action items and lists meetings; the admin lists meetings too."""
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=app_client.transport) as client:
        await client.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": SECRET_TEXT})
        await client.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": "Book the room"})
        await client.call_tool("harmony_list_meetings", {"limit": 1})
    async with mcp_client(BASE, demo_keys.keys["admin@acme.test"], transport=app_client.transport) as client:
        await client.call_tool("harmony_list_meetings", {"limit": 2})
    await companion.audit.flush()  # call rows are queued; the page shows what has been written


async def test_an_admin_reads_the_whole_workspace_newest_first(admin, calls, companion):
    page = await admin.get("/audit")
    assert page.status_code == 200
    assert shown_ids(page.text) == await ids_where(companion)
    assert "Alice Archer" in page.text and "Ada Admin" in page.text
    assert "Approval requested" in page.text and "Tool call" in page.text


async def test_a_member_reads_only_her_own_entries_and_is_told_so(alice, calls, companion):
    hers = await ids_where(companion, AuditEntry.user_id == await user_id(companion, "alice@acme.test"))
    page = await alice.get("/audit")
    assert shown_ids(page.text) == hers and len(hers) < len(await ids_where(companion))
    assert "You see only the entries about you; admins see the whole workspace." in page.text
    assert 'name="user"' not in page.text  # no one else to pick
    someone_else = await alice.get(f"/audit?user={await user_id(companion, 'admin@acme.test')}")
    assert shown_ids(someone_else.text) == hers


async def test_filters_narrow_the_log_and_stay_in_the_links(admin, calls, companion):
    listing = await admin.get("/audit?tool=harmony_list_meetings")
    assert shown_ids(listing.text) == await ids_where(companion, AuditEntry.tool == "harmony_list_meetings")
    asks = await admin.get("/audit?decision=ask&kind=call")
    wanted = await ids_where(companion, AuditEntry.decision == "ask", AuditEntry.event == "call")
    assert shown_ids(asks.text) == wanted and len(wanted) == 2
    alices = await user_id(companion, "alice@acme.test")
    theirs = await admin.get(f"/audit?user={alices}&kind=approval")
    assert shown_ids(theirs.text) == await ids_where(
        companion, AuditEntry.user_id == alices, AuditEntry.event.startswith("approval.")
    )
    today, tomorrow = utcnow().date(), utcnow().date() + timedelta(days=1)
    assert shown_ids((await admin.get(f"/audit?from={today}&to={today}")).text) == await ids_where(companion)
    later = await admin.get(f"/audit?from={tomorrow}")
    assert shown_ids(later.text) == [] and "No entries match these filters" in later.text
    assert f'href="/audit.csv?from={tomorrow}"' in later.text  # the export takes the same filters
    backwards = await admin.get(f"/audit?from={tomorrow}&to={today}")
    assert backwards.status_code == 422 and 'id="f-to-error">must be on or after the first day<' in backwards.text


async def test_long_logs_are_read_a_page_at_a_time(admin, calls, companion, monkeypatch):
    monkeypatch.setattr(audit, "PAGE_SIZE", 3)
    every = await ids_where(companion)
    first = await admin.get("/audit")
    assert shown_ids(first.text) == every[:3] and "← Newer" not in first.text
    older = re.search(r'href="(/audit\?before=\d+)">Older', first.text).group(1)
    second = await admin.get(older)
    assert shown_ids(second.text) == every[3:6]
    newer = re.search(r'href="(/audit\?after=\d+)">← Newer', second.text).group(1)
    assert shown_ids((await admin.get(newer)).text) == every[:3]


async def test_the_csv_export_streams_the_filtered_entries_and_never_the_arguments(admin, alice, calls, companion):
    export = await admin.get("/audit.csv?tool=harmony_create_action_item")
    assert export.status_code == 200
    assert export.headers["content-type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(r'attachment; filename="audit-acme-\d{8}-\d{4}\.csv"', export.headers["content-disposition"])
    assert export.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert list(rows[0]) == list(audit.CSV_COLUMNS)
    assert [int(row["id"]) for row in rows] == await ids_where(
        companion, AuditEntry.tool == "harmony_create_action_item"
    )
    assert {row["user"] for row in rows} == {"alice@acme.test"}
    assert {row["event"] for row in rows} == {"call", "approval.requested"}
    assert "PINEAPPLE" not in export.text  # arguments stay sealed; only their digest is listed
    assert all(re.fullmatch(r"[0-9a-f]{64}", row["args_digest"]) for row in rows)
    hers = list(csv.DictReader(io.StringIO((await alice.get("/audit.csv")).text)))
    assert {row["user"] for row in hers} == {"alice@acme.test"}


async def test_a_cell_that_looks_like_a_formula_is_exported_as_text(admin, app_client, demo_keys, companion):
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=app_client.transport) as client:
        with pytest.raises(MCPError):
            await client.call_tool('=HYPERLINK("https://evil.example","open")', {})
    await companion.audit.flush()
    rows = list(csv.DictReader(io.StringIO((await admin.get("/audit.csv")).text)))
    assert [row["tool"] for row in rows] == ['\'=HYPERLINK("https://evil.example","open")']


async def test_the_chain_is_shown_intact_and_then_broken_where_a_row_was_changed(admin, alice, calls, companion):
    page = await admin.get("/audit")
    assert 'class="chain chain-ok"' in page.text and "Chain intact" in page.text
    alices = await user_id(companion, "alice@acme.test")
    (changed, *_) = await ids_where(companion, AuditEntry.user_id == alices, AuditEntry.decision == "ask")
    async with companion.db.transaction() as session:
        await session.execute(text("UPDATE audit_entries SET decision = 'allow' WHERE id = :id"), {"id": changed})
    broken = await admin.get("/audit")
    assert 'class="chain chain-broken" role="alert"' in broken.text
    assert f"Chain broken at entry #{changed}" in broken.text
    assert f"Entry {changed} was changed after it was written." in broken.text
    assert f'<tr id="entry-{changed}" class="tampered">' in broken.text
    assert f'href="/audit?before={changed + 1}#entry-{changed}"' in broken.text
    members_page = await alice.get("/audit")
    assert "Chain" not in members_page.text  # verifying the workspace's chain is the admins' check


async def test_the_page_asks_for_sign_in_first(app_client):
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        for path in ("/audit", "/audit.csv"):
            response = await browser.get(path)
            assert response.status_code == 303 and response.headers["location"] == f"/login?next={path}"

"""MCP sessions through the SDK's Client, in process, on both protocol eras.

Most tests go through the whole Starlette app (auth middleware included) over
httpx's ASGI transport; one talks to the bare MCP server object directly.
"""

from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import func, select

from approvals.digest import arguments_digest
from store.connections import add_connection
from store.directory import user_by_email
from store.models import ActionItem, AuditEntry, ConnectionScope, Meeting
from tests.apps import memo
from tests.conftest import HARMONY_TOOLS

pytestmark = pytest.mark.anyio

ERAS = ["legacy", "2026-07-28"]
ALICE = "alice@acme.test"
ADMIN = "admin@acme.test"


async def audit_rows(companion) -> list[AuditEntry]:
    await companion.audit.flush()
    async with companion.db.session() as session:
        return list(await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


async def give_bob_a_memo_connection(companion) -> str:
    async with companion.db.transaction() as session:
        bob = await user_by_email(session, "bob@acme.test")
        connection = await add_connection(
            session,
            companion.box,
            app="memo",
            scope=ConnectionScope.PERSONAL,
            workspace_id=None,
            user_id=bob.id,
            label="Bob's notes",
            credentials={"api_key": "memo-key-for-bob"},
        )
        return connection.id


@pytest.mark.parametrize("mode", ERAS)
async def test_tools_list_shows_titles_annotations_and_output_schemas(app_client, demo_keys, companion, mode):
    async with app_client(demo_keys.keys[ALICE], mode=mode) as client:
        listed = (await client.list_tools()).tools
    by_name = {tool.name: tool for tool in listed}
    assert set(by_name) == HARMONY_TOOLS | {"companion_get_approval"}
    read = by_name["harmony_get_transcript"]
    assert read.title == "Get a meeting transcript"
    assert read.annotations.read_only_hint is True
    assert read.annotations.destructive_hint is False
    assert read.annotations.idempotent_hint is True
    assert read.annotations.open_world_hint is False
    write = by_name["harmony_create_action_item"]
    assert write.annotations.read_only_hint is False
    assert write.annotations.idempotent_hint is False
    spec = companion.registry.tools["harmony_list_meetings"].spec
    assert by_name["harmony_list_meetings"].output_schema["anyOf"][0] == spec.output_schema
    assert by_name["harmony_list_meetings"].input_schema == spec.input_schema


@pytest.mark.parametrize("mode", ERAS)
async def test_every_read_tool_returns_structured_content_matching_its_output_schema(
    app_client, demo_keys, companion, mode
):
    async with app_client(demo_keys.keys[ADMIN], mode=mode) as client:
        meetings = await client.call_tool("harmony_list_meetings", {"status": "processed", "limit": 1})
        meeting_id = meetings.structured_content["meetings"][0]["id"]
        contacts = await client.call_tool("harmony_search_contacts", {"query": "globex"})
        email = contacts.structured_content["contacts"][0]["email"]
        results = {
            "harmony_list_meetings": meetings,
            "harmony_get_meeting": await client.call_tool("harmony_get_meeting", {"meeting_id": meeting_id}),
            "harmony_get_transcript": await client.call_tool("harmony_get_transcript", {"meeting_id": meeting_id}),
            "harmony_get_summary": await client.call_tool("harmony_get_summary", {"meeting_id": meeting_id}),
            "harmony_list_insights": await client.call_tool("harmony_list_insights", {"meeting_id": meeting_id}),
            "harmony_search_contacts": contacts,
            "harmony_get_contact": await client.call_tool("harmony_get_contact", {"email": email.upper()}),
        }
    for name, result in results.items():
        assert result.is_error is False, (name, result.content)
        schema = companion.registry.tools[name].spec.output_schema
        assert list(Draft202012Validator(schema).iter_errors(result.structured_content)) == [], name
    transcript = results["harmony_get_transcript"].structured_content["transcript"]
    assert len(transcript) >= 5
    assert all(re.fullmatch(r"\d{2}:\d{2}:\d{2}", segment["timestamp"]) for segment in transcript)
    assert transcript[0] == {
        "speaker": transcript[0]["speaker"],
        "text": transcript[0]["text"],
        "timestamp": "00:00:05",
    }
    contact = results["harmony_get_contact"].structured_content
    assert contact["email"] == email and contact["meetings"]
    assert results["harmony_get_summary"].structured_content["key_points"]


async def test_meeting_pages_follow_the_cursor_without_gaps_or_repeats(app_client, demo_keys, companion):
    seen: list[str] = []
    cursor = None
    async with app_client(demo_keys.keys[ADMIN]) as client:
        while True:
            arguments = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = (await client.call_tool("harmony_list_meetings", arguments)).structured_content
            seen += [m["id"] for m in page["meetings"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        bad_cursor = await client.call_tool("harmony_list_meetings", {"cursor": "garbage"})
    async with companion.db.session() as session:
        everything = (await session.scalars(select(Meeting.id).order_by(Meeting.date.desc(), Meeting.id.desc()))).all()
    assert seen == list(everything)
    assert bad_cursor.is_error and "cursor:" in bad_cursor.content[0].text


async def test_meeting_filters(app_client, demo_keys):
    async with app_client(demo_keys.keys[ADMIN]) as client:
        everything = (await client.call_tool("harmony_list_meetings", {"limit": 100})).structured_content["meetings"]
        dates = sorted(m["date"][:10] for m in everything)
        middle = dates[len(dates) // 2]
        one_day = await client.call_tool("harmony_list_meetings", {"date_from": middle, "date_to": middle})
        failed = await client.call_tool("harmony_list_meetings", {"status": "failed"})
        by_title = await client.call_tool("harmony_list_meetings", {"query": "PRICING discussion"})
        by_contact = await client.call_tool("harmony_list_meetings", {"contact_email": "carol@globex.example"})
    assert {m["date"][:10] for m in one_day.structured_content["meetings"]} == {middle}
    assert [m["status"] for m in failed.structured_content["meetings"]] == ["failed"]
    assert by_title.structured_content["meetings"]
    assert all("pricing discussion" in m["title"].lower() for m in by_title.structured_content["meetings"])
    assert by_contact.structured_content["meetings"]
    assert all("Globex" in m["title"] for m in by_contact.structured_content["meetings"])


async def test_a_member_cannot_read_a_meeting_outside_their_teams(app_client, demo_keys):
    async with app_client(demo_keys.keys[ADMIN]) as client:
        everything = (await client.call_tool("harmony_list_meetings", {"limit": 100})).structured_content["meetings"]
    product = next(m for m in everything if m["team"] == "Product")
    async with app_client(demo_keys.keys[ALICE]) as client:
        mine = (await client.call_tool("harmony_list_meetings", {"limit": 100})).structured_content["meetings"]
        hidden = await client.call_tool("harmony_get_transcript", {"meeting_id": product["id"]})
    assert {m["team"] for m in mine} == {"Sales"}
    assert hidden.is_error and hidden.content[0].text == (
        f"No meeting {product['id']} in this workspace that you can see"
    )


@pytest.mark.parametrize("mode", ERAS)
async def test_invalid_arguments_name_the_field_and_nothing_runs(app_client, demo_keys, companion, mode):
    await give_bob_a_memo_connection(companion)
    bob_key = await issue_key(companion, "bob@acme.test")
    memo.CALLS.clear()
    async with app_client(bob_key, mode=mode) as client:
        missing = await client.call_tool("memo_list_notes", {"limit": 2})
        wrong_type = await client.call_tool("memo_list_notes", {"folder": "inbox", "limit": "many"})
        extra = await client.call_tool("memo_list_notes", {"folder": "inbox", "colour": "red"})
        fine = await client.call_tool("memo_list_notes", {"folder": "inbox", "limit": 2})
    assert missing.is_error and missing.content[0].text == (
        "Invalid arguments: folder: 'folder' is a required property"
    )
    assert wrong_type.is_error and wrong_type.content[0].text.startswith(
        "Invalid arguments: limit: 'many' is not of type"
    )
    assert extra.is_error and extra.content[0].text.startswith("Invalid arguments: colour: Additional properties")
    assert fine.is_error is False
    assert fine.structured_content == {
        "folder": "inbox",
        "owner": "bob@acme.test",
        "has_api_key": True,
        "notes": ["note 0", "note 1"],
    }
    assert [call[0] for call in memo.CALLS] == ["list_notes"]
    outcomes = [(row.tool, row.decision, row.outcome) for row in await audit_rows(companion)]
    assert outcomes == [
        ("memo_list_notes", "none", "invalid"),
        ("memo_list_notes", "none", "invalid"),
        ("memo_list_notes", "none", "invalid"),
        ("memo_list_notes", "allow", "succeeded"),
    ]


@pytest.mark.parametrize("mode", ERAS)
async def test_a_write_tool_waits_for_approval_and_nothing_runs_meanwhile(app_client, demo_keys, companion, mode):
    async with companion.db.session() as session:
        meeting_id = await session.scalar(select(Meeting.id).limit(1))
        before = await session.scalar(select(func.count()).select_from(ActionItem))
    arguments = {"meeting_id": meeting_id, "text": "Send the contract"}
    async with app_client(demo_keys.keys[ADMIN], mode=mode) as client:
        result = await client.call_tool("harmony_create_action_item", arguments)
    assert result.is_error is False
    pending = result.structured_content
    assert pending["status"] == "approval_required"
    assert pending["approve_url"] == f"http://127.0.0.1:8000/approvals/{pending['approval_id']}"
    assert pending["summary"].splitlines()[0] == f"Add the action item “Send the contract” to meeting {meeting_id}"
    assert "Ask the user to approve it" in result.content[0].text
    async with companion.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(ActionItem)) == before
    rows = await audit_rows(companion)
    assert [(r.event, r.outcome) for r in rows] == [("approval.requested", "pending"), ("call", "pending")]
    call = rows[-1]
    assert (call.tool, call.app, call.decision, call.approval_id) == (
        "harmony_create_action_item",
        "harmony",
        "ask",
        pending["approval_id"],
    )
    assert call.args_digest == arguments_digest(arguments)
    assert call.reasons == ["no rule matched; default for write tools: ask"]


async def test_every_call_is_audited_with_who_what_and_how_long(app_client, demo_keys, companion):
    async with app_client(demo_keys.keys[ALICE]) as client:
        await client.call_tool("harmony_search_contacts", {"query": "hooli"})
    [row] = await audit_rows(companion)
    async with companion.db.session() as session:
        alice = await user_by_email(session, ALICE)
    assert (row.user_id, row.tool, row.decision, row.outcome) == (
        alice.id,
        "harmony_search_contacts",
        "allow",
        "succeeded",
    )
    assert row.api_key_id and row.connection_id and row.duration_ms > 0
    assert row.args_digest == arguments_digest({"query": "hooli"})


async def test_an_unknown_tool_is_a_protocol_error_and_is_audited(app_client, demo_keys, companion):
    async with app_client(demo_keys.keys[ALICE]) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("harmony_drop_tables", {})
    assert "Unknown tool 'harmony_drop_tables'" in caught.value.message
    [row] = await audit_rows(companion)
    assert (row.tool, row.outcome, row.error) == ("harmony_drop_tables", "invalid", "unknown_tool")


async def issue_key(companion, email: str) -> str:
    from store.directory import workspace_by_slug
    from store.keys import create_key

    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        user = await user_by_email(session, email)
        return (await create_key(session, workspace_id=workspace.id, user_id=user.id)).token


@pytest.mark.parametrize("mode", ERAS)
async def test_personal_tools_are_listed_only_for_their_owner(app_client, demo_keys, companion, mode):
    await give_bob_a_memo_connection(companion)
    bob_key = await issue_key(companion, "bob@acme.test")
    async with app_client(bob_key, mode=mode) as client:
        bobs = {tool.name for tool in (await client.list_tools()).tools}
    async with app_client(demo_keys.keys[ALICE], mode=mode) as client:
        alices = {tool.name for tool in (await client.list_tools()).tools}
        with pytest.raises(MCPError):
            await client.call_tool("memo_list_notes", {"folder": "inbox"})
    assert bobs == HARMONY_TOOLS | {"memo_list_notes", "memo_add_note", "memo_share_note", "companion_get_approval"}
    assert alices == HARMONY_TOOLS | {"companion_get_approval"}


async def test_a_second_connection_of_one_app_gets_its_own_tool_names(app_client, companion, demo_keys):
    first = await give_bob_a_memo_connection(companion)
    second = await give_bob_a_memo_connection(companion)
    bob_key = await issue_key(companion, "bob@acme.test")
    memo.CALLS.clear()
    async with app_client(bob_key) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        await client.call_tool("memo_list_notes", {"folder": "a"})
        await client.call_tool("memo_list_notes__bob_s_notes", {"folder": "b"})
    assert {"memo_list_notes", "memo_list_notes__bob_s_notes"} <= names
    assert [(call[1], call[2]["folder"]) for call in memo.CALLS] == [(first, "a"), (second, "b")]


@pytest.mark.parametrize("mode", ERAS)
async def test_the_bare_mcp_server_object_works_in_process_with_a_key(companion, demo_keys, mode):
    async def alice():
        return await companion.principal_for(demo_keys.keys[ALICE])

    server = companion.mcp_server(alice)
    async with Client(server, mode=mode) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        result = await client.call_tool("harmony_list_meetings", {"limit": 2})
    assert names == HARMONY_TOOLS | {"companion_get_approval"}
    assert len(result.structured_content["meetings"]) == 2

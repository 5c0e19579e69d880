"""Notion's tools against a fake of its REST API (version 2022-06-28) on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest

from store.models import ConnectionStatus
from tests.fakes.notion import NotionFake
from tests.providers import connected

pytestmark = pytest.mark.anyio

NOTES = """# Weekly sync
Decisions we made today
and why.

## Action items
- Alice sends the deck
* Bob books the room

Next call on Friday."""


@pytest.fixture
async def notion(settings, registry):
    async with connected(settings, registry, NotionFake(), "notion") as harness:
        yield harness


def sent(notion, path: str) -> dict:
    """The JSON body of the last API request to ``path``."""
    return json.loads([s for s in notion.fake.api_requests() if s.path == path][-1].body)


async def test_search_finds_pages_and_databases_by_title(notion):
    found = await notion.ok("notion_search", {"query": "notes"})
    assert [(r["object"], r["title"]) for r in found["results"]] == [("page", "Meeting notes")]
    assert found["results"][0]["id"] == notion.fake.notes["id"]
    assert found["results"][0]["url"].startswith("https://www.notion.so/Meeting-notes-")
    assert found["next_cursor"] is None
    assert sent(notion, "/v1/search") == {"page_size": 20, "query": "notes"}


async def test_search_can_be_narrowed_to_databases(notion):
    found = await notion.ok("notion_search", {"object": "database"})
    assert [(r["object"], r["title"]) for r in found["results"]] == [("database", "Action items")]
    assert sent(notion, "/v1/search")["filter"] == {"property": "object", "value": "database"}


async def test_search_pages_with_notions_cursor(notion):
    for n in range(3):
        notion.fake.add_page(f"Standup {n}")
    first = await notion.ok("notion_search", {"query": "standup", "limit": 2})
    second = await notion.ok("notion_search", {"query": "standup", "limit": 2, "cursor": first["next_cursor"]})
    assert [r["title"] for r in first["results"]] == ["Standup 2", "Standup 1"]
    assert [r["title"] for r in second["results"]] == ["Standup 0"] and second["next_cursor"] is None
    assert sent(notion, "/v1/search")["start_cursor"] == first["next_cursor"]


async def test_arguments_outside_the_schema_are_refused_naming_the_field(notion):
    result = await notion.call("notion_search", {"limit": 500})
    assert result.error_code == "invalid_arguments" and "limit" in result.message
    result = await notion.call("notion_search", {"object": "block"})
    assert result.error_code == "invalid_arguments" and "object" in result.message
    result = await notion.call("notion_append_to_page", {"page_id": notion.fake.notes["id"]})
    assert result.error_code == "invalid_arguments" and "content" in result.message
    assert notion.fake.api_requests() == []


async def test_a_page_is_created_inside_a_page_with_headings_paragraphs_and_bullets(notion):
    page = await notion.ok(
        "notion_create_page", {"title": "Sync 12 May", "parent_page_id": notion.fake.notes["id"], "content": NOTES}
    )
    assert page["title"] == "Sync 12 May" and page["blocks"] == 6
    assert notion.fake.page_text(page["id"]) == [
        ("heading_1", "Weekly sync"),
        ("paragraph", "Decisions we made today\nand why."),
        ("heading_2", "Action items"),
        ("bulleted_list_item", "Alice sends the deck"),
        ("bulleted_list_item", "Bob books the room"),
        ("paragraph", "Next call on Friday."),
    ]
    body = sent(notion, "/v1/pages")
    assert body["parent"] == {"page_id": notion.fake.notes["id"]}
    assert body["properties"] == {"title": {"title": [{"type": "text", "text": {"content": "Sync 12 May"}}]}}


async def test_a_database_entry_is_titled_through_the_databases_own_title_property(notion):
    tasks = notion.fake.tasks["id"]
    page = await notion.ok("notion_create_page", {"title": "Send the deck", "parent_database_id": tasks})
    assert page["title"] == "Send the deck" and page["blocks"] == 0
    assert [s.path for s in notion.fake.api_requests()] == [f"/v1/databases/{tasks}", "/v1/pages"]
    assert sent(notion, "/v1/pages")["properties"] == {
        "Task": {"title": [{"type": "text", "text": {"content": "Send the deck"}}]}
    }


async def test_a_page_is_created_under_a_parent_given_by_its_notion_url(notion):
    url = notion.fake.notes["url"] + "?pvs=4"
    page = await notion.ok("notion_create_page", {"title": "From a link", "parent_page_id": url})
    assert sent(notion, "/v1/pages")["parent"] == {"page_id": notion.fake.notes["id"]}
    assert page["url"].startswith("https://www.notion.so/From-a-link-")


async def test_create_needs_exactly_one_parent(notion):
    neither = await notion.call("notion_create_page", {"title": "Orphan"})
    assert neither.error_code == "invalid_arguments" and "parent_page_id" in neither.message
    both = await notion.call(
        "notion_create_page",
        {"title": "Twice", "parent_page_id": notion.fake.notes["id"], "parent_database_id": notion.fake.tasks["id"]},
    )
    assert both.error_code == "invalid_arguments" and "exactly one" in both.message
    assert notion.fake.api_requests() == []


async def test_a_parent_that_is_not_an_id_or_a_notion_url_is_refused(notion):
    result = await notion.call("notion_create_page", {"title": "x", "parent_page_id": "Meeting notes"})
    assert result.error_code == "invalid_arguments" and "parent_page_id" in result.message
    assert notion.fake.api_requests() == []


async def test_a_parent_not_shared_with_the_integration_reads_as_notions_words(notion):
    missing = "be907abe-510e-4116-a3d1-7ea71018c06f"
    result = await notion.call("notion_create_page", {"title": "x", "parent_database_id": missing})
    assert result.error_code == "not_found"
    assert f"Could not find database with ID: {missing}" in result.message
    assert "shared with your integration" in result.message


async def test_a_notion_validation_error_is_quoted(notion):
    notion.fake.fail_next(
        400,
        body={
            "object": "error",
            "status": 400,
            "code": "validation_error",
            "message": "body failed validation: body.children[0].paragraph.rich_text should be defined.",
        },
    )
    result = await notion.call("notion_append_to_page", {"page_id": notion.fake.notes["id"], "content": "Hi"})
    assert result.error_code == "invalid_request"
    assert result.message.startswith(
        "Notion rejected the request: body failed validation: body.children[0].paragraph.rich_text should be defined."
    )


async def test_content_of_more_than_100_blocks_is_refused_before_anything_is_sent(notion):
    content = "\n".join(f"- item {n}" for n in range(101))
    result = await notion.call("notion_append_to_page", {"page_id": notion.fake.notes["id"], "content": content})
    assert result.error_code == "invalid_arguments" and "101 blocks" in result.message
    tasks = notion.fake.tasks["id"]
    result = await notion.call("notion_create_page", {"title": "Long", "parent_database_id": tasks, "content": content})
    assert result.error_code == "invalid_arguments" and "content" in result.message
    assert notion.fake.api_requests() == []


async def test_a_long_paragraph_is_cut_into_pieces_notion_accepts(notion):
    """Notion counts 2,000 characters per piece in UTF-16, so an emoji takes two."""
    text = "a" * 2500 + "🎉" * 1000
    done = await notion.ok("notion_append_to_page", {"page_id": notion.fake.notes["id"], "content": text})
    assert done["blocks"] == 1
    pieces = sent(notion, f"/v1/blocks/{notion.fake.notes['id']}/children")["children"][0]["paragraph"]["rich_text"]
    assert [len(p["text"]["content"]) for p in pieces] == [2000, 500 + 750, 250]
    assert notion.fake.page_text(notion.fake.notes["id"]) == [("paragraph", text)]


async def test_append_adds_blocks_at_the_end_of_a_page(notion):
    notes = notion.fake.notes["id"]
    await notion.ok("notion_append_to_page", {"page_id": notes, "content": "First"})
    done = await notion.ok("notion_append_to_page", {"page_id": notes.replace("-", ""), "content": "# Later\n- one"})
    assert done["page_id"] == notes and done["blocks"] == 2 and len(done["block_ids"]) == 2
    assert notion.fake.page_text(notes) == [
        ("paragraph", "First"),
        ("heading_1", "Later"),
        ("bulleted_list_item", "one"),
    ]


async def test_append_to_a_page_that_is_not_shared_is_not_found(notion):
    result = await notion.call("notion_append_to_page", {"page_id": "0" * 32, "content": "Hi"})
    assert result.error_code == "not_found" and "Could not find block" in result.message


async def test_content_without_text_is_refused_for_an_append(notion):
    result = await notion.call("notion_append_to_page", {"page_id": notion.fake.notes["id"], "content": " \n\n "})
    assert result.error_code == "invalid_arguments" and "content" in result.message


async def test_every_request_names_the_api_version(notion):
    await notion.ok("notion_search", {})
    await notion.ok("notion_create_page", {"title": "x", "parent_database_id": notion.fake.tasks["id"]})
    await notion.ok("notion_append_to_page", {"page_id": notion.fake.notes["id"], "content": "y"})
    await notion.test_connection()
    assert len(notion.fake.api_requests()) == 5
    assert {s.headers.get("notion-version") for s in notion.fake.api_requests()} == {"2022-06-28"}


async def test_an_internal_integration_secret_travels_as_a_bearer_token(settings, registry):
    async with connected(settings, registry, NotionFake(), "notion", method="api_key") as notion:
        await notion.ok("notion_search", {})
        secret = (await notion.credentials())["api_key"]
        assert notion.fake.api_requests()[-1].headers["authorization"] == f"Bearer {secret}"


async def test_a_refused_token_asks_for_reconnection_since_notion_gives_no_refresh_token(notion):
    assert (await notion.credentials())["refresh_token"] is None
    notion.fake.expire_access_tokens()
    result = await notion.call("notion_search", {})
    assert result.error_code == "needs_reauth" and "Reconnect" in result.message
    assert (await notion.row()).status is ConnectionStatus.NEEDS_REAUTH
    assert [s.path for s in notion.fake.seen] == ["/v1/search"]


async def test_a_rate_limit_is_waited_out_as_retry_after_says(notion):
    notion.fake.fail_next(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    await notion.ok("notion_search", {"query": "notes"})
    assert time.monotonic() - started >= 0.9
    assert len(notion.fake.api_requests()) == 2


async def test_a_5xx_is_retried_for_a_search(notion):
    notion.fake.fail_next(503, times=2)
    await notion.ok("notion_search", {})
    assert len(notion.fake.api_requests()) == 3


async def test_a_5xx_is_not_retried_for_a_create_or_an_append(notion):
    """A 502 may hide a page that was made or blocks that were added; sending again could write them twice."""
    notion.fake.fail_next(502)
    result = await notion.call("notion_create_page", {"title": "Once", "parent_page_id": notion.fake.notes["id"]})
    assert result.error_code == "provider_unavailable"
    notion.fake.fail_next(502)
    result = await notion.call("notion_append_to_page", {"page_id": notion.fake.notes["id"], "content": "Once"})
    assert result.error_code == "provider_unavailable"
    assert [s.method for s in notion.fake.api_requests()] == ["POST", "PATCH"]


async def test_test_connection_names_the_person_who_connected_notion(notion):
    assert await notion.test_connection() == "Connected to Notion as Alice Example"


async def test_test_connection_names_an_internal_integration_and_its_workspace(settings, registry):
    fake = NotionFake()
    fake.bot["bot"] = {"owner": {"type": "workspace", "workspace": True}, "workspace_name": "Acme"}
    async with connected(settings, registry, fake, "notion", method="api_key") as notion:
        assert await notion.test_connection() == "Connected to Notion as Harmony Companion in Acme"

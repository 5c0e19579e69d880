"""Linear's tools against a fake of its GraphQL API on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from tests.fakes.linear import LinearFake
from tests.providers import Harness, connected
from tools.adapters.linear import CreateIssue, create_issue
from tools.errors import ToolError
from tools.idempotency import uuid4_key

pytestmark = pytest.mark.anyio


@pytest.fixture
async def linear(settings, registry):
    async with connected(settings, registry, LinearFake(), "linear") as harness:
        yield harness


async def test_teams_come_page_by_page(linear):
    first = await linear.ok("linear_list_teams", {"limit": 2})
    assert [t["key"] for t in first["teams"]] == ["ENG", "DES"]
    rest = await linear.ok("linear_list_teams", {"limit": 2, "cursor": first["next_cursor"]})
    assert [t["key"] for t in rest["teams"]] == ["OPS"] and rest["next_cursor"] is None


async def test_an_issue_is_created_with_labels_and_an_assignee_by_email(linear):
    issue = await linear.ok(
        "linear_create_issue",
        {
            "team": "eng",
            "title": "Fix login",
            "description": "From the call",
            "assignee": "bob@acme.test",
            "priority": 2,
            "labels": ["bug"],
        },
    )
    assert issue["identifier"] == "ENG-1"
    assert issue["assignee"] == "bob@acme.test" and issue["labels"] == ["Bug"] and issue["priority"] == 2
    sent = linear.fake.issues[0]
    assert sent["teamId"] == "t-eng" and sent["assigneeId"] == "u-bob" and sent["labelIds"] == ["l-ENG-bug"]


async def test_unknown_team_or_label_is_refused_before_anything_is_created(linear):
    result = await linear.call("linear_create_issue", {"team": "NOPE", "title": "x"})
    assert result.error_code == "invalid_arguments" and "team" in result.message
    result = await linear.call("linear_create_issue", {"team": "ENG", "title": "x", "labels": ["Nope"]})
    assert result.error_code == "invalid_arguments" and "labels" in result.message
    assert linear.fake.issues == []


async def test_a_graphql_validation_error_reads_as_the_providers_words(linear):
    result = await linear.call("linear_create_issue", {"team": "ENG", "title": "x", "assignee": "nobody@else.test"})
    assert result.error_code == "invalid_arguments" and "assignee" in result.message
    linear.fake.fail_next(
        400,
        body={
            "errors": [
                {"message": "Argument Validation Error: title is too long", "extensions": {"code": "INVALID_INPUT"}}
            ]
        },
    )
    result = await linear.call("linear_list_teams", {})
    assert result.error_code == "invalid_request"
    assert result.message == "Linear rejected the request: Argument Validation Error: title is too long."


def creates(harness: Harness) -> list[dict]:
    """The input of every issueCreate Linear was sent, in order."""
    bodies = [json.loads(seen.body) for seen in harness.fake.api_requests()]
    return [b["variables"]["input"] for b in bodies if "issueCreate" in b["query"]]


async def run_approved(harness: Harness, approval_id: str, arguments: CreateIssue) -> dict:
    """The adapter as the gateway runs an approved call, each time in a context of its own, as a new process would."""
    ctx = await harness.context()
    ctx.approval_id = approval_id
    return await create_issue(ctx, arguments)


async def test_an_auto_allowed_create_sends_no_id_and_linear_makes_one(linear):
    issue = await linear.ok("linear_create_issue", {"team": "ENG", "title": "Fix login"})
    [sent] = creates(linear)
    assert "id" not in sent
    assert issue["id"] == linear.fake.issues[0]["id"]


async def test_an_approved_create_run_again_returns_the_issue_the_first_run_made(linear):
    arguments = CreateIssue(team="ENG", title="Fix login", labels=["Bug"])
    first = await run_approved(linear, "apr_0123456789abcdef", arguments)
    again = await run_approved(linear, "apr_0123456789abcdef", arguments)
    assert again == first and first["identifier"] == "ENG-1"
    assert [i["id"] for i in linear.fake.issues] == [uuid4_key("apr_0123456789abcdef", "linear.issue")]
    assert [sent["id"] for sent in creates(linear)] == [first["id"], first["id"]]


async def test_each_approval_makes_its_own_issue(linear):
    arguments = CreateIssue(team="ENG", title="Fix login")
    one = await run_approved(linear, "apr_0123456789abcdef", arguments)
    other = await run_approved(linear, "apr_fedcba9876543210", arguments)
    assert one["id"] != other["id"] and [i["identifier"] for i in linear.fake.issues] == ["ENG-1", "ENG-2"]


async def test_an_approved_create_refused_for_another_reason_reads_in_linears_words(linear):
    """No issue holds the id, so the refusal is not a repeat: it is reported as Linear worded it."""
    refusal = {
        "errors": [{"message": "Argument Validation Error: title is too long", "extensions": {"code": "INVALID_INPUT"}}]
    }
    linear.fake.fail_next(400, body=refusal, when=lambda seen: b"issueCreate" in seen.body)
    with pytest.raises(ToolError) as refused:
        await run_approved(linear, "apr_0123456789abcdef", CreateIssue(team="ENG", title="x" * 300))
    assert str(refused.value) == "Linear rejected the request: Argument Validation Error: title is too long."
    assert json.loads(linear.fake.api_requests()[-1].body)["query"].startswith("query Issue(")
    assert linear.fake.issues == []


async def test_search_and_update_move_an_issue_along(linear):
    await linear.ok("linear_create_issue", {"team": "ENG", "title": "Slow dashboard"})
    await linear.ok("linear_create_issue", {"team": "DES", "title": "Slow animation"})
    found = await linear.ok("linear_search_issues", {"query": "slow", "team": "ENG"})
    assert [i["identifier"] for i in found["issues"]] == ["ENG-1"]
    updated = await linear.ok("linear_update_issue", {"issue": "ENG-1", "state": "in progress", "priority": 1})
    assert updated["state"] == "In Progress" and updated["priority"] == 1
    missing = await linear.call("linear_update_issue", {"issue": "ENG-99", "title": "x"})
    assert missing.error_code == "not_found"


async def test_search_pages_with_the_providers_cursor(linear):
    for n in range(3):
        await linear.ok("linear_create_issue", {"team": "ENG", "title": f"Report {n}"})
    first = await linear.ok("linear_search_issues", {"query": "report", "limit": 2})
    second = await linear.ok("linear_search_issues", {"query": "report", "limit": 2, "cursor": first["next_cursor"]})
    assert len(first["issues"]) == 2 and len(second["issues"]) == 1 and second["next_cursor"] is None


async def test_an_api_key_travels_bare_in_the_authorization_header(settings, registry):
    async with connected(settings, registry, LinearFake(), "linear", method="api_key") as linear:
        await linear.ok("linear_list_teams", {})
        key = (await linear.credentials())["api_key"]
        assert linear.fake.api_requests()[-1].headers["authorization"] == key


async def test_test_connection_names_the_account(linear):
    assert await linear.test_connection() == "Signed in to Linear as Alice"


async def test_sync_users_reads_every_page_and_flags_the_inactive(linear):
    linear.fake.users.extend(
        {"id": f"u-{n}", "name": f"Person {n}", "email": f"P{n}@acme.test", "active": True} for n in range(150)
    )
    records = await linear.synced()
    assert len(records) == 153
    assert records[3].fields == {"name": "Person 0", "email": "p0@acme.test"}
    assert [r.external_id for r in records if r.deleted] == ["u-old"]

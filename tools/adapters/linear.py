"""Linear, through its GraphQL API (https://api.linear.app/graphql).

Lists are Relay connections: ``first``/``after`` in, ``nodes`` and
``pageInfo { hasNextPage endCursor }`` out. Mutations answer with a payload
carrying ``success`` and the object.

``IssueCreateInput.id`` takes the client's own id "in UUID v4 format"; an
approved create sends one derived from its approval, so running the approval
once more finds the issue the first run made instead of making another.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
from pydantic import Field

from manifests import MANIFEST_DIR
from tools.arguments import Arguments
from tools.context import ToolContext
from tools.errors import InvalidArguments, NotFound, ToolError
from tools.idempotency import uuid4_key
from tools.pagination import every_page
from tools.provider import ProviderError, Reading, json_body
from tools.sync import SyncRecord

#: The manifest this adapter carries out; the entry point in pyproject.toml registers the pair.
MANIFEST = MANIFEST_DIR / "linear.yaml"

#: Linear's words, in each GraphQL error's ``extensions.code``, for a thing that is not there and for "slow down".
NOT_FOUND_CODES = {"ENTITY_NOT_FOUND", "NOT_FOUND"}
RATE_LIMITED_CODES = {"RATELIMITED", "RATE_LIMITED"}


def classify(response: httpx.Response) -> Reading | None:
    """Linear names its errors in the body, on a 400 as on a 200 that carries errors and no data."""
    if response.is_success and b'"errors"' not in response.content:
        return None
    body = json_body(response)
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return None
    if response.is_success and body.get("data"):
        return None  # a partial answer: the data is what was asked for
    codes = {str((e.get("extensions") or {}).get("code", "")).upper() for e in body["errors"] if isinstance(e, dict)}
    if codes & NOT_FOUND_CODES:
        return Reading.NOT_FOUND
    if codes & RATE_LIMITED_CODES:
        return Reading.RATE_LIMITED
    return None


ISSUE_FIELDS = """
  id identifier title description priority url
  state { name }
  assignee { name email }
  team { key }
  labels { nodes { name } }
"""


class ListTeams(Arguments):
    limit: int = 50
    cursor: str | None = None


class CreateIssue(Arguments):
    team: str
    title: str
    description: str | None = None
    assignee: str | None = None
    priority: int | None = Field(default=None, ge=0, le=4)
    labels: list[str] | None = None


class SearchIssues(Arguments):
    query: str
    team: str | None = None
    limit: int = 20
    cursor: str | None = None


class UpdateIssue(Arguments):
    issue: str
    title: str | None = None
    description: str | None = None
    state: str | None = None
    assignee: str | None = None
    priority: int | None = Field(default=None, ge=0, le=4)
    labels: list[str] | None = None


def _issue(node: dict[str, Any]) -> dict[str, Any]:
    assignee = node.get("assignee") or {}
    return {
        "id": node["id"],
        "identifier": node["identifier"],
        "title": node["title"],
        "description": node.get("description") or "",
        "priority": node.get("priority") or 0,
        "state": (node.get("state") or {}).get("name", ""),
        "assignee": assignee.get("email") or assignee.get("name"),
        "team": (node.get("team") or {}).get("key", ""),
        "labels": [label["name"] for label in (node.get("labels") or {}).get("nodes", [])],
        "url": node.get("url", ""),
    }


async def viewer(ctx: ToolContext) -> str:
    """Test connection: who the credentials belong to."""
    data = await ctx.api.graphql("query { viewer { id name email } }")
    me = data.get("viewer") or {}
    return f"Signed in to Linear as {me.get('name') or me.get('email')}"


async def list_teams(ctx: ToolContext, arguments: ListTeams) -> dict[str, Any]:
    data = await ctx.api.graphql(
        "query Teams($first: Int!, $after: String) {"
        " teams(first: $first, after: $after) { nodes { id key name } pageInfo { hasNextPage endCursor } } }",
        {"first": arguments.limit, "after": arguments.cursor},
    )
    teams = data["teams"]
    return {
        "teams": [{"id": t["id"], "key": t["key"], "name": t["name"]} for t in teams["nodes"]],
        "next_cursor": teams["pageInfo"]["endCursor"] if teams["pageInfo"]["hasNextPage"] else None,
    }


async def _team(ctx: ToolContext, team: str) -> dict[str, Any]:
    """A team by key (ENG) or id, with the labels and workflow states its issues may use."""
    data = await ctx.api.graphql(
        "query Team($filter: TeamFilter) { teams(first: 2, filter: $filter) { nodes {"
        " id key name labels(first: 250) { nodes { id name } } states(first: 100) { nodes { id name } } } } }",
        {"filter": {"or": [{"key": {"eqIgnoreCase": team}}, {"id": {"eq": team}}]}},
    )
    nodes = data["teams"]["nodes"]
    if not nodes:
        raise InvalidArguments({"team": f"no Linear team with key or id {team!r}"})
    return dict(nodes[0])


def _ids_by_name(nodes: list[dict[str, Any]], names: list[str], field: str, kind: str) -> list[str]:
    known = {node["name"].lower(): node["id"] for node in nodes}
    missing = [name for name in names if name.lower() not in known]
    if missing:
        raise InvalidArguments({field: f"no {kind} named {', '.join(map(repr, missing))} in this team"})
    return [known[name.lower()] for name in names]


async def _user_id(ctx: ToolContext, who: str) -> str:
    """A Linear user by e-mail (through the synced user map first) or by id."""
    synced = (ctx.options.get("synced_users") or {}).get(who.lower())
    if synced:
        return str(synced)
    data = await ctx.api.graphql(
        "query Users($filter: UserFilter) { users(first: 2, filter: $filter) { nodes { id email } } }",
        {"filter": {"or": [{"email": {"eqIgnoreCase": who}}, {"id": {"eq": who}}]}},
    )
    nodes = data["users"]["nodes"]
    if not nodes:
        raise InvalidArguments({"assignee": f"no Linear user with e-mail or id {who!r}"})
    return str(nodes[0]["id"])


async def create_issue(ctx: ToolContext, arguments: CreateIssue) -> dict[str, Any]:
    team = await _team(ctx, arguments.team)
    issue_input: dict[str, Any] = {"teamId": team["id"], "title": arguments.title}
    if arguments.description is not None:
        issue_input["description"] = arguments.description
    if arguments.priority is not None:
        issue_input["priority"] = arguments.priority
    if arguments.labels:
        issue_input["labelIds"] = _ids_by_name(team["labels"]["nodes"], arguments.labels, "labels", "label")
    if arguments.assignee:
        issue_input["assigneeId"] = await _user_id(ctx, arguments.assignee)
    issue_id = uuid4_key(ctx.approval_id, "linear.issue") if ctx.approval_id else None
    if issue_id:
        issue_input["id"] = issue_id
    try:
        data = await ctx.api.graphql(
            "mutation IssueCreate($input: IssueCreateInput!) {"
            f" issueCreate(input: $input) {{ success issue {{ {ISSUE_FIELDS} }} }} }}",
            {"input": issue_input},
        )
    except ProviderError:
        if issue_id is None:
            raise
        # Linear documents no answer for an id it already holds, so any refusal is checked against the id:
        # an issue with it is the one an earlier run of this approval created.
        earlier = await _issue_with_id(ctx, issue_id)
        if earlier is None:
            raise
        return _issue(earlier)
    payload = data["issueCreate"]
    if not payload.get("success") or not payload.get("issue"):
        raise ToolError("Linear did not create the issue.", code="provider_error")
    return _issue(payload["issue"])


async def _issue_with_id(ctx: ToolContext, issue_id: str) -> dict[str, Any] | None:
    """The issue with this id, or None when Linear has none."""
    try:
        data = await ctx.api.graphql(
            f"query Issue($id: String!) {{ issue(id: $id) {{ {ISSUE_FIELDS} }} }}", {"id": issue_id}
        )
    except ToolError as exc:
        if exc.code == "not_found":
            return None
        raise
    return data.get("issue")


async def search_issues(ctx: ToolContext, arguments: SearchIssues) -> dict[str, Any]:
    variables: dict[str, Any] = {"term": arguments.query, "first": arguments.limit, "after": arguments.cursor}
    if arguments.team:
        variables["filter"] = {"team": {"key": {"eqIgnoreCase": arguments.team}}}
    data = await ctx.api.graphql(
        "query Search($term: String!, $first: Int!, $after: String, $filter: IssueFilter) {"
        f" searchIssues(term: $term, first: $first, after: $after, filter: $filter) {{ nodes {{ {ISSUE_FIELDS} }}"
        " pageInfo { hasNextPage endCursor } } }",
        variables,
    )
    found = data["searchIssues"]
    return {
        "issues": [_issue(node) for node in found["nodes"]],
        "next_cursor": found["pageInfo"]["endCursor"] if found["pageInfo"]["hasNextPage"] else None,
    }


async def update_issue(ctx: ToolContext, arguments: UpdateIssue) -> dict[str, Any]:
    data = await ctx.api.graphql(
        "query Issue($id: String!) { issue(id: $id) { id team { key } } }", {"id": arguments.issue}
    )
    if not data.get("issue"):
        raise NotFound(f"No Linear issue {arguments.issue}.")
    changes: dict[str, Any] = {}
    for name in ("title", "description", "priority"):
        if getattr(arguments, name) is not None:
            changes[name] = getattr(arguments, name)
    if arguments.state is not None or arguments.labels is not None:
        team = await _team(ctx, data["issue"]["team"]["key"])
        if arguments.state is not None:
            changes["stateId"] = _ids_by_name(team["states"]["nodes"], [arguments.state], "state", "workflow state")[0]
        if arguments.labels is not None:
            changes["labelIds"] = _ids_by_name(team["labels"]["nodes"], arguments.labels, "labels", "label")
    if arguments.assignee is not None:
        changes["assigneeId"] = await _user_id(ctx, arguments.assignee)
    if not changes:
        raise InvalidArguments({"(arguments)": "name at least one field to change"})
    updated = await ctx.api.graphql(
        "mutation IssueUpdate($id: String!, $input: IssueUpdateInput!) {"
        f" issueUpdate(id: $id, input: $input) {{ success issue {{ {ISSUE_FIELDS} }} }} }}",
        {"id": data["issue"]["id"], "input": changes},
    )
    payload = updated["issueUpdate"]
    if not payload.get("success") or not payload.get("issue"):
        raise ToolError("Linear did not update the issue.", code="provider_error")
    return _issue(payload["issue"])


async def list_users(ctx: ToolContext, since: str | None) -> AsyncIterator[SyncRecord]:
    """Sync users: every member of the Linear workspace, to match with Harmony users by e-mail."""

    async def page(cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        data = await ctx.api.graphql(
            "query Users($first: Int!, $after: String) { users(first: $first, after: $after) {"
            " nodes { id name email active } pageInfo { hasNextPage endCursor } } }",
            {"first": 100, "after": cursor},
        )
        users = data["users"]
        return users["nodes"], users["pageInfo"]["endCursor"] if users["pageInfo"]["hasNextPage"] else None

    async for user in every_page(page):
        yield SyncRecord(
            external_id=user["id"],
            fields={"name": user.get("name", ""), "email": (user.get("email") or "").lower()},
            deleted=not user.get("active", True),
        )

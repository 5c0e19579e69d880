"""A fake of Linear's GraphQL API: one POST /graphql endpoint, Relay connections, mutation payloads.

It answers the operations the adapter sends by their root field, reading the
operation's variables as Linear would; errors come back as GraphQL errors with
``extensions.code``, as Linear sends them.

``issueCreate`` keeps a client's ``input.id`` ("The identifier in UUID v4
format. If none is provided, the backend will generate one.") and refuses one
it already holds. Linear does not document the words of that refusal, so the
fake answers as for any refused input, and the adapter must not rely on them.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import ProviderFake

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", re.I)
ROOT_FIELD = re.compile(r"^\s*(?:(?:query|mutation)\s*\w*\s*(?:\([^)]*\))?\s*)?{\s*(\w+)", re.S)


def _error(message: str, code: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status)


def _page(items: list[dict[str, Any]], first: int, after: str | None) -> dict[str, Any]:
    start = int(after) if after else 0
    chunk = items[start : start + first]
    has_next = start + first < len(items)
    return {"nodes": chunk, "pageInfo": {"hasNextPage": has_next, "endCursor": str(start + first) if chunk else None}}


def _matches(node: dict[str, Any], condition: dict[str, Any]) -> bool:
    """Linear's filter language, for the comparators the adapter uses: or, eq, eqIgnoreCase."""
    if "or" in condition:
        return any(_matches(node, part) for part in condition["or"])
    for field, test in condition.items():
        value = node.get(field)
        if isinstance(value, dict):
            if not _matches(value, test):
                return False
            continue
        if "eq" in test and value != test["eq"]:
            return False
        if "eqIgnoreCase" in test and str(value).lower() != str(test["eqIgnoreCase"]).lower():
            return False
    return True


class LinearFake(ProviderFake):
    key_header = "Authorization"
    key_scheme = ""

    def __init__(self) -> None:
        super().__init__([Route("/graphql", self.graphql, methods=["POST"])])
        self.users = [
            {"id": "u-alice", "name": "Alice", "email": "alice@acme.test", "active": True},
            {"id": "u-bob", "name": "Bob", "email": "bob@acme.test", "active": True},
            {"id": "u-old", "name": "Former", "email": "gone@acme.test", "active": False},
        ]
        self.teams = [
            {
                "id": f"t-{key.lower()}",
                "key": key,
                "name": name,
                "labels": {"nodes": [{"id": f"l-{key}-bug", "name": "Bug"}, {"id": f"l-{key}-ux", "name": "UX"}]},
                "states": {
                    "nodes": [{"id": f"s-{key}-todo", "name": "Todo"}, {"id": f"s-{key}-doing", "name": "In Progress"}]
                },
            }
            for key, name in [("ENG", "Engineering"), ("DES", "Design"), ("OPS", "Operations")]
        ]
        self.issues: list[dict[str, Any]] = []

    def unauthorized(self) -> Response:
        return _error("Authentication required, not authenticated", "AUTHENTICATION_ERROR", 401)

    def _team(self, team_id: str) -> dict[str, Any]:
        return next(t for t in self.teams if t["id"] == team_id)

    def _render(self, issue: dict[str, Any]) -> dict[str, Any]:
        team = self._team(issue["teamId"])
        labels = [label for label in team["labels"]["nodes"] if label["id"] in issue["labelIds"]]
        state = next(s for s in team["states"]["nodes"] if s["id"] == issue["stateId"])
        assignee = next((u for u in self.users if u["id"] == issue.get("assigneeId")), None)
        return {
            "id": issue["id"],
            "identifier": issue["identifier"],
            "title": issue["title"],
            "description": issue.get("description"),
            "priority": issue.get("priority", 0),
            "url": f"https://linear.app/acme/issue/{issue['identifier']}",
            "state": {"name": state["name"]},
            "assignee": {"name": assignee["name"], "email": assignee["email"]} if assignee else None,
            "team": {"key": team["key"]},
            "labels": {"nodes": [{"name": label["name"]} for label in labels]},
        }

    def _check_refs(self, values: dict[str, Any]) -> JSONResponse | None:
        if "assigneeId" in values and not any(u["id"] == values["assigneeId"] for u in self.users):
            return _error("Argument Validation Error: assigneeId must be a valid user", "INVALID_INPUT")
        if "priority" in values and values["priority"] not in range(5):
            return _error("Argument Validation Error: priority must be between 0 and 4", "INVALID_INPUT")
        return None

    async def graphql(self, request: Request) -> Response:
        body = await request.json()
        query, variables = body.get("query", ""), body.get("variables") or {}
        found = ROOT_FIELD.match(query)
        if not found:
            return _error("Syntax Error: could not parse the query", "GRAPHQL_PARSE_FAILED")
        root = found.group(1)
        first = int(variables.get("first") or 50)
        if root == "viewer":
            return JSONResponse({"data": {"viewer": self.users[0]}})
        if root == "teams":
            teams = [t for t in self.teams if _matches(t, variables.get("filter") or {})]
            return JSONResponse({"data": {"teams": _page(teams, first, variables.get("after"))}})
        if root == "users":
            users = [u for u in self.users if _matches(u, variables.get("filter") or {})]
            return JSONResponse({"data": {"users": _page(users, first, variables.get("after"))}})
        if root == "searchIssues":
            term = str(variables["term"]).lower()
            hits = [
                self._render(i)
                for i in self.issues
                if term in i["title"].lower()
                or term in (i.get("description") or "").lower()
                or term in i["identifier"].lower()
            ]
            hits = [h for h in hits if _matches(h, variables.get("filter") or {})]
            return JSONResponse({"data": {"searchIssues": _page(hits, first, variables.get("after"))}})
        if root == "issue":
            issue = next((i for i in self.issues if variables["id"] in (i["id"], i["identifier"])), None)
            if issue is None:
                return _error("Entity not found: Issue", "ENTITY_NOT_FOUND")
            return JSONResponse({"data": {"issue": self._render(issue)}})
        if root == "issueCreate":
            values = dict(variables["input"])
            if not any(t["id"] == values.get("teamId") for t in self.teams):
                return _error("Argument Validation Error: teamId must be a valid team", "INVALID_INPUT")
            if problem := self._check_refs(values):
                return problem
            issue_id = values.pop("id", None)
            if issue_id is not None and not UUID4.match(str(issue_id)):
                return _error("Argument Validation Error: id must be a UUID v4", "INVALID_INPUT")
            if any(i["id"] == issue_id for i in self.issues):
                return _error("Argument Validation Error: id is already in use", "INVALID_INPUT")
            team = self._team(values["teamId"])
            number = 1 + sum(1 for i in self.issues if i["teamId"] == team["id"])
            issue = {
                "id": issue_id or str(uuid.uuid4()),
                "identifier": f"{team['key']}-{number}",
                "labelIds": [],
                "stateId": team["states"]["nodes"][0]["id"],
                **values,
            }
            self.issues.append(issue)
            return JSONResponse({"data": {"issueCreate": {"success": True, "issue": self._render(issue)}}})
        if root == "issueUpdate":
            issue = next((i for i in self.issues if i["id"] == variables["id"]), None)
            if issue is None:
                return _error("Entity not found: Issue", "ENTITY_NOT_FOUND")
            if problem := self._check_refs(variables["input"]):
                return problem
            issue.update(variables["input"])
            return JSONResponse({"data": {"issueUpdate": {"success": True, "issue": self._render(issue)}}})
        return _error(f'Cannot query field "{root}" on type "Query".', "GRAPHQL_VALIDATION_FAILED")

"""Every REST route is declared once, on ApiRouter: the OpenAPI document lists it, and its answers keep to it.

Approvals, rules and integrations were hand-written routes the document missed; these tests hold the API to
"every route is in the document", check real answers of those three against their documented schemas, and
check that who is asking is settled before what they sent is read.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest
from jsonschema import Draft202012Validator
from starlette.routing import Mount, Route

from server.app import create_app
from store.directory import user_by_email, workspace_by_slug
from store.keys import create_key
from store.models import KeyKind
from tests.conftest import mcp_client

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


@pytest.fixture
async def app(companion, demo_keys) -> AsyncIterator[Any]:
    app = create_app(companion)
    async with app.router.lifespan_context(app):
        yield app


def client(app: Any, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=f"{BASE}/api/v1", headers={"Authorization": f"Bearer {key}"}
    )


def checker(document: dict[str, Any], path: str, method: str, status: int) -> Draft202012Validator:
    """A validator for the answer the document promises for ``method path`` with ``status``."""
    content = document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
    return Draft202012Validator({**content["schema"], "components": document["components"]})


async def test_every_route_under_api_v1_is_in_the_document(app, demo_keys):
    mount = next(r for r in app.routes if isinstance(r, Mount) and r.path == "/api/v1")
    mounted = {
        (re.sub(r"{(\w+):\w+}", r"{\1}", route.path), method.lower())
        for route in mount.routes
        if isinstance(route, Route) and route.path != "/openapi.json"
        for method in route.methods or ()
        if method != "HEAD"
    }
    async with client(app, demo_keys.user_keys["admin@acme.test"]) as admin:
        document = (await admin.get("/openapi.json")).json()
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert mounted == documented
    for prefix in ("/approvals", "/rules", "/integrations"):
        assert any(path.startswith(prefix) for path, _ in documented), prefix
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids)), "an operationId names one operation"


async def test_answers_of_rules_and_approvals_keep_to_their_schemas(app, demo_keys, companion):
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=httpx2.ASGITransport(app=app)) as mcp:
        waiting = await mcp.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": "email Carol"})
    await companion.audit.flush()
    approval_id = waiting.structured_content["approval_id"]
    # An hour window, to see its "from" and "to" answered by those names, on a tool this test does not call.
    timed = {"effect": "ask", "scope": "user", "tool": "harmony_list_meetings"}
    timed["context"] = {"hours": {"from": "09:00", "to": "17:30"}}
    capped = {"effect": "allow", "scope": "user", "tool": "harmony_create_action_item"}
    capped["cap"] = {"max": 5, "per_seconds": 3600}
    async with client(app, demo_keys.user_keys["alice@acme.test"]) as alice:
        document = (await alice.get("/openapi.json")).json()
        with_hours = await alice.post("/rules", json=timed)
        assert with_hours.status_code == 201, with_hours.text
        assert with_hours.json()["context"]["hours"] == {"from": "09:00:00", "to": "17:30:00"}
        created = await alice.post("/rules", json=capped)
        explain = {"tool": "harmony_create_action_item", "arguments": {}}
        simulate = {"changes": {"remove": [created.json()["id"]]}}
        answers = [
            ("/rules", "post", 201, created),
            ("/rules", "get", 200, await alice.get("/rules")),
            ("/rules/explain", "post", 200, await alice.post("/rules/explain", json=explain)),
            ("/rules/simulate", "post", 200, await alice.post("/rules/simulate", json=simulate)),
            ("/approvals", "get", 200, await alice.get("/approvals")),
            ("/approvals/{approval_id}", "get", 200, await alice.get(f"/approvals/{approval_id}")),
            ("/approvals/{approval_id}/deny", "post", 200, await alice.post(f"/approvals/{approval_id}/deny", json={})),
        ]
    for path, method, status, answer in answers:
        assert answer.status_code == status, (path, answer.text)
        checker(document, path, method, status).validate(answer.json())
    simulation = answers[3][3].json()
    assert set(simulation) >= {"from", "to"} and simulation["counts"] == {"allow->ask": 1}
    assert answers[2][3].json()["caps"] == [{"rule_id": created.json()["id"], "max": 5, "per_seconds": 3600}]


async def test_who_is_asking_is_settled_before_the_body_is_read(app, companion, demo_keys):
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, demo_keys.workspace)
        alice = await user_by_email(session, "alice@acme.test")
        assert workspace is not None and alice is not None
        tools_only = await create_key(
            session, workspace_id=workspace.id, user_id=alice.id, kind=KeyKind.USER, scopes=["tools"]
        )
    not_a_rule = {"effect": "maybe"}
    async with client(app, tools_only.token) as outside_the_api:
        refused = await outside_the_api.post("/rules", json=not_a_rule)
    assert refused.status_code == 403, "no field of the body is judged for a key that may not ask"
    assert refused.json()["error"]["message"] == (
        "This key has no access to the REST API (scope api; an assistant's token needs api:read)."
    )
    async with client(app, demo_keys.keys["alice@acme.test"]) as agent:
        for method, path in (("POST", "/rules"), ("POST", "/approvals/apr_x/approve"), ("GET", "/integrations")):
            answer = await agent.request(method, path, json=not_a_rule if method == "POST" else None)
            assert answer.status_code == 403, path
            error = answer.json()["error"]
            assert error["code"] == "forbidden" and error["details"] == {}, path
            assert error["message"].startswith("Agent keys"), path
    async with client(app, demo_keys.user_keys["alice@acme.test"]) as person:
        invalid = await person.post("/rules", json=not_a_rule)
    assert invalid.status_code == 422 and set(invalid.json()["error"]["details"]["fields"]) == {"effect", "scope"}

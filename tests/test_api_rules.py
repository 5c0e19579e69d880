"""Rules and approvals over the REST API, in process: errors name fields, explain and simulate tell the truth."""

from __future__ import annotations

import httpx2
import pytest

from tests.conftest import mcp_client

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


@pytest.fixture
async def api(app_client, demo_keys):
    clients = {}
    for who in ("admin", "alice"):
        headers = {"Authorization": f"Bearer {demo_keys.user_keys[f'{who}@acme.test']}"}
        clients[who] = httpx2.AsyncClient(transport=app_client.transport, base_url=f"{BASE}/api/v1", headers=headers)
    yield clients
    for client in clients.values():
        await client.aclose()


async def test_without_a_key_the_api_says_unauthorized_in_its_error_format(app_client):
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as http:
        response = await http.get("/api/v1/rules")
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "unauthorized",
            "message": "A valid API key is required: send Authorization: Bearer <key>.",
            "details": {},
        }
    }
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("rule", "fields"),
    [
        ({"effect": "allow", "scope": "workspace", "app": "nope"}, {"app": "unknown app 'nope'"}),
        (
            {
                "effect": "allow",
                "scope": "workspace",
                "tool": "harmony_create_action_item",
                "conditions": [{"arg": "assignee", "op": "eq", "value": "x"}],
            },
            {"conditions[0].arg": "'assignee' is not an argument of harmony_create_action_item"},
        ),
        (
            {
                "effect": "allow",
                "scope": "workspace",
                "tool": "harmony_*",
                "conditions": [{"arg": "text", "op": "matches", "value": "(oops"}],
            },
            {
                "conditions.0.value": "invalid regular expression: missing ): (oops (patterns run in linear time,"
                " so backreferences and lookaround are not available)"
            },
        ),
        (
            {
                "effect": "allow",
                "scope": "workspace",
                "tool": "harmony_create_action_item",
                "conditions": [{"arg": "meeting_id", "op": "in", "value": []}],
            },
            {"conditions.0.value": "in needs a non-empty list"},
        ),
        ({"effect": "maybe", "scope": "workspace"}, {"effect": "Input should be 'allow', 'ask' or 'deny'"}),
        ({"scope": "workspace"}, {"effect": "Field required"}),
    ],
)
async def test_a_bad_rule_is_refused_with_422_naming_each_field(api, rule, fields):
    response = await api["admin"].post("/rules", json=rule)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["details"]["fields"] == fields


async def test_a_member_cannot_create_workspace_rules_but_can_create_their_own(api):
    workspace_rule = {"effect": "allow", "scope": "workspace", "tool": "harmony_create_action_item"}
    refused = await api["alice"].post("/rules", json=workspace_rule)
    assert refused.status_code == 403
    mine = await api["alice"].post("/rules", json={**workspace_rule, "scope": "user"})
    assert mine.status_code == 201
    admin_rule = await api["admin"].post("/rules", json={**workspace_rule, "effect": "deny"})
    assert admin_rule.status_code == 201
    alice_sees = {r["id"] for r in (await api["alice"].get("/rules")).json()["data"]}
    assert alice_sees == {mine.json()["id"]}
    assert (await api["alice"].get(f"/rules/{admin_rule.json()['id']}")).status_code == 404
    assert (await api["alice"].delete(f"/rules/{admin_rule.json()['id']}")).status_code == 404


async def test_rules_can_be_changed_and_deleted(api):
    created = (await api["admin"].post("/rules", json={"effect": "ask", "scope": "workspace", "app": "harmony"})).json()
    changed = await api["admin"].patch(f"/rules/{created['id']}", json={"effect": "deny", "description": "no"})
    assert changed.status_code == 200 and changed.json()["effect"] == "deny"
    bad = await api["admin"].patch(f"/rules/{created['id']}", json={"tool": "harmony_fly"})
    assert bad.status_code == 422 and "tool" in bad.json()["error"]["details"]["fields"]
    assert (await api["admin"].delete(f"/rules/{created['id']}")).status_code == 204
    assert (await api["admin"].get(f"/rules/{created['id']}")).status_code == 404


async def test_explain_shows_the_decision_and_the_rules_behind_it(api):
    await api["admin"].post(
        "/rules",
        json={
            "effect": "deny",
            "scope": "workspace",
            "tool": "harmony_create_action_item",
            "conditions": [{"arg": "text", "op": "contains", "value": "fire"}],
            "description": "No firing people through the assistant",
        },
    )
    body = {"user": "alice@acme.test", "tool": "harmony_create_action_item", "arguments": {"text": "fire Bob"}}
    explained = (await api["admin"].post("/rules/explain", json=body)).json()
    assert explained["effect"] == "deny"
    assert [r["description"] for r in explained["rules"]] == ["No firing people through the assistant"]
    harmless = (await api["admin"].post("/rules/explain", json={**body, "arguments": {"text": "hire Bob"}})).json()
    assert harmless["effect"] == "ask" and harmless["rules"] == []
    other = await api["alice"].post("/rules/explain", json={**body, "user": "admin@acme.test"})
    assert other.status_code == 403


async def test_simulate_replays_recorded_calls_under_a_proposed_rule(api, app_client, demo_keys, companion):
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=app_client.transport) as client:
        for text in ("email Carol", "email Dan", "plan the offsite"):
            await client.call_tool("harmony_create_action_item", {"meeting_id": "mtg_missing", "text": text})
        await client.call_tool("harmony_list_meetings", {"limit": 1})
    await companion.audit.flush()  # call rows are queued; a replay sees what has been written
    proposal = {
        "effect": "allow",
        "scope": "user",
        "tool": "harmony_create_action_item",
        "conditions": [{"arg": "text", "op": "matches", "value": "email .*"}],
    }
    # Alice replays her own calls, whose arguments she may read (an admin's replay withholds them: test_edges.py).
    result = await api["alice"].post("/rules/simulate", json={"changes": {"add": [proposal]}})
    assert result.status_code == 200, result.text
    report = result.json()
    assert report["replayed"] == 4
    assert report["changed"] == 2 and report["counts"] == {"ask->allow": 2}
    assert {c["tool"] for c in report["calls"]} == {"harmony_create_action_item"}
    bad = await api["alice"].post("/rules/simulate", json={"changes": {"add": [{**proposal, "tool": "nope_*"}]}})
    assert bad.status_code == 422 and "changes.add[0].tool" in bad.json()["error"]["details"]["fields"]


async def test_explain_lists_every_rule_that_matched_not_only_the_deciding_one(api):
    for effect in ("allow", "deny"):
        await api["admin"].post(
            "/rules",
            json={
                "effect": effect,
                "scope": "workspace",
                "tool": "harmony_create_action_item",
                "description": f"{effect} them",
            },
        )
    body = {"tool": "harmony_create_action_item", "arguments": {"meeting_id": "m", "text": "x"}}
    explained = (await api["admin"].post("/rules/explain", json=body)).json()
    assert explained["effect"] == "deny"
    assert [r["description"] for r in explained["rules"]] == ["deny them"]
    assert sorted(r["description"] for r in explained["matched"]) == ["allow them", "deny them"]

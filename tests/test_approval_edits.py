"""Edit before approving: a person changes a waiting call's arguments and approves what they changed.

Bob's assistant asks to share a note through his Memo connection (the tests' own app, whose runs are counted in
``memo.CALLS``); Bob fixes it over REST or in the console. Everything runs in process, through the real app.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from approvals.digest import arguments_digest
from server.app import Companion
from store.models import Approval, AuditEntry
from store.sealing import audit_arguments_context
from tests.apps import memo
from tests.conftest import mcp_client
from tests.console import csrf_of, sign_in
from tests.memo_calls import share, shared
from tests.oauth_flow import API, code_for, exchange, set_policy, tokens_for
from tests.people import with_own_memo
from tests.rest import bearer, edit, rest_client  # noqa: F401 (rest_client is the http fixture)
from tests.test_cli import run_beside

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
ASKED = {"to": ["ann@acme.test"], "text": "Helo Ann"}
FIXED = {"to": ["ann@acme.test"], "text": "Hello Ann"}


@pytest.fixture
async def bob(companion: Companion, demo_keys: Any) -> dict[str, str]:
    """Bob's agent key, his user key, and his personal Memo connection."""
    keys = await with_own_memo(companion, "bob@acme.test")
    memo.CALLS.clear()
    return keys


async def asked(app_client: Any, bob: dict[str, str], arguments: dict[str, Any] = ASKED) -> str:
    waiting = await share(app_client.transport, bob["agent"], arguments)
    assert waiting.structured_content["status"] == "approval_required"
    return str(waiting.structured_content["approval_id"])


async def test_an_edited_call_runs_once_with_the_changes_and_the_assistant_is_told(
    app_client: Any, http: httpx2.AsyncClient, bob: dict[str, str]
) -> None:
    approval_id = await asked(app_client, bob)
    answer = await edit(http, bob["user"], approval_id, FIXED)
    assert answer.status_code == 200, answer.text
    view = answer.json()
    assert view["status"] == "approved" and view["changed"] is True and view["decided_via"] == "api"
    assert view["changes"] == [{"field": "text", "from": "Helo Ann", "to": "Hello Ann"}]
    assert view["arguments"] == FIXED and view["original_arguments"] == ASKED
    assert "Hello Ann" in view["summary"] and "Helo Ann" not in view["summary"], "the summary is rendered again"
    assert shared() == [], "approving runs nothing by itself"

    ran = await share(app_client.transport, bob["agent"], ASKED)
    assert ran.is_error is False, ran.content
    assert shared() == [{**FIXED, "cc": [], "bcc": []}], "the assistant's retry runs the changed call"
    assert ran.content[0].text.startswith("Approved with changes: text 'Helo Ann' → 'Hello Ann'.")
    assert ran.structured_content["changes"] == view["changes"]
    assert ran.structured_content["shared_with"] == ["ann@acme.test"]

    again = await share(app_client.transport, bob["agent"], ASKED)
    with_the_changes = await share(app_client.transport, bob["agent"], FIXED)
    assert len(shared()) == 1, "neither the original retry nor one with the changed arguments runs it again"
    assert again.structured_content == ran.structured_content == with_the_changes.structured_content
    async with mcp_client(BASE, bob["agent"], transport=app_client.transport) as client:
        looked = await client.call_tool("companion_get_approval", {"approval_id": approval_id})
    assert looked.structured_content["changes"] == view["changes"] and looked.structured_content["status"] == (
        "succeeded"
    )
    assert len(shared()) == 1


async def test_the_audit_keeps_both_versions(
    app_client: Any, http: httpx2.AsyncClient, bob: dict[str, str], companion: Companion
) -> None:
    approval_id = await asked(app_client, bob)
    assert (await edit(http, bob["user"], approval_id, FIXED)).status_code == 200
    await companion.audit.flush()
    async with companion.db.session() as session:
        entries = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.approval_id == approval_id).order_by(AuditEntry.id)
            )
        )
        approval = await session.get(Approval, approval_id)
    assert approval is not None
    # The call's own row is written when its writer gets to it: only the approval's steps have an order here.
    steps = [entry for entry in entries if entry.event.startswith("approval.")]
    events = [entry.event for entry in steps]
    assert events[:3] == ["approval.requested", "approval.edited", "approval.approved"], events
    edited = steps[1]
    original, changed = arguments_digest(ASKED), arguments_digest(FIXED)
    assert edited.args_digest == changed == approval.args_digest and approval.original_digest == original
    assert f"original arguments {original}" in edited.reasons and "changed: text" in edited.reasons
    assert edited.actor_id == approval.edited_by == approval.user_id
    assert "Hello" not in str(edited.reasons), "values stay sealed, outside the hash"
    assert edited.sealed_arguments is not None
    both = companion.box.open_json(edited.sealed_arguments, context=audit_arguments_context(changed))
    assert both == {"original": ASKED, "edited": FIXED}


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"to": ["ann@acme.test"]}, "text"),
        ({"to": ["not an address"], "text": "Hello"}, "to"),
        ({"to": ["ann@acme.test"], "text": "Hello", "attach": "x"}, "attach"),
        ({"to": ["ann@acme.test"], "text": ""}, "text"),
    ],
)
async def test_an_invalid_edit_is_refused_naming_the_field_and_decides_nothing(
    app_client: Any, http: httpx2.AsyncClient, bob: dict[str, str], arguments: dict[str, Any], field: str
) -> None:
    approval_id = await asked(app_client, bob)
    refused = await edit(http, bob["user"], approval_id, arguments)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert any(name.split(".")[0].split("[")[0] == field for name in error["details"]["fields"]), error
    view = await http.get(f"/api/v1/approvals/{approval_id}", headers=bearer(bob["user"]))
    assert view.json()["status"] == "pending" and view.json()["changed"] is False


async def test_an_edit_a_workspace_rule_would_deny_is_refused(
    app_client: Any, http: httpx2.AsyncClient, bob: dict[str, str], demo_keys: Any
) -> None:
    rule = {
        "effect": "deny", "scope": "workspace", "app": "memo", "tool": "memo_share_note",
        "conditions": [{"arg": "@recipients", "op": "domain_in", "value": ["evil.test"]}],
        "description": "Never share notes with evil.test",
    }  # fmt: skip
    made = await http.post("/api/v1/rules", headers=bearer(demo_keys.user_keys["admin@acme.test"]), json=rule)
    assert made.status_code == 201, made.text
    approval_id = await asked(app_client, bob)
    refused = await edit(http, bob["user"], approval_id, {"to": ["eve@evil.test"], "text": "Hello"})
    assert refused.status_code == 403, refused.text
    assert "Never share notes with evil.test" in refused.json()["error"]["message"]
    view = await http.get(f"/api/v1/approvals/{approval_id}", headers=bearer(bob["user"]))
    assert view.json()["status"] == "pending"


async def test_the_agent_can_never_edit(
    app_client: Any, http: httpx2.AsyncClient, bob: dict[str, str], demo_keys: Any
) -> None:
    """Not with its agent key, not with an OAuth token an admin let decide approvals, and not over MCP."""
    approval_id = await asked(app_client, bob)
    by_agent = await edit(http, bob["agent"], approval_id, FIXED)
    assert by_agent.status_code == 403 and by_agent.json()["error"]["code"] == "forbidden"

    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        client_id, _ = await tokens_for(http, browser, scope="api:read approvals", resource=API, email="bob@acme.test")
        await set_policy(http, demo_keys, client_id, may_decide=True)
        code, verifier = await code_for(browser, client_id, scope="api:read approvals", resource=API)
        token = (await exchange(http, client_id, code, verifier, resource=API)).json()
    assert token["scope"] == "api:read approvals"
    listed = await http.get("/api/v1/approvals", headers=bearer(token["access_token"]))
    assert listed.status_code == 200, "the token may decide"
    by_token = await edit(http, token["access_token"], approval_id, FIXED)
    assert by_token.status_code == 403 and "Only a person" in by_token.json()["error"]["message"]

    async with mcp_client(BASE, bob["agent"], transport=app_client.transport) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
    assert not [name for name in names if "edit" in name or "approve" in name], names
    view = await http.get(f"/api/v1/approvals/{approval_id}", headers=bearer(bob["user"]))
    assert view.json()["status"] == "pending" and view.json()["changed"] is False
    assert shared() == []


async def test_someone_who_may_not_approve_cannot_edit(
    app_client: Any, http: httpx2.AsyncClient, bob: dict[str, str], demo_keys: Any
) -> None:
    approval_id = await asked(app_client, bob)
    alice = await edit(http, demo_keys.user_keys["alice@acme.test"], approval_id, FIXED)
    admin = await edit(http, demo_keys.user_keys["admin@acme.test"], approval_id, FIXED)
    assert alice.status_code == 404 and admin.status_code == 404, "another's call on a personal connection"
    assert (await edit(http, bob["user"], "apr_missing", FIXED)).status_code == 404


async def test_an_edit_after_a_decision_is_refused(
    app_client: Any, http: httpx2.AsyncClient, bob: dict[str, str]
) -> None:
    approval_id = await asked(app_client, bob)
    denied = await http.post(f"/api/v1/approvals/{approval_id}/deny", headers=bearer(bob["user"]), json={})
    assert denied.status_code == 200
    late = await edit(http, bob["user"], approval_id, FIXED)
    assert late.status_code == 409 and "denied" in late.json()["error"]["message"]


async def test_an_edit_to_the_same_arguments_approves_the_call_as_asked(
    app_client: Any, http: httpx2.AsyncClient, bob: dict[str, str]
) -> None:
    approval_id = await asked(app_client, bob)
    same = await edit(http, bob["user"], approval_id, {"text": "Helo Ann", "to": ["ANN@acme.test"]})
    assert same.status_code == 200, same.text
    assert same.json()["status"] == "approved" and same.json()["changed"] is False


async def test_the_console_form_edits_and_approves(
    app_client: Any, http: httpx2.AsyncClient, bob: dict[str, str]
) -> None:
    approval_id = await asked(app_client, bob)
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, "bob@acme.test")
        card = await browser.get(f"/approvals/{approval_id}")
        assert f'href="/approvals/{approval_id}/edit">Edit before approving</a>' in card.text
        form = await browser.get(f"/approvals/{approval_id}/edit")
        assert form.status_code == 200
        assert 'name="arg.to"' in form.text and ">ann@acme.test</textarea>" in form.text
        assert 'name="arg.text"' in form.text and ">Helo Ann</textarea>" in form.text, "prose gets a text area"
        data = {"csrf": csrf_of(form.text), "arg.to": "ann@acme.test\r\nbo@acme.test", "arg.text": "Hello Ann"}
        bad = await browser.post(f"/approvals/{approval_id}/edit", data={**data, "arg.to": "nobody"})
        assert bad.status_code == 422 and 'class="field-error"' in bad.text and "nobody" in bad.text
        done = await browser.post(f"/approvals/{approval_id}/edit", data=data)
        assert done.status_code == 303 and done.headers["location"] == f"/approvals/{approval_id}"
        page = await browser.get(f"/approvals/{approval_id}")
    assert "Approved with your changes" in page.text and "approved with changes" in page.text
    ran = await share(app_client.transport, bob["agent"], ASKED)
    assert ran.structured_content["shared_with"] == ["ann@acme.test", "bo@acme.test"]
    assert len(shared()) == 1 and shared()[0]["text"] == "Hello Ann"


async def test_the_cli_edits_and_decides_several(app_client: Any, demo_keys: Any, env: dict[str, str]) -> None:
    """Through the workspace's Harmony connection: the CLI's own process knows only the shipped apps."""

    async def item(text: str) -> str:
        async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=app_client.transport) as client:
            waiting = await client.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": text})
        return str(waiting.structured_content["approval_id"])

    first, second, third = await item("Helo Ann"), await item("ask Bo"), await item("ask Cy")
    acting = ("--workspace", "acme", "--as", "alice@acme.test")
    bad = await run_beside(env, "approvals", "edit", first, '{"meeting_id": "mtg_x"}', *acting)
    assert bad.returncode == 1 and "arguments: text" in bad.stderr, bad.stderr
    fixed = '{"meeting_id": "mtg_x", "text": "Hello Ann"}'
    edited = await run_beside(env, "approvals", "edit", first, fixed, *acting)
    assert edited.returncode == 0, edited.stderr
    assert edited.stdout.strip() == f"{first} is approved with changes: text 'Helo Ann' → 'Hello Ann'"
    several = await run_beside(env, "approvals", "deny", second, third, first, "--reason", "not now", *acting)
    assert several.returncode == 1 and f"{second}  decided: Denied." in several.stdout
    assert f"{first}  refused:" in several.stdout and "already approved" in several.stdout
    listed = await run_beside(env, "approvals", "list", "--status", "all", *acting)
    assert "approved with changes" in listed.stdout

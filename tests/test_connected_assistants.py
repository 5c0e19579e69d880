"""Connected assistants: a person sees and revokes the assistants they signed in with OAuth, an admin decides
about each assistant for the workspace, and the assistant's name goes wherever a key's name went.

The assistant registers and the person consents as in ``test_oauth_server``, through ``tests.oauth_flow``;
everything runs in process, through the real app.
"""

from __future__ import annotations

import csv
import io
import logging
from email import message_from_bytes, policy
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from server.app import Companion
from server.services import demo
from store.directory import user_by_email, workspace_by_slug
from store.keys import create_key
from store.models import Approval, AssistantGrant, AuditEntry, KeyKind
from tests.apps import memo
from tests.conftest import mcp_client
from tests.console import csrf_of, form_post, sign_in
from tests.memo_connections import connect_personal_memo
from tests.oauth_flow import (  # noqa: F401 (the http, browser and browser_of fixtures)
    ADMIN,
    ALICE,
    API,
    BASE,
    alices_browser,
    assistant_http,
    browsers_of_others,
    code_for,
    exchange,
    refresh,
    register,
    set_policy,
    tokens_for,
    tools_work,
)
from tests.rest import bearer
from tests.test_console_settings import mailing, postbox  # noqa: F401 (fixtures)

pytestmark = pytest.mark.anyio

BOB = "bob@acme.test"


def person(demo_keys: demo.DemoKeys, email: str) -> dict[str, str]:
    """The headers of a person's own user key."""
    return bearer(demo_keys.user_keys[email])


async def test_a_person_lists_and_revokes_an_assistant_and_its_token_stops_at_once(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion, demo_keys: Any
) -> None:
    client_id, tokens = await tokens_for(http, browser)
    assert await tools_work(app_client, tokens["access_token"])
    listed = await http.get("/api/v1/assistants", headers=person(demo_keys, ALICE))
    assert listed.status_code == 200, listed.text
    [mine] = listed.json()["data"]
    assert (mine["name"], mine["client_id"], mine["kind"], mine["scopes"]) == (
        "Test Assistant",
        client_id,
        "registered",
        ["tools"],
    )
    assert mine["id"].startswith("agr_") and mine["holds_tokens"] and mine["last_used_at"] and mine["consented_at"]
    assert not mine["person_facing"] and not mine["blocked"]

    revoked = await http.delete(f"/api/v1/assistants/{mine['id']}", headers=person(demo_keys, ALICE))
    assert revoked.status_code == 204, revoked.text
    assert await companion.principal_for(tokens["access_token"]) is None, "no replica keeps a revoked token"
    assert not await tools_work(app_client, tokens["access_token"])
    assert (await refresh(http, client_id, tokens["refresh_token"])).status_code == 400
    assert (await http.get("/api/v1/assistants", headers=person(demo_keys, ALICE))).json()["data"] == []
    again = await http.delete(f"/api/v1/assistants/{mine['id']}", headers=person(demo_keys, ALICE))
    assert again.status_code == 404


async def test_the_console_page_lists_and_revokes_them_too(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    _, tokens = await tokens_for(http, browser, scope="tools api:read", resource=BASE)
    page = await browser.get("/assistants")
    assert page.status_code == 200
    assert "Test Assistant" in page.text and "api:read" in page.text and "Revoke" in page.text
    assert 'href="/assistants" aria-current="page"' in page.text, "the sidebar names the page"
    assert "Assistants in" not in page.text, "a member sees no one else's"
    async with companion.db.session() as session:
        grant_id = await session.scalar(select(AssistantGrant.id))
    forged = await browser.post(f"/assistants/{grant_id}/revoke", data={})
    assert forged.status_code == 403 and await tools_work(app_client, tokens["access_token"]), "CSRF is checked"
    done = await browser.post(f"/assistants/{grant_id}/revoke", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 303 and done.headers["location"] == "/assistants"
    assert not await tools_work(app_client, tokens["access_token"])
    after = await browser.get("/assistants")
    assert "can no longer act for you" in after.text and "You have not signed any assistant in" in after.text


async def test_a_member_cannot_see_or_revoke_anothers_assistant_nor_set_a_policy(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, browser_of: Any, companion: Companion,
    demo_keys: Any,
) -> None:  # fmt: skip
    client_id, tokens = await tokens_for(http, browser)
    [alices] = (await http.get("/api/v1/assistants", headers=person(demo_keys, ALICE))).json()["data"]
    async with companion.db.transaction() as session:
        workspace, member = await workspace_by_slug(session, "acme"), await user_by_email(session, BOB)
        bobs_key = await create_key(session, workspace_id=workspace.id, user_id=member.id, kind=KeyKind.USER)
    bob = bearer(bobs_key.token)
    assert (await http.get("/api/v1/assistants", headers=bob)).json()["data"] == []
    assert (await http.delete(f"/api/v1/assistants/{alices['id']}", headers=bob)).status_code == 404
    assert (await http.get("/api/v1/workspace/assistants", headers=bob)).status_code == 403
    body = {"client_id": client_id, "blocked": True, "person_facing": "default", "may_decide": False}
    assert (await http.put("/api/v1/workspace/assistants/policy", headers=bob, json=body)).status_code == 403
    bobs_browser = await browser_of(BOB)
    revoke = await form_post(bobs_browser, "/assistants", f"/assistants/{alices['id']}/revoke")
    assert revoke.status_code == 404
    block = await form_post(
        bobs_browser, "/assistants", "/assistants/policy", {"client_id": client_id, "part": "block", "blocked": "on"}
    )
    assert block.status_code == 403
    assert await tools_work(app_client, tokens["access_token"]), "Alice's assistant is untouched"


async def test_an_admin_who_blocks_an_assistant_stops_it_for_everyone(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, browser_of: Any, companion: Companion,
    demo_keys: Any,
) -> None:  # fmt: skip
    client = await register(http)
    client_id = client["client_id"]
    issued = {}
    for email, signed_in in ((ALICE, browser), (BOB, await browser_of(BOB))):
        code, verifier = await code_for(signed_in, client_id, email=email)
        answer = await exchange(http, client_id, code, verifier)
        assert answer.status_code == 200, answer.text
        issued[email] = answer.json()["access_token"]
    everyone = (await http.get("/api/v1/workspace/assistants", headers=person(demo_keys, ADMIN))).json()
    assert sorted(grant["person"] for grant in everyone["grants"]) == [ALICE, BOB]
    assert [(p["client_id"], p["people"], p["blocked"]) for p in everyone["policies"]] == [(client_id, 2, False)]

    blocked = await set_policy(http, demo_keys, client_id, blocked=True)
    assert blocked["blocked"] and blocked["name"] == "Test Assistant" and blocked["updated_at"]
    for token in issued.values():
        assert await companion.principal_for(token) is None
        assert not await tools_work(app_client, token)
    [alices] = (await http.get("/api/v1/assistants", headers=person(demo_keys, ALICE))).json()["data"]
    assert alices["blocked"], "she sees why it stopped"

    admins_browser = await browser_of(ADMIN)
    page = await admins_browser.get("/assistants")
    assert "Assistants in" in page.text and "Unblock" in page.text and f"on behalf of</span> {BOB}" in page.text
    unblocked = await form_post(
        admins_browser, "/assistants", "/assistants/policy", {"client_id": client_id, "part": "block", "blocked": "off"}
    )
    assert unblocked.status_code == 303
    assert all([await tools_work(app_client, token) for token in issued.values()]), "unblocking lets them work again"


async def test_an_admin_who_forbids_person_facing_overrides_what_the_person_said(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion, demo_keys: Any
) -> None:
    client_id, tokens = await tokens_for(http, browser, person_facing=True)
    before = await companion.principal_for(tokens["access_token"])
    assert before is not None and before.person_facing
    await set_policy(http, demo_keys, client_id, person_facing="forbidden")
    after = await companion.principal_for(tokens["access_token"])
    assert after is not None and not after.person_facing
    [mine] = (await http.get("/api/v1/assistants", headers=person(demo_keys, ALICE))).json()["data"]
    assert mine["person_facing"] and not mine["person_facing_in_effect"]
    await set_policy(http, demo_keys, client_id, person_facing="allowed")
    allowed = await companion.principal_for(tokens["access_token"])
    assert allowed is not None and allowed.person_facing


async def test_may_decide_reaches_a_token_only_after_the_person_consents_again(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, demo_keys: Any
) -> None:
    client_id, first = await tokens_for(http, browser, scope="api:read approvals", resource=API)
    assert first["scope"] == "api:read", "no admin allowed it yet"
    assert (await http.get("/api/v1/approvals", headers=bearer(first["access_token"]))).status_code == 403
    await set_policy(http, demo_keys, client_id, may_decide=True)
    assert (await http.get("/api/v1/approvals", headers=bearer(first["access_token"]))).status_code == 403
    code, verifier = await code_for(browser, client_id, scope="api:read approvals", resource=API)
    second = (await exchange(http, client_id, code, verifier, resource=API)).json()
    assert second["scope"] == "api:read approvals"
    assert (await http.get("/api/v1/approvals", headers=bearer(second["access_token"]))).status_code == 200
    await set_policy(http, demo_keys, client_id, may_decide=False)
    taken = await http.get("/api/v1/approvals", headers=bearer(second["access_token"]))
    assert taken.status_code == 403, "turning it off takes the scope from the token at once"


@pytest.mark.parametrize("email", [ALICE, ADMIN])
async def test_an_assistants_own_token_cannot_manage_assistants(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, demo_keys: Any, email: str
) -> None:
    client_id, tokens = await tokens_for(http, browser, scope="api:read api:write", resource=API, email=email)
    [grant] = (await http.get("/api/v1/assistants", headers=person(demo_keys, email))).json()["data"]
    body = {"client_id": client_id, "blocked": False, "person_facing": "allowed", "may_decide": True}
    for credential in (tokens["access_token"], demo_keys.keys[email]):
        for method, path, payload in (
            ("GET", "/api/v1/assistants", None),
            ("DELETE", f"/api/v1/assistants/{grant['id']}", None),
            ("GET", "/api/v1/workspace/assistants", None),
            ("PUT", "/api/v1/workspace/assistants/policy", body),
        ):
            answer = await http.request(method, path, headers=bearer(credential), json=payload)
            assert answer.status_code == 403, (credential[:4], method, path, answer.text)
            assert answer.json()["error"]["code"] == "forbidden"
    [still] = (await http.get("/api/v1/assistants", headers=person(demo_keys, email))).json()["data"]
    assert still["id"] == grant["id"] and not still["person_facing"]


async def test_the_assistants_name_goes_to_the_inbox_the_api_the_audit_log_and_the_logs(
    app_client: Any,
    http: httpx2.AsyncClient,
    browser: httpx2.AsyncClient,
    companion: Companion,
    demo_keys: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, tokens = await tokens_for(http, browser)
    with caplog.at_level(logging.INFO, logger="server.services.tool_gateway"):
        async with app_client(tokens["access_token"]) as assistant:
            waiting = await assistant.call_tool(
                "harmony_create_action_item", {"meeting_id": "mtg_x", "text": "Call Erin"}
            )
    approval_id = waiting.structured_content["approval_id"]
    [logged] = [record for record in caplog.records if record.name == "server.services.tool_gateway"]
    assert (logged.__dict__["assistant"], logged.__dict__["key_id"][:4]) == ("Test Assistant", "agr_")
    inbox = await browser.get("/inbox")
    assert "Test Assistant on behalf of you" in inbox.text
    page = await browser.get(f"/approvals/{approval_id}")
    assert "Test Assistant on behalf of you" in page.text
    rest = await http.get(f"/api/v1/approvals/{approval_id}", headers=person(demo_keys, ALICE))
    assert rest.json()["assistant"] == "Test Assistant"

    await companion.audit.flush()
    async with companion.db.session() as session:
        entries = list(await session.scalars(select(AuditEntry).where(AuditEntry.approval_id == approval_id)))
    assert {(entry.event, entry.assistant) for entry in entries} == {
        ("approval.requested", "Test Assistant"),
        ("call", "Test Assistant"),
    }
    audit = await browser.get("/audit")
    assert "Test Assistant on behalf of" in audit.text
    exported = list(csv.DictReader(io.StringIO((await browser.get("/audit.csv")).text)))
    assert {row["assistant"] for row in exported if row["approval_id"] == approval_id} == {"Test Assistant"}


async def test_an_api_key_names_its_assistant_by_the_keys_name(
    app_client: Any, http: httpx2.AsyncClient, browser_of: Any, demo_keys: Any
) -> None:
    async with app_client(demo_keys.keys[ALICE]) as assistant:
        waiting = await assistant.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": "Call Erin"})
    alice = await browser_of(ALICE)
    card = await alice.get(f"/approvals/{waiting.structured_content['approval_id']}")
    assert "demo agent key on behalf of you" in card.text


async def test_the_approval_email_names_the_assistant(mailing: Any, demo_keys: Any) -> None:  # noqa: F811
    companion, transport, box = mailing
    async with httpx2.AsyncClient(transport=transport, base_url=BASE) as browser:
        await sign_in(browser, ALICE)
        saved = await form_post(browser, "/settings", "/settings/notifications", {"notify_approvals": "on"})
        assert saved.status_code == 303
        async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
            _, tokens = await tokens_for(http, browser)
    async with mcp_client(BASE, tokens["access_token"], transport=transport) as assistant:
        await assistant.call_tool("harmony_create_action_item", {"meeting_id": "mtg_x", "text": "Call Erin"})
    await companion.notices.drain()
    [(_, raw)] = box.messages
    body = message_from_bytes(raw, policy=policy.default).get_payload(decode=True).decode()
    assert body.startswith("An approval is waiting for you in Harmony.")
    assert 'Asked by: "Test Assistant on behalf of you"' in body


async def test_an_oauth_call_approved_then_allowed_by_a_rule_runs_once(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion, demo_keys: Any
) -> None:
    async with companion.db.transaction() as session:
        alice = await user_by_email(session, ALICE)
        await connect_personal_memo(session, companion.box, alice.id)
    memo.CALLS.clear()
    memo.RUNS.clear()
    _, tokens = await tokens_for(http, browser)
    rule = {"effect": "allow", "scope": "user", "app": "memo", "tool": "memo_add_note"}
    async with app_client(tokens["access_token"]) as assistant:
        waiting = await assistant.call_tool("memo_add_note", {"text": "pay invoice 9"})
        approval_id = waiting.structured_content["approval_id"]
        approved = await http.post(
            f"/api/v1/approvals/{approval_id}/approve", headers=person(demo_keys, ALICE), json={}
        )
        assert approved.status_code == 200, approved.text
        added = await http.post("/api/v1/rules", headers=person(demo_keys, ALICE), json=rule)
        assert added.status_code == 201, added.text
        ran = await assistant.call_tool("memo_add_note", {"text": "pay invoice 9"})
        again = await assistant.call_tool("memo_add_note", {"text": "pay invoice 9"})
    assert [approval_id] == memo.RUNS, "it ran once, through the approval the person gave"
    assert again.structured_content == ran.structured_content
    async with companion.db.session() as session:
        approval = await session.get(Approval, approval_id)
        grant = await session.scalar(select(AssistantGrant))
    assert approval is not None and approval.status.value == "succeeded" and approval.assistant == "Test Assistant"
    assert grant is not None and grant.last_asked_at is not None

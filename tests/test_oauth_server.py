"""Companion's own OAuth 2.1 authorization server, as an assistant and a person meet it.

The assistant registers (or names its metadata document), sends the person to ``/authorize``, and exchanges the
code it gets back; the person signs in and answers the consent page. Every refusal the issue lists has a test.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from server.app import Companion
from store.directory import user_by_email
from store.models import Approval, AssistantClient
from tests.console import csrf_of, sign_in
from tests.memo_connections import connect_personal_memo
from tests.oauth_browser import authorize_url, consent, open_consent, pkce, query_of, sealed_request_of
from tests.oauth_flow import (  # noqa: F401 (the http and browser fixtures)
    ALICE,
    API,
    BASE,
    MCP,
    REDIRECT,
    alices_browser,
    assistant_http,
    code_for,
    exchange,
    refresh,
    register,
    store_policy,
    tokens_for,
    tools_work,
)

pytestmark = pytest.mark.anyio


async def test_the_metadata_names_what_the_server_supports(http: httpx2.AsyncClient) -> None:
    metadata = (await http.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["issuer"] == BASE
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert "none" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["client_id_metadata_document_supported"] is True
    assert set(metadata["scopes_supported"]) == {"tools", "api:read", "api:write", "approvals"}
    assert metadata["registration_endpoint"] == f"{BASE}/register"
    assert metadata["revocation_endpoint"] == f"{BASE}/revoke"
    resource = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert resource["resource"] == MCP and resource["authorization_servers"] == [BASE]
    rest = (await http.get("/.well-known/oauth-protected-resource/api/v1")).json()
    assert rest["resource"] == API and "api:read" in rest["scopes_supported"]


async def test_a_person_signs_an_assistant_in_and_it_calls_tools_as_them(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    _, tokens = await tokens_for(http, browser)
    assert tokens["token_type"] == "Bearer" and tokens["scope"] == "tools" and tokens["refresh_token"]
    async with app_client(tokens["access_token"]) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert "harmony_list_meetings" in names
        result = await session.call_tool("harmony_list_meetings", {})
        assert not result.is_error
    principal = await companion.principal_for(tokens["access_token"])
    assert principal is not None and principal.email == ALICE and principal.assistant == "Test Assistant"
    assert principal.audience == MCP and principal.key_id.startswith("agr_") and not principal.person_facing


async def test_a_code_works_once_and_its_reuse_revokes_what_it_gave(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client = await register(http)
    code, verifier = await code_for(browser, client["client_id"])
    first = await exchange(http, client["client_id"], code, verifier)
    assert first.status_code == 200
    assert await tools_work(app_client, first.json()["access_token"])
    again = await exchange(http, client["client_id"], code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert not await tools_work(app_client, first.json()["access_token"]), "a replayed code takes back its tokens"
    assert (await refresh(http, client["client_id"], first.json()["refresh_token"])).status_code == 400


async def test_a_refresh_token_rotates_and_its_reuse_revokes_the_family(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client_id, tokens = await tokens_for(http, browser)
    renewed = await refresh(http, client_id, tokens["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    fresh = renewed.json()
    assert fresh["refresh_token"] != tokens["refresh_token"] and fresh["scope"] == "tools"
    assert await tools_work(app_client, fresh["access_token"])
    replayed = await refresh(http, client_id, tokens["refresh_token"])
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"
    assert not await tools_work(app_client, fresh["access_token"]), "the whole family is revoked"
    assert (await refresh(http, client_id, fresh["refresh_token"])).status_code == 400


async def test_a_wrong_or_missing_pkce_verifier_is_refused(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client = await register(http)
    code, _ = await code_for(browser, client["client_id"])
    wrong = await exchange(http, client["client_id"], code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    missing = await http.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client["client_id"],
        },
    )
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    no_challenge = await http.get(
        "/authorize", params={"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT}
    )
    assert no_challenge.status_code == 302
    assert query_of(no_challenge.headers["location"])["error"] == "invalid_request"
    plain = await http.get(
        "/authorize",
        params={
            "response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
            "code_challenge": "x" * 43, "code_challenge_method": "plain",
        },
    )  # fmt: skip
    assert query_of(plain.headers["location"])["error"] == "invalid_request", "only S256"


@pytest.mark.parametrize(
    "redirect",
    [
        "http://127.0.0.1:33418/callback/",
        "http://127.0.0.1:33419/callback",
        "http://127.0.0.1:33418/callback?x=1",
        "http://localhost:33418/callback",
        "https://evil.example/callback",
    ],
)
async def test_a_redirect_uri_that_does_not_match_exactly_is_refused_without_redirecting(
    http: httpx2.AsyncClient, redirect: str
) -> None:
    client = await register(http)
    _, challenge = pkce()
    answer = await http.get(
        "/authorize",
        params={
            "response_type": "code", "client_id": client["client_id"], "redirect_uri": redirect,
            "code_challenge": challenge, "state": "s",
        },
    )  # fmt: skip
    assert answer.status_code == 400 and "location" not in answer.headers
    assert answer.json()["error"] == "invalid_request"


async def test_a_resource_for_another_server_is_refused(http: httpx2.AsyncClient, browser: httpx2.AsyncClient) -> None:
    client = await register(http)
    _, challenge = pkce()
    answer = await http.get(
        "/authorize",
        params={
            "response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT,
            "code_challenge": challenge, "state": "s", "resource": "https://other.example/mcp",
        },
    )  # fmt: skip
    assert answer.status_code == 302
    params = query_of(answer.headers["location"])
    assert params["error"] == "invalid_target" and params["iss"] == BASE and params["state"] == "s"
    code, verifier = await code_for(browser, client["client_id"])
    elsewhere = await exchange(http, client["client_id"], code, verifier, resource="https://other.example/mcp")
    assert elsewhere.status_code == 400 and elsewhere.json()["error"] == "invalid_target"


async def test_a_token_works_only_at_its_audience(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    _, for_api = await tokens_for(http, browser, scope="tools api:read", resource=API)
    assert not await tools_work(app_client, for_api["access_token"]), "an API token is not accepted at /mcp"
    meetings = await http.get("/api/v1/meetings", headers={"Authorization": f"Bearer {for_api['access_token']}"})
    assert meetings.status_code == 200
    _, for_mcp = await tokens_for(http, browser, scope="tools api:read", resource=MCP)
    refused = await http.get("/api/v1/meetings", headers={"Authorization": f"Bearer {for_mcp['access_token']}"})
    assert refused.status_code == 401, "an MCP token is not accepted by the REST API"
    _, for_both = await tokens_for(http, browser, scope="tools api:read", resource=BASE)
    assert await tools_work(app_client, for_both["access_token"])
    both = await http.get("/api/v1/meetings", headers={"Authorization": f"Bearer {for_both['access_token']}"})
    assert both.status_code == 200


async def test_the_rest_api_needs_the_scope(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    _, tools_only = await tokens_for(http, browser, scope="tools", resource=BASE)
    bearer = {"Authorization": f"Bearer {tools_only['access_token']}"}
    assert (await http.get("/api/v1/meetings", headers=bearer)).status_code == 403
    client_id, reader = await tokens_for(http, browser, scope="api:read approvals", resource=API)
    bearer = {"Authorization": f"Bearer {reader['access_token']}"}
    assert (await http.get("/api/v1/meetings", headers=bearer)).status_code == 200
    upload = await http.post("/api/v1/meetings/upload", headers=bearer, files={"transcript": ("t.txt", b"hi")})
    assert upload.status_code == 403, "uploading needs api:write"
    rule = await http.post("/api/v1/rules", headers=bearer, json={"effect": "allow", "scope": "personal"})
    assert rule.status_code == 403, "rules are a person's alone"
    approvals = await http.get("/api/v1/approvals", headers=bearer)
    assert approvals.status_code == 403, "approvals need an admin's grant to this assistant"
    await store_policy(companion, client_id, may_decide=True)
    assert (await http.get("/api/v1/approvals", headers=bearer)).status_code == 403, "consent was given without it"
    code, verifier = await code_for(browser, client_id, scope="api:read approvals", resource=API)
    granted = (await exchange(http, client_id, code, verifier, resource=API)).json()
    assert granted["scope"] == "api:read approvals"
    bearer = {"Authorization": f"Bearer {granted['access_token']}"}
    assert (await http.get("/api/v1/approvals", headers=bearer)).status_code == 200


async def test_a_metadata_document_on_a_private_address_is_refused(
    http: httpx2.AsyncClient, companion: Companion
) -> None:
    _, challenge = pkce()
    for client_id in ("https://127.0.0.1/client.json", "https://10.0.0.7/client.json", "http://127.0.0.1/c.json"):
        answer = await http.get(
            "/authorize",
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT,
                "code_challenge": challenge,
            },
        )
        assert answer.status_code == 400 and "location" not in answer.headers, client_id
    async with companion.db.session() as session:
        assert (await session.scalar(select(AssistantClient.id))) is None, "nothing was fetched or kept"


async def test_a_consent_post_without_csrf_is_refused(http: httpx2.AsyncClient, browser: httpx2.AsyncClient) -> None:
    client = await register(http)
    _, challenge = pkce()
    url = authorize_url(BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge)
    page = await open_consent(browser, url, email=ALICE)
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    forged = await browser.post("/oauth/consent", data={"request": sealed_request_of(page.text), "decision": "allow"})
    assert forged.status_code == 403 and "location" not in forged.headers


async def test_nothing_redirects_anywhere_the_client_did_not_register(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    refused = await http.post(
        "/register",
        json={"client_name": "x", "redirect_uris": ["javascript:alert(1)"], "token_endpoint_auth_method": "none"},
    )
    assert refused.status_code == 400
    web_on_http = await http.post(
        "/register",
        json={
            "redirect_uris": ["http://evil.example/cb"],
            "application_type": "web",
            "token_endpoint_auth_method": "none",
        },
    )
    assert web_on_http.status_code == 400
    client = await register(http)
    _, challenge = pkce()
    url = authorize_url(BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge)
    page = await open_consent(browser, url, email=ALICE)
    sealed = sealed_request_of(page.text)
    tampered = sealed[:10] + ("A" if sealed[10] != "A" else "B") + sealed[11:]

    answer = await browser.post(
        "/oauth/consent", data={"csrf": csrf_of(page.text), "request": tampered, "decision": "allow"}
    )
    assert answer.status_code == 400 and "location" not in answer.headers
    for target in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
        async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as stranger:
            signed = await sign_in(stranger, ALICE, next_path=target)
        assert signed.headers["location"] == "/", target


async def test_revocation_stops_a_token_at_once(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client_id, tokens = await tokens_for(http, browser)
    assert await tools_work(app_client, tokens["access_token"])
    revoked = await http.post("/revoke", data={"token": tokens["access_token"], "client_id": client_id})
    assert revoked.status_code == 200
    assert not await tools_work(app_client, tokens["access_token"])
    assert (await refresh(http, client_id, tokens["refresh_token"])).status_code == 400, "its family goes with it"


async def test_consent_is_remembered_per_scope(http: httpx2.AsyncClient, browser: httpx2.AsyncClient) -> None:
    client = await register(http)
    await code_for(browser, client["client_id"], scope="tools")
    _, challenge = pkce()
    again = await open_consent(
        browser,
        authorize_url(
            BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge, scope="tools"
        ),
        email=ALICE,
    )
    assert again.status_code == 303 and "code" in query_of(again.headers["location"]), "no second question"
    wider = await open_consent(
        browser,
        authorize_url(
            BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge, scope="tools api:read"
        ),
        email=ALICE,
    )
    assert wider.status_code == 200 and "api:read" in wider.text, "a new scope is asked"


async def test_a_denied_consent_sends_access_denied_back(http: httpx2.AsyncClient, browser: httpx2.AsyncClient) -> None:
    client = await register(http)
    _, challenge = pkce()
    back = await consent(
        browser,
        authorize_url(BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge, state="z"),
        email=ALICE,
        decision="deny",
    )
    assert query_of(back) == {"error": "access_denied", "iss": BASE, "state": "z"}


async def test_person_facing_is_the_persons_word_at_consent(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    _, tokens = await tokens_for(http, browser, person_facing=True)
    principal = await companion.principal_for(tokens["access_token"])
    assert principal is not None and principal.person_facing


async def test_an_admin_block_stops_the_assistant_for_everyone(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    client_id, tokens = await tokens_for(http, browser)
    await store_policy(companion, client_id, blocked=True)
    assert not await tools_work(app_client, tokens["access_token"])
    assert (await refresh(http, client_id, tokens["refresh_token"])).status_code == 400
    _, challenge = pkce()
    page = await open_consent(
        browser, authorize_url(BASE, client_id=client_id, redirect_uri=REDIRECT, code_challenge=challenge), email=ALICE
    )
    assert page.status_code == 200 and "blocked this assistant" in page.text


@pytest.mark.settings(oauth_registrations_per_window=2)
async def test_registration_is_rate_limited_per_address(http: httpx2.AsyncClient) -> None:
    await register(http)
    await register(http)
    third = await http.post("/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
    assert third.status_code == 429 and int(third.headers["retry-after"]) > 0


async def test_a_confidential_client_authenticates_with_its_secret(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client = await register(http, token_endpoint_auth_method="client_secret_post")
    assert client["client_secret"]
    code, verifier = await code_for(browser, client["client_id"])
    no_secret = await exchange(http, client["client_id"], code, verifier)
    assert no_secret.status_code == 401
    answer = await exchange(http, client["client_id"], code, verifier, client_secret=client["client_secret"])
    assert answer.status_code == 200, answer.text


async def test_an_assistant_allowed_to_decide_never_decides_its_own_calls(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion, demo_keys: Any
) -> None:
    async with companion.db.transaction() as session:
        alice = await user_by_email(session, ALICE)
        assert alice is not None
        await connect_personal_memo(session, companion.box, alice.id)
    client = await register(http)
    await store_policy(companion, client["client_id"], may_decide=True)
    code, verifier = await code_for(browser, client["client_id"], scope="tools approvals", resource=BASE)
    tokens = (await exchange(http, client["client_id"], code, verifier, resource=BASE)).json()
    assert tokens["scope"] == "tools approvals"
    decider = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with app_client(tokens["access_token"]) as assistant:
        own = (await assistant.call_tool("memo_add_note", {"text": "mine"})).structured_content["approval_id"]
    async with app_client(demo_keys.keys[ALICE]) as other:
        others = (await other.call_tool("memo_add_note", {"text": "theirs"})).structured_content["approval_id"]
    refused = await http.post(f"/api/v1/approvals/{own}/approve", headers=decider, json={})
    assert refused.status_code == 403, "its own call waits for a person"
    remembered = await http.post(f"/api/v1/approvals/{others}/approve", headers=decider, json={"remember": "30d"})
    assert remembered.status_code == 403, "remembering writes a rule, which is a person's"
    approved = await http.post(f"/api/v1/approvals/{others}/approve", headers=decider, json={})
    assert approved.status_code == 200 and approved.json()["status"] == "approved", approved.text


async def test_a_redirect_uri_without_a_path_is_the_same_uri(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    """``http://127.0.0.1:33419`` and its normalised ``http://127.0.0.1:33419/`` are one redirect URI."""
    client = await register(http, redirect_uris=["http://127.0.0.1:33419"])
    _, challenge = pkce()
    back = await consent(
        browser,
        authorize_url(
            BASE, client_id=client["client_id"], redirect_uri="http://127.0.0.1:33419", code_challenge=challenge
        ),
        email=ALICE,
    )
    assert back.startswith("http://127.0.0.1:33419") and "code=" in back


async def test_an_assistant_allowed_to_decide_cannot_decide_what_it_asked_for_another_person(
    app_client: Any, http: httpx2.AsyncClient, companion: Companion, demo_keys: Any
) -> None:
    """One assistant signed in by Alice and by an admin: the admin's token may decide approvals, but not the
    call the same assistant asked in Alice's name. "Itself" is the client, whoever signed it in."""
    async with companion.db.transaction() as session:
        alice = await user_by_email(session, ALICE)
        assert alice is not None
        await connect_personal_memo(session, companion.box, alice.id)
    client = await register(http)
    await store_policy(companion, client["client_id"], may_decide=True)
    tokens = {}
    for email in (ALICE, "admin@acme.test"):
        async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as someone:
            code, verifier = await code_for(
                someone, client["client_id"], scope="tools approvals", resource=BASE, email=email
            )
        answer = await exchange(http, client["client_id"], code, verifier, resource=BASE)
        tokens[email] = answer.json()["access_token"]
    async with app_client(tokens[ALICE]) as assistant:
        asked = (await assistant.call_tool("memo_add_note", {"text": "x"})).structured_content["approval_id"]
    async with companion.db.transaction() as session:
        approval = await session.get(Approval, asked)
        assert approval is not None
        approval.admin_may_approve = True  # as an admin rule would allow the admin to decide it
    decided = await http.post(
        f"/api/v1/approvals/{asked}/approve", headers={"Authorization": f"Bearer {tokens['admin@acme.test']}"}, json={}
    )
    assert decided.status_code == 403, decided.text

"""Red team: issue 20's authorization server, consent page, connected assistants, external tokens and OIDC sign-in,
attacked with only what an attacker holds: an agent key, an assistant's OAuth client (its registration, its metadata
document, every parameter it sends, replays and races), or a web page the signed-in person visits.

Each test asserts the SAFE behaviour: a failing test is a finding. Everything runs in process through the real app
(``httpx2.ASGITransport``); documents an attacker hosts are served by stub fetchers or a stub resolver, so nothing
leaves the machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import delete, func, select

from server.app import Companion
from server.services import demo
from server.services.documents import DocumentError, DocumentFetcher
from store.directory import add_member, create_workspace, user_by_email, workspace_by_slug
from store.models import (
    Approval,
    AssistantClient,
    AssistantGrant,
    Membership,
    Role,
    Workspace,
)
from tests.console import csrf_of
from tests.memo_connections import connect_personal_memo
from tests.oauth_browser import authorize_url, open_consent, pkce, query_of, sealed_request_of
from tests.oauth_flow import (  # noqa: F401 (the http, browser and browser_of fixtures)
    ADMIN,
    ALICE,
    API,
    BASE,
    MCP,
    REDIRECT,
    alices_browser,
    assistant_http,
    browsers_of_others,
    code_for,
    exchange,
    refresh,
    register,
    store_policy,
    tokens_for,
    tools_work,
)
from tests.rest import bearer

pytestmark = pytest.mark.anyio

BOB = "bob@acme.test"


async def acme(companion: Companion) -> Workspace:
    async with companion.db.session() as session:
        return await workspace_by_slug(session, "acme")


async def alice_has_notes(companion: Companion) -> None:
    """Alice's own Memo, so that her assistant's notes wait for an approval."""
    async with companion.db.transaction() as session:
        alice = await user_by_email(session, ALICE)
        await connect_personal_memo(session, companion.box, alice.id)


def off_site(location: str) -> bool:
    """Whether a Location header leads the browser away from Companion."""
    target = urlsplit(urljoin(BASE + "/some/page", location))
    return f"{target.scheme}://{target.netloc}" != BASE


# ---------------------------------------------------------------------------------------------------------------
# Stub documents an attacker hosts (client metadata documents), served without the network.
# ---------------------------------------------------------------------------------------------------------------


class StubDocuments:
    """A fetcher answering from a dict of URL to document (or exception), counting what it was asked."""

    https_only = True
    allow_private = False

    def __init__(self, documents: dict[str, Any] | None = None, echo: bool = False) -> None:
        self.documents = documents or {}
        self.echo = echo
        self.asked: list[str] = []

    async def json_object(self, url: str, *, max_bytes: int) -> dict[str, Any]:
        self.asked.append(url)
        if self.echo and url not in self.documents:
            return {"client_id": url, "client_name": "Echo", "redirect_uris": [REDIRECT]}
        found = self.documents.get(url)
        if found is None:
            raise DocumentError("it answered HTTP 404, not 200")
        if isinstance(found, Exception):
            raise found
        return dict(found)


def use_documents(companion: Companion, fetcher: Any) -> None:
    companion.authorization.clients.fetcher = fetcher


async def authorize(http: httpx2.AsyncClient, client_id: str, redirect_uri: str = REDIRECT, **extra: str):
    _, challenge = pkce()
    params = {
        "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "code_challenge": challenge,
        "code_challenge_method": "S256", "state": "s",
    }  # fmt: skip
    return await http.get("/authorize", params=params | extra)


# ===============================================================================================================
# 1. Tokens without consent, scopes not granted, other audiences
# ===============================================================================================================


async def test_an_agent_key_gets_nothing_from_the_consent_page_or_the_assistants_api(
    http: httpx2.AsyncClient, demo_keys: demo.DemoKeys
) -> None:
    """An agent key is no browser session: the consent page sends it to sign in, and connected assistants are a
    person's to see and change."""
    agent = bearer(demo_keys.keys[ALICE])
    client = await register(http)
    first = await authorize(http, client["client_id"])
    sealed = query_of(first.headers["location"])["request"]
    page = await http.get(f"/oauth/consent?request={sealed}", headers=agent)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    posted = await http.post("/oauth/consent", data={"request": sealed, "decision": "allow"}, headers=agent)
    assert posted.status_code == 303 and posted.headers["location"] == "/login"
    assert (await http.get("/api/v1/assistants", headers=agent)).status_code == 403
    admin_agent = bearer(demo_keys.keys[ADMIN])
    policy = {"client_id": client["client_id"], "blocked": False, "person_facing": "allowed", "may_decide": True}
    assert (await http.put("/api/v1/workspace/assistants/policy", json=policy, headers=admin_agent)).status_code == 403
    assert (await http.get("/api/v1/workspace/assistants", headers=admin_agent)).status_code == 403


async def test_a_token_with_every_scope_still_cannot_do_a_persons_things(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion, browser_of: Any
) -> None:
    """An admin's assistant holding tools, api:read, api:write and approvals (an admin allowed it) gets 403 on keys,
    rules, webhooks, integrations, policies, sign-in settings and connected assistants."""
    client = await register(http)
    await store_policy(companion, client["client_id"], may_decide=True)
    admin_browser = await browser_of(ADMIN)
    code, verifier = await code_for(
        admin_browser, client["client_id"], scope="tools api:read api:write approvals", resource=BASE, email=ADMIN
    )
    tokens = (await exchange(http, client["client_id"], code, verifier, resource=BASE)).json()
    assert set(tokens["scope"].split()) == {"tools", "api:read", "api:write", "approvals"}
    h = bearer(tokens["access_token"])
    attempts = [
        ("POST", "/api/v1/keys", {"name": "mine", "kind": "user"}),
        ("GET", "/api/v1/keys", None),
        ("POST", "/api/v1/rules", {"effect": "allow", "scope": "workspace", "tool": "*"}),
        ("GET", "/api/v1/rules", None),
        ("POST", "/api/v1/webhooks", {"url": "https://hooks.example.com/x", "events": ["meeting.processed"]}),
        ("PATCH", "/api/v1/workspace/in-chat-policy", {"person_facing_keys": True, "in_chat_max_risk": "delete"}),
        ("GET", "/api/v1/assistants", None),
        ("GET", "/api/v1/workspace/assistants", None),
        ("PUT", "/api/v1/workspace/assistants/policy",
         {"client_id": client["client_id"], "blocked": False, "person_facing": "allowed", "may_decide": True}),
        ("GET", "/api/v1/workspace/sign-in", None),
        ("PUT", "/api/v1/workspace/sign-in",
         {"issuer": "https://idp.example", "client_id": "x", "client_secret": "y", "create_users": True,
          "enabled": False}),
        ("GET", "/api/v1/integrations", None),
        ("POST", "/api/v1/integrations/apps/memo/connect", {"scope": "personal", "credentials": {"api_key": "x"}}),
    ]  # fmt: skip
    for method, path, body in attempts:
        answer = await http.request(method, path, json=body, headers=h)
        assert answer.status_code == 403, (method, path, answer.status_code, answer.text)
    # The console never takes a bearer token for a session.
    assert (await http.get("/assistants", headers=h)).status_code == 303


async def test_the_consent_form_cannot_add_scopes_or_change_the_request(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client = await register(http)
    verifier, challenge = pkce()
    url = authorize_url(
        BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge, scope="tools",
        resource=MCP,
    )  # fmt: skip
    page = await open_consent(browser, url, email=ALICE)
    assert page.status_code == 200
    form = {
        "csrf": csrf_of(page.text), "request": sealed_request_of(page.text), "decision": "allow",
        "scope": "tools api:write approvals", "scopes": "approvals", "resource": BASE,
        "redirect_uri": "https://evil.example/cb", "client_id": "someone-else",
    }  # fmt: skip
    back = await browser.post("/oauth/consent", data=form)
    assert back.status_code == 303 and back.headers["location"].startswith(REDIRECT + "?")
    code = query_of(back.headers["location"])["code"]
    tokens = (await exchange(http, client["client_id"], code, verifier)).json()
    assert tokens["scope"] == "tools"


async def test_approvals_are_withheld_without_the_admins_word_even_when_the_client_insists(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    client = await register(http, scope="approvals api:read")
    code, verifier = await code_for(browser, client["client_id"], scope="approvals api:read", resource=API)
    tokens = (await exchange(http, client["client_id"], code, verifier, resource=API)).json()
    assert "approvals" not in tokens["scope"].split()
    widened = await http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client["client_id"],
              "scope": "api:read approvals"},
    )  # fmt: skip
    assert widened.status_code == 400 and widened.json()["error"] == "invalid_scope"
    # The admin now allows it: the tokens already held do not gain it, and no remembered consent grants it silently.
    await store_policy(companion, client["client_id"], may_decide=True)
    assert (await http.get("/api/v1/approvals", headers=bearer(tokens["access_token"]))).status_code == 403
    _, challenge = pkce()
    again = await open_consent(
        browser,
        authorize_url(BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge,
                      scope="approvals api:read", resource=API),
        email=ALICE,
    )  # fmt: skip
    assert again.status_code == 200, "approvals is asked of the person, not passed through"


async def test_taking_approvals_back_takes_it_from_every_token_at_once(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    client = await register(http)
    await store_policy(companion, client["client_id"], may_decide=True)
    code, verifier = await code_for(browser, client["client_id"], scope="api:read approvals", resource=API)
    tokens = (await exchange(http, client["client_id"], code, verifier, resource=API)).json()
    assert (await http.get("/api/v1/approvals", headers=bearer(tokens["access_token"]))).status_code == 200
    await store_policy(companion, client["client_id"], may_decide=False)
    assert (await http.get("/api/v1/approvals", headers=bearer(tokens["access_token"]))).status_code == 403
    renewed = (await refresh(http, client["client_id"], tokens["refresh_token"])).json()
    assert (await http.get("/api/v1/approvals", headers=bearer(renewed["access_token"]))).status_code == 403


async def test_a_refresh_can_neither_widen_scope_nor_change_audience(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client_id, tokens = await tokens_for(http, browser, scope="tools", resource=MCP)
    for extra in ({"scope": "tools api:read"}, {"scope": "api:write"}, {"resource": API}, {"resource": BASE},
                  {"resource": "https://other.example/mcp"}):  # fmt: skip
        answer = await http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}
            | extra,
        )
        assert answer.status_code == 400, (extra, answer.text)
    # A refused refresh did not spend it.
    assert (await refresh(http, client_id, tokens["refresh_token"])).status_code == 200


async def test_a_code_for_one_resource_is_not_exchanged_for_another(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client = await register(http)
    code, verifier = await code_for(browser, client["client_id"], scope="tools", resource=MCP)
    for resource in (API, BASE, BASE + "/", MCP + "/../api/v1"):
        answer = await exchange(http, client["client_id"], code, verifier, resource=resource)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_target", resource


async def test_a_token_is_refused_at_every_other_resource_path(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    _, for_mcp = await tokens_for(http, browser, scope="tools api:read api:write", resource=MCP)
    h = bearer(for_mcp["access_token"])
    for path in ("/api/v1/meetings", "/api/v1/meetings/", "/api/v1/models",
                 "/api/v1/contacts?limit=1"):  # fmt: skip
        answer = await http.get(path, headers=h)
        assert answer.status_code in (307, 401, 404), (path, answer.status_code)
    upload = await http.post("/api/v1/meetings/upload", headers=h, files={"file": ("t.vtt", b"WEBVTT\n\n", "text/vtt")})
    assert upload.status_code == 401
    _, for_api = await tokens_for(http, browser, scope="tools api:read", resource=API)
    assert not await tools_work(app_client, for_api["access_token"])
    # The metrics endpoint, the console and anything else know no assistant's token.
    for path in ("/metrics", "/assistants", "/settings"):
        answer = await http.get(path, headers=bearer(for_api["access_token"]))
        assert answer.status_code in (303, 401, 404), (path, answer.status_code)


async def test_a_code_issued_to_one_client_is_useless_to_another(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    victim = await register(http)
    thief = await register(http)
    code, verifier = await code_for(browser, victim["client_id"])
    stolen = await exchange(http, thief["client_id"], code, verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    _, tokens = await tokens_for(http, browser)
    refreshed = await refresh(http, thief["client_id"], tokens["refresh_token"])
    assert refreshed.status_code == 400
    # A client that pretends to be another by id alone cannot pass a confidential client's secret.
    confidential = await register(http, token_endpoint_auth_method="client_secret_post")
    code, verifier = await code_for(browser, confidential["client_id"])
    for secret in ("", "x", confidential["client_secret"][:-1]):
        answer = await exchange(http, confidential["client_id"], code, verifier, client_secret=secret)
        assert answer.status_code == 401, secret


# ===============================================================================================================
# 2. Codes and refresh tokens twice, races, revocation, blocking, membership
# ===============================================================================================================


async def test_a_code_raced_twice_gives_at_most_one_set_of_tokens_and_then_none(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client = await register(http)
    code, verifier = await code_for(browser, client["client_id"])
    answers = await asyncio.gather(*(exchange(http, client["client_id"], code, verifier) for _ in range(4)))
    won = [a for a in answers if a.status_code == 200]
    assert len(won) <= 1, [a.status_code for a in answers]
    assert all(a.status_code in (200, 400) for a in answers), [a.text for a in answers]
    for answer in won:
        assert not await tools_work(app_client, answer.json()["access_token"]), "a replayed code takes back its tokens"


async def test_a_refresh_token_raced_twice_revokes_the_family(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client_id, tokens = await tokens_for(http, browser)
    answers = await asyncio.gather(*(refresh(http, client_id, tokens["refresh_token"]) for _ in range(4)))
    won = [a for a in answers if a.status_code == 200]
    assert len(won) <= 1, [a.status_code for a in answers]
    for answer in won:
        assert not await tools_work(app_client, answer.json()["access_token"])
        assert (await refresh(http, client_id, answer.json()["refresh_token"])).status_code == 400
    assert not await tools_work(app_client, tokens["access_token"])


async def test_another_client_cannot_revoke_or_probe_a_token(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    client_id, tokens = await tokens_for(http, browser)
    stranger = await register(http)
    for token in (tokens["access_token"], tokens["refresh_token"]):
        answer = await http.post("/revoke", data={"token": token, "client_id": stranger["client_id"]})
        assert answer.status_code == 200
    assert await tools_work(app_client, tokens["access_token"]), "another client's revocation changes nothing"
    # Revoking the refresh token (by its own client) takes the access token too.
    assert (
        await http.post("/revoke", data={"token": tokens["refresh_token"], "client_id": client_id})
    ).status_code == 200
    assert not await tools_work(app_client, tokens["access_token"])


async def test_revoking_on_the_assistants_page_stops_codes_not_yet_exchanged(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    client = await register(http)
    code, verifier = await code_for(browser, client["client_id"])
    page = await browser.get("/assistants")
    async with companion.db.session() as session:
        grant_id = await session.scalar(select(AssistantGrant.id))
    revoked = await browser.post(f"/assistants/{grant_id}/revoke", data={"csrf": csrf_of(page.text)})
    assert revoked.status_code == 303
    answer = await exchange(http, client["client_id"], code, verifier)
    assert answer.status_code == 400


async def test_a_blocked_client_gets_no_code_from_a_remembered_consent_nor_a_posted_one(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    client = await register(http)
    await code_for(browser, client["client_id"])
    await store_policy(companion, client["client_id"], blocked=True)
    _, challenge = pkce()
    url = authorize_url(BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge)
    page = await open_consent(browser, url, email=ALICE)
    assert page.status_code == 200 and "code=" not in page.headers.get("location", "")
    forced = await browser.post(
        "/oauth/consent",
        data={"csrf": csrf_of(page.text), "request": sealed_request_of(page.text), "decision": "allow"},
    )
    assert forced.status_code == 303 and query_of(forced.headers["location"]).get("error") == "access_denied"


async def test_a_refresh_after_the_person_left_the_workspace_mints_nothing(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    """The access token dies with the membership; the refresh token must not go on minting tokens that come back to
    life if the person is ever added again."""
    client_id, tokens = await tokens_for(http, browser)
    workspace = await acme(companion)
    async with companion.db.transaction() as session:
        alice = await user_by_email(session, ALICE)
        await session.execute(
            delete(Membership).where(Membership.user_id == alice.id, Membership.workspace_id == workspace.id)
        )
    assert not await tools_work(app_client, tokens["access_token"])
    renewed = await refresh(http, client_id, tokens["refresh_token"])
    assert renewed.status_code == 400, "a refresh for someone no longer in the workspace is refused"


# ===============================================================================================================
# 3. Redirects: nothing goes anywhere the client did not register
# ===============================================================================================================


@pytest.mark.parametrize(
    "params",
    [
        {"redirect_uri": "https://evil.example/cb"},
        {"redirect_uri": "https://evil.example/cb", "response_type": "token"},
        {"redirect_uri": "https://evil.example/cb", "scope": "root"},
        {"redirect_uri": "https://evil.example/cb", "code_challenge_method": "plain"},
        {"redirect_uri": "https://evil.example/cb", "resource": "https://evil.example/"},
        {"redirect_uri": "http://127.0.0.1:33418/callback#frag"},
        {"redirect_uri": "http://127.0.0.1:33418/callback/../../evil"},
        {"redirect_uri": "http://127.0.0.1:33418@evil.example/callback"},
        {"redirect_uri": "//evil.example/callback"},
        {"redirect_uri": "javascript:alert(1)//http://127.0.0.1:33418/callback"},
        {
            "request": "eyJhbGciOiJub25lIn0.eyJyZWRpcmVjdF91cmkiOiJodHRwczovL2V2aWwuZXhhbXBsZSJ9.",
            "redirect_uri": "https://evil.example/cb",
        },
        {"request_uri": "https://evil.example/req", "redirect_uri": "https://evil.example/cb"},
    ],
)
async def test_the_authorization_endpoint_never_redirects_off_the_registered_uri(
    http: httpx2.AsyncClient, params: dict[str, str]
) -> None:
    client = await register(http)
    answer = await authorize(http, client["client_id"], **params)
    location = answer.headers.get("location", "")
    assert not location or location.startswith(REDIRECT) or location.startswith(f"{BASE}/oauth/consent"), location


async def test_an_unknown_or_refused_client_never_redirects(http: httpx2.AsyncClient, companion: Companion) -> None:
    use_documents(companion, StubDocuments())
    for client_id in ("nope", "https://evil.example/client.json", "https://evil.example/", "javascript:alert(1)"):
        answer = await authorize(http, client_id, redirect_uri="https://evil.example/cb", response_type="bogus")
        assert "location" not in answer.headers, client_id


@pytest.mark.parametrize(
    "target",
    ["/\t/evil.example", "/%09/evil.example", "/%2F/evil.example", "/%5Cevil.example", " //evil.example",
     "/\\/evil.example", "\\\\evil.example", "https:/evil.example", "/.//evil.example", "///evil.example",
     "/\r\n/evil.example", "/oauth/consent/..//evil.example"],
)  # fmt: skip
async def test_login_next_never_leads_off_site(app_client: Any, demo_keys: demo.DemoKeys, target: str) -> None:
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as stranger:
        page = await stranger.get("/login", params={"next": target})
        signed = await stranger.post(
            "/login",
            data={"email": ALICE, "password": demo.DEMO_PASSWORD, "csrf": csrf_of(page.text), "next": target},
        )
        assert signed.status_code == 303 and not off_site(signed.headers["location"]), signed.headers["location"]
        again = await stranger.get("/login", params={"next": target})
        assert again.status_code == 303 and not off_site(again.headers["location"]), again.headers["location"]


async def test_a_sealed_request_from_elsewhere_or_old_is_refused(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    from itsdangerous import URLSafeTimedSerializer

    client = await register(http)
    forged = URLSafeTimedSerializer("guessed-secret", salt="authorization-request").dumps(
        {"client_id": client["client_id"], "redirect_uri": "https://evil.example/cb", "redirect_uri_explicit": True,
         "scopes": ["tools", "approvals"], "state": None, "code_challenge": "x" * 43, "resource": BASE}
    )  # fmt: skip
    page = await open_consent(browser, f"{BASE}/oauth/consent?request={forged}", email=ALICE)
    assert page.status_code == 400 and "location" not in page.headers
    # A request sealed by this server for a redirect the client does not (or no longer) have is refused too.
    sealed = companion.authorization.seal(
        companion.authorization.unseal(
            query_of((await authorize(http, client["client_id"])).headers["location"])["request"]
        ).model_copy(update={"redirect_uri": "https://evil.example/cb"})
    )
    page = await browser.get(f"/oauth/consent?request={sealed}")
    assert page.status_code == 400 and "location" not in page.headers


# ===============================================================================================================
# 4. The consent page: what it shows, framing, CSRF, injection
# ===============================================================================================================


async def test_the_consent_page_escapes_what_the_client_says_and_cannot_be_framed(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    name = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'"
    client = await register(http, client_name=name, client_uri='https://example.com/"><script>alert(3)</script>')
    _, challenge = pkce()
    url = authorize_url(BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge,
                        state="<script>alert(4)</script>")  # fmt: skip
    page = await open_consent(browser, url, email=ALICE)
    assert page.status_code == 200
    assert "<script>alert" not in page.text and "<img src=x" not in page.text
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assistants = await browser.get("/assistants")
    assert "frame-ancestors 'none'" in assistants.headers["content-security-policy"]


async def test_a_cross_site_post_to_the_consent_or_assistants_page_does_nothing(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    client = await register(http)
    await code_for(browser, client["client_id"])
    _, challenge = pkce()
    url = authorize_url(BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge,
                        scope="tools api:write")  # fmt: skip
    page = await open_consent(browser, url, email=ALICE)
    sealed = sealed_request_of(page.text)
    for csrf in ("", "x" * 32, None):
        data = {"request": sealed, "decision": "allow"} | ({"csrf": csrf} if csrf is not None else {})
        forged = await browser.post("/oauth/consent", data=data, headers={"Origin": "https://evil.example"})
        assert forged.status_code == 403 and "location" not in forged.headers
    async with companion.db.session() as session:
        grant = await session.scalar(select(AssistantGrant))
    assert grant is not None and grant.scopes == ["tools"]
    revoke = await browser.post(f"/assistants/{grant.id}/revoke", data={"csrf": "x"})
    assert revoke.status_code == 403
    block = await browser.post(
        "/assistants/policy", data={"client_id": client["client_id"], "part": "block", "blocked": "on"}
    )
    assert block.status_code == 403


async def test_the_consent_page_csp_takes_only_the_redirects_origin(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    """The form-action source comes from the redirect URI; a registered redirect must not be able to add directives
    (``;``) to the page's Content-Security-Policy."""
    redirect = "myapp://x;sandbox/cb"
    registered = await http.post(
        "/register",
        json={"client_name": "x", "redirect_uris": [redirect], "token_endpoint_auth_method": "none"},
    )
    if registered.status_code != 201:
        return  # refused at registration: safe
    _, challenge = pkce()
    url = authorize_url(BASE, client_id=registered.json()["client_id"], redirect_uri=redirect, code_challenge=challenge)
    page = await open_consent(browser, url, email=ALICE)
    assert page.status_code == 200
    directives = [d.strip().split()[0] for d in page.headers["content-security-policy"].split(";") if d.strip()]
    assert sorted(directives) == sorted(
        ["default-src", "script-src", "style-src", "img-src", "frame-ancestors", "form-action", "base-uri"]
    ), directives


async def test_the_consent_page_does_not_show_a_spoofed_site_through_userinfo(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient
) -> None:
    """``https://claude.ai@evil.example/cb`` goes to evil.example. A client registered with it (and a matching
    client_uri) must be refused, or the page must warn and show the real host, never 'claude.ai' as the site."""
    redirect = "https://claude.ai@evil.example/cb"
    registered = await http.post(
        "/register",
        json={"client_name": "Claude", "client_uri": "https://claude.ai@evil.example", "redirect_uris": [redirect],
              "token_endpoint_auth_method": "none", "application_type": "web"},
    )  # fmt: skip
    if registered.status_code == 400:
        return
    assert registered.status_code == 201
    _, challenge = pkce()
    url = authorize_url(BASE, client_id=registered.json()["client_id"], redirect_uri=redirect, code_challenge=challenge)
    page = await open_consent(browser, url, email=ALICE)
    assert page.status_code == 200
    assert "claude.ai@" not in page.text, "the page shows claude.ai as the assistant's site and redirect"
    assert "not its own site" in page.text


async def test_the_consent_page_shows_a_non_ascii_document_host_as_punycode(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    """A metadata document on a homograph of claude.ai (a Cyrillic a, U+0430) must not be shown with its Unicode
    host, which reads as claude.ai, while the redirect and the site show the punycode and no warning appears."""
    spoof = "cl\u0430ude.ai"
    ascii_host = spoof.encode("idna").decode()
    client_id = f"https://{spoof}/oauth/client"
    redirect = f"https://{ascii_host}/cb"
    use_documents(
        companion,
        StubDocuments({client_id: {"client_id": client_id, "client_name": "Claude", "client_uri": f"https://{ascii_host}",
                                   "redirect_uris": [redirect]}}),
    )  # fmt: skip
    answer = await authorize(http, client_id, redirect_uri=redirect)
    if answer.status_code == 400:
        return  # refused: safe
    page = await open_consent(browser, answer.headers["location"], email=ALICE)
    assert page.status_code == 200
    assert spoof not in page.text, "the document's URL is shown with a look-alike Unicode host and no warning"


async def test_a_consent_page_request_is_for_the_signed_in_person_only(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, browser_of: Any, companion: Companion
) -> None:
    """Remembered consent is per person: Bob's browser opening a request Alice consented to before is asked."""
    client = await register(http)
    await code_for(browser, client["client_id"])
    bob = await browser_of(BOB)
    _, challenge = pkce()
    url = authorize_url(BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=challenge)
    page = await open_consent(bob, url, email=BOB)
    assert page.status_code == 200 and "bob@acme.test" in page.text


# ===============================================================================================================
# 5. Registration and metadata documents: private addresses, size, numbers, redirects
# ===============================================================================================================


class Streamed(httpx.AsyncByteStream):
    """A response body sent in 1 KiB chunks, optionally after a pause (a slow document)."""

    def __init__(self, body: bytes, delay: float = 0) -> None:
        self.body = body
        self.delay = delay

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.delay:
            await asyncio.sleep(self.delay)
        for start in range(0, len(self.body), 1024):
            yield self.body[start : start + 1024]


def resolving_to(*addresses: str) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.7", "169.254.169.254", "::1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "fd00::1",
     "100.64.0.1", "0.0.0.0", "2002:7f00:1::", "2002:a9fe:a9fe::", "fec0::1"],
)  # fmt: skip
async def test_a_metadata_document_is_never_fetched_from_a_private_address(
    http: httpx2.AsyncClient, companion: Companion, address: str
) -> None:
    """A public-looking name that resolves to a private, loopback, link-local or tunnelled-private address is
    refused before any connection (6to4 2002::/16 embeds an IPv4 address; fec0::/10 is site-local)."""
    connected: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        connected.append(str(request.url))
        return httpx.Response(200, stream=Streamed(b'{"client_id": "https://assistant.example/client.json"}'))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        use_documents(
            companion, DocumentFetcher(client, https_only=True, allow_private=False, resolver=resolving_to(address))
        )
        answer = await authorize(http, "https://assistant.example/client.json")
    assert answer.status_code == 400 and "location" not in answer.headers
    assert connected == [], f"fetched {connected}"


async def test_a_metadata_document_fetch_is_capped_and_not_redirected(
    http: httpx2.AsyncClient, companion: Companion, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.services import documents

    monkeypatch.setattr(documents, "FETCH_SECONDS", 0.5)

    async def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/redirect.json":
            return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data"})
        if path == "/huge.json":
            return httpx.Response(200, stream=Streamed(b'{"client_id": "' + b"x" * 100_000 + b'"}'))
        if path == "/slow.json":
            return httpx.Response(200, stream=Streamed(b"{}", delay=5))
        return httpx.Response(404, stream=Streamed(b""))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        use_documents(
            companion,
            DocumentFetcher(client, https_only=True, allow_private=False, resolver=resolving_to("93.184.216.34")),
        )
        for name in ("redirect", "huge", "slow"):
            started = time.monotonic()
            answer = await authorize(http, f"https://assistant.example/{name}.json")
            assert answer.status_code == 400 and "location" not in answer.headers, name
            assert time.monotonic() - started < 3, name


async def test_metadata_document_clients_are_bounded_per_address(
    http: httpx2.AsyncClient, companion: Companion
) -> None:
    """Registrations are rate-limited per address and expire unused; a client named by a document URL the attacker
    mints at will (``https://evil.example/c/1``, ``/c/2``...) must be bounded the same way, not kept forever."""
    use_documents(companion, StubDocuments(echo=True))
    tries = companion.settings.oauth_registrations_per_window * 3
    for n in range(tries):
        await authorize(http, f"https://evil.example/c/{n}")
    async with companion.db.session() as session:
        kept = await session.scalar(select(func.count()).select_from(AssistantClient))
    assert kept <= companion.settings.oauth_registrations_per_window, f"{kept} clients kept from one address"


async def test_a_registration_cannot_store_megabytes_of_metadata(
    http: httpx2.AsyncClient, companion: Companion
) -> None:
    """A metadata document is capped at 5 KiB; a registration carries the same metadata and must be capped too."""
    body = {
        "client_name": "big", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
        "jwks": {"keys": [{"kty": "oct", "k": "A" * 1_000_000}]}, "contacts": ["a@b.example"] * 10_000,
    }  # fmt: skip
    answer = await http.post("/register", json=body)
    assert answer.status_code in (400, 413), f"registered {len(str(body))} bytes of metadata: {answer.status_code}"


@pytest.mark.parametrize(
    "redirect",
    ["javascript:alert(1)", "JavaScript:alert(1)", " javascript:alert(1)", "java\tscript:alert(1)",
     "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "file:///etc/passwd",
     "http://evil.example/cb", "http://127.0.0.1.evil.example/cb", "https://x.example/cb#frag"],
)  # fmt: skip
async def test_a_metadata_document_cannot_list_a_dangerous_redirect(
    http: httpx2.AsyncClient, companion: Companion, redirect: str
) -> None:
    client_id = "https://assistant.example/client.json"
    use_documents(companion, StubDocuments({client_id: {"client_id": client_id, "redirect_uris": [redirect]}}))
    answer = await authorize(http, client_id, redirect_uri=redirect)
    assert answer.status_code == 400 and "location" not in answer.headers
    async with companion.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AssistantClient)) == 0


async def test_a_metadata_document_cannot_smuggle_plain_http_past_the_loopback_check(
    http: httpx2.AsyncClient, companion: Companion
) -> None:
    """``http://evil.example\\@127.0.0.1/cb`` passes ``urlsplit``'s loopback check but every URL parser the browser
    and the SDK use reads it as ``http://evil.example/@127.0.0.1/cb``: plain http to a remote host."""
    client_id = "https://assistant.example/client.json"
    redirect = "http://evil.example\\@127.0.0.1/cb"
    use_documents(companion, StubDocuments({client_id: {"client_id": client_id, "redirect_uris": [redirect]}}))
    answer = await authorize(http, client_id, redirect_uri="http://evil.example/@127.0.0.1/cb")
    location = answer.headers.get("location", "")
    assert answer.status_code == 400 or not location.startswith(f"{BASE}/oauth/consent"), location
    async with companion.db.session() as session:
        kept = await session.scalar(select(AssistantClient.redirect_uris))
    assert kept is None, f"kept a client redirecting to {kept}"


async def test_a_metadata_document_with_a_secret_or_another_id_is_refused(
    http: httpx2.AsyncClient, companion: Companion
) -> None:
    client_id = "https://assistant.example/client.json"
    documents = {
        client_id: {"client_id": "https://claude.ai/oauth/claude-code-client-metadata", "redirect_uris": [REDIRECT]},
        client_id + "?secret": {"client_id": client_id + "?secret", "redirect_uris": [REDIRECT],
                                "client_secret": "s", "token_endpoint_auth_method": "client_secret_post"},
    }  # fmt: skip
    use_documents(companion, StubDocuments(documents))
    for named in documents:
        answer = await authorize(http, named)
        assert answer.status_code == 400 and "location" not in answer.headers, named


async def test_a_malformed_metadata_document_is_refused_not_a_server_error(
    http: httpx2.AsyncClient, companion: Companion
) -> None:
    client_id = "https://assistant.example/client.json"
    use_documents(
        companion,
        StubDocuments({client_id: {"client_id": client_id, "redirect_uris": [REDIRECT], "scope": 5,
                                   "grant_types": "authorization_code", "client_uri": "not a url"}}),
    )  # fmt: skip
    answer = await authorize(http, client_id)
    assert answer.status_code == 400, answer.status_code
    token = await http.post("/token", data={"grant_type": "refresh_token", "refresh_token": "hcr_x",
                                            "client_id": client_id})  # fmt: skip
    assert token.status_code in (400, 401), token.status_code


# ===============================================================================================================
# 6. Secrets do not leak into the assistants API, the console page, errors or logs
# ===============================================================================================================


async def test_no_token_or_client_secret_reaches_the_assistants_api_page_or_logs(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, demo_keys: demo.DemoKeys, browser_of: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level("DEBUG")
    client = await register(http, token_endpoint_auth_method="client_secret_post")
    code, verifier = await code_for(browser, client["client_id"])
    tokens = (await exchange(http, client["client_id"], code, verifier, client_secret=client["client_secret"])).json()
    replay = await exchange(http, client["client_id"], code, verifier, client_secret=client["client_secret"])
    bad = await http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"] + "x",
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
        },
    )
    secrets_ = [client["client_secret"], tokens["access_token"], tokens["refresh_token"], code]
    seen = [
        (await http.get("/api/v1/assistants", headers=bearer(demo_keys.user_keys[ALICE]))).text,
        (await http.get("/api/v1/workspace/assistants", headers=bearer(demo_keys.user_keys[ADMIN]))).text,
        (await browser.get("/assistants")).text,
        (await (await browser_of(ADMIN)).get("/assistants")).text,
        replay.text,
        bad.text,
        caplog.text,
    ]
    for text in seen:
        for secret in secrets_:
            assert secret not in text


# ===============================================================================================================
# 7. Approvals: an assistant allowed to decide never decides its own calls
# ===============================================================================================================


async def test_an_assistant_cannot_decide_its_own_call_by_being_signed_in_again(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion
) -> None:
    """The check compares the consent (grant) that asked with the one deciding. The same assistant, once the person
    revoked and re-connected it (a new grant), decides the call it asked under the old one."""
    await alice_has_notes(companion)
    client = await register(http)
    await store_policy(companion, client["client_id"], may_decide=True)
    code, verifier = await code_for(browser, client["client_id"], scope="tools approvals", resource=BASE)
    first = (await exchange(http, client["client_id"], code, verifier, resource=BASE)).json()
    async with app_client(first["access_token"]) as assistant:
        own = (await assistant.call_tool("memo_add_note", {"text": "mine"})).structured_content["approval_id"]
    page = await browser.get("/assistants")
    async with companion.db.session() as session:
        grant_id = await session.scalar(select(AssistantGrant.id))
    await browser.post(f"/assistants/{grant_id}/revoke", data={"csrf": csrf_of(page.text)})
    code, verifier = await code_for(browser, client["client_id"], scope="tools approvals", resource=BASE)
    second = (await exchange(http, client["client_id"], code, verifier, resource=BASE)).json()
    decided = await http.post(f"/api/v1/approvals/{own}/approve", headers=bearer(second["access_token"]), json={})
    # Revoking withdrew what it asked (409: already cancelled); had it not, the client would still be refused (403).
    assert decided.status_code in (403, 409), (
        f"the assistant approved its own call: {decided.status_code} {decided.text}"
    )
    async with companion.db.session() as session:
        withdrawn = await session.get(Approval, own)
    assert withdrawn is not None and withdrawn.status.value == "cancelled"


@pytest.mark.settings(cache_seconds=30)
async def test_revoking_or_blocking_stops_a_cached_token_at_once(
    app_client: Any, http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion,
    demo_keys: demo.DemoKeys,
) -> None:  # fmt: skip
    client_id, tokens = await tokens_for(http, browser)
    assert await tools_work(app_client, tokens["access_token"])
    assert (
        await http.post("/revoke", data={"token": tokens["access_token"], "client_id": client_id})
    ).status_code == 200
    assert not await tools_work(app_client, tokens["access_token"])
    client_id, tokens = await tokens_for(http, browser)
    assert await tools_work(app_client, tokens["access_token"])
    policy = {"client_id": client_id, "blocked": True, "person_facing": "default", "may_decide": False}
    answer = await http.put(
        "/api/v1/workspace/assistants/policy", json=policy, headers=bearer(demo_keys.user_keys[ADMIN])
    )
    assert answer.status_code == 200, answer.text
    assert not await tools_work(app_client, tokens["access_token"])


# ===============================================================================================================
# 8. An external authorization server's JWTs: alg, kid, aud, iss and claim tricks
# ===============================================================================================================

IDP = "https://idp.example"
IDP_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
ATTACKER_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})


class StubIssuerKeys:
    def __init__(self, keys: KeySet) -> None:
        self.key_set = keys

    async def keys(self, *, lacking: KeySet | None = None) -> KeySet:
        return self.key_set


def use_idp(companion: Companion) -> None:
    assert companion.external is not None
    companion.external = dataclasses.replace(companion.external, keys=StubIssuerKeys(KeySet([IDP_KEY])))


def jwt_token(*, key: RSAKey = IDP_KEY, header: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    defaults = {"iss": IDP, "aud": MCP, "sub": "u1", "email": ALICE, "client_id": "ext-assistant", "scope": "tools",
                "iat": now, "exp": now + 300}  # fmt: skip
    payload = {name: value for name, value in (defaults | claims).items() if value is not None}
    return jwt.encode({"alg": "RS256", "kid": key.kid} | (header or {}), payload, key)


@pytest.mark.settings(authorization_servers=IDP)
async def test_an_external_token_saying_the_email_is_unverified_identifies_no_one(
    companion: Companion, demo_keys: demo.DemoKeys
) -> None:
    """The person is found by the e-mail claim. A token that itself says the address is not verified (Entra's
    mutable ``email``, a social login's unverified address: the "nOAuth" pattern) must not speak for alice."""
    use_idp(companion)
    assert await companion.principal_for(jwt_token()) is not None, "the stub works"
    assert await companion.principal_for(jwt_token(email_verified=False)) is None


@pytest.mark.settings(authorization_servers=IDP)
async def test_an_external_token_with_forged_keys_or_headers_identifies_no_one(
    companion: Companion, demo_keys: demo.DemoKeys
) -> None:
    use_idp(companion)
    attacker_public = ATTACKER_KEY.as_dict(private=False)
    forged = [
        jwt_token(key=ATTACKER_KEY),
        jwt_token(key=ATTACKER_KEY, header={"jwk": attacker_public}),
        jwt_token(key=ATTACKER_KEY, header={"jku": "https://evil.example/jwks", "kid": "evil"}),
        jwt_token(key=ATTACKER_KEY, header={"x5u": "https://evil.example/cert"}),
        jwt.encode({"alg": "RS256"}, {"iss": IDP, "aud": MCP, "email": ALICE, "client_id": "x", "scope": "tools",
                                      "exp": int(time.time()) + 300}, ATTACKER_KEY),
        jwt_token(iss=IDP + "/"),
        jwt_token(iss="https://IDP.example"),
        jwt_token(aud="ext-assistant"),
        jwt_token(aud=[]),
        jwt_token(aud="https://127.0.0.1:8000/mcp"),
        jwt_token(aud=BASE.upper() + "/mcp"),
        jwt_token(exp=str(int(time.time()) + 300)),
        jwt_token(client_id=["a", "b"], azp=None),
        jwt_token(email=["alice@acme.test"]),
        jwt_token(email="nobody@acme.test"),
    ]  # fmt: skip
    for n, value in enumerate(forged):
        assert await companion.principal_for(value) is None, n


@pytest.mark.settings(authorization_servers=IDP)
async def test_an_external_token_naming_a_look_alike_address_identifies_no_one(
    companion: Companion, demo_keys: demo.DemoKeys
) -> None:
    """The claim is matched after ``strip().lower()``: an account whose address at the authorization server is
    ``" alice@acme.test\\n"`` (another account there) speaks for alice here."""
    use_idp(companion)
    for email in ("alice@acme.test\n", " alice@acme.test", "alice@acme.test\t"):
        assert await companion.principal_for(jwt_token(email=email)) is None, repr(email)


@pytest.mark.settings(authorization_servers=IDP, authorization_workspace_claim="ws")
async def test_an_external_token_cannot_name_a_workspace_its_person_is_not_in(
    companion: Companion, demo_keys: demo.DemoKeys
) -> None:
    use_idp(companion)
    async with companion.db.transaction() as session:
        await create_workspace(session, slug="globex", name="Globex")
    assert await companion.principal_for(jwt_token(ws="globex")) is None
    found = await companion.principal_for(jwt_token(ws="acme", scope="tools approvals api:write"))
    assert found is not None and "approvals" not in found.scopes and found.key_kind.value == "agent"


# ===============================================================================================================
# 9. Console sign-in through a workspace's identity provider
# ===============================================================================================================


@pytest.fixture
async def oidc_provider() -> AsyncIterator[Any]:
    from tests.fakes.base import serve
    from tests.fakes.oidc import OidcFake

    fake = OidcFake(f"{BASE}/login/oidc/callback")
    async with serve(fake):
        yield fake


@pytest.mark.settings(webhooks_allow_private=True)
async def test_another_workspaces_identity_provider_cannot_reach_a_persons_personal_connections(
    app_client: Any, browser: httpx2.AsyncClient, companion: Companion, demo_keys: demo.DemoKeys, oidc_provider: Any
) -> None:
    """Alice signs in to Acme with her password and keeps a personal connection, which follows her into every
    workspace. She is also a member of Globex, whose admin (Mallory) points Globex's sign-in at an identity
    provider Mallory runs, which vouches for alice@acme.test. The session that provider opens must not act with
    Alice's personal connection: it belongs to Alice, not to Globex's admins."""
    from server.services.oidc.config import ConfigChange
    from store.directory import member_principal
    from tests.fakes.base import CLIENT_ID, CLIENT_SECRET
    from tests.test_oidc_sign_in import through_provider

    async with companion.db.transaction() as session:
        globex = await create_workspace(session, slug="globex", name="Globex")
        mallory, _ = await add_member(session, globex, email="mallory@globex.test", role=Role.ADMIN)
        await add_member(session, globex, email=ALICE, role=Role.MEMBER)
        alice = await user_by_email(session, ALICE)
        await connect_personal_memo(session, companion.box, alice.id, label="Alice private notes")
    async with companion.db.session() as session:
        admin = await member_principal(session, globex.id, mallory.id, acting_as="test")
    change = ConfigChange(oidc_provider.issuer, CLIENT_ID, CLIENT_SECRET, create_users=False, enabled=True)
    await companion.rest_services().company_sign_in.configure(admin, change)
    landed = await through_provider(browser, workspace="globex", next_path="/marketplace/installed")
    assert landed.status_code == 403 and "other workspaces" in landed.text, "Globex's provider signed Alice in"
    page = await browser.get("/marketplace/installed")
    assert "Alice private notes" not in page.text, "Globex's provider opened a session that holds Alice's connection"


@pytest.mark.settings(webhooks_allow_private=True)
async def test_the_oidc_callback_escapes_what_the_provider_says_and_stays_on_site(
    app_client: Any, browser: httpx2.AsyncClient, companion: Companion, demo_keys: demo.DemoKeys, oidc_provider: Any
) -> None:
    from tests.test_oidc_sign_in import configure, to_provider

    await configure(companion, oidc_provider)
    sent = await to_provider(browser, next_path="//evil.example/")
    state = query_of(sent.headers["location"])["state"]
    answer = await browser.get(
        "/login/oidc/callback", params={"state": state, "error": "<script>alert(1)</script>", "iss": "x"}
    )
    assert answer.status_code == 403 and "<script>alert(1)" not in answer.text
    assert "location" not in answer.headers
    # A callback whose state belongs to no sign-in this browser began does nothing, wherever it came from.
    forged = await browser.get("/login/oidc/callback", params={"state": state, "code": "stolen"})
    assert forged.status_code == 400 and "location" not in forged.headers


# ===============================================================================================================
# 10. In-chat answers through an assistant's token
# ===============================================================================================================


@pytest.mark.parametrize("ticked", [False, True])
async def test_a_forged_in_chat_answer_through_an_oauth_token_decides_nothing(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, companion: Companion, ticked: bool
) -> None:
    """Without the person's tick at consent (or with it, but an admin forbade it for this client), a form answer the
    client sends, with the nonce of a real prompt, approves nothing and remembers nothing."""
    from server.services.confirmation import Answer, Channel
    from store.models import Approval, ApprovalStatus, RuleRow
    from tests.apps import memo

    await alice_has_notes(companion)
    client = await register(http)
    if ticked:
        await store_policy(companion, client["client_id"], person_facing="forbidden")
    code, verifier = await code_for(browser, client["client_id"], person_facing=ticked)
    tokens = (await exchange(http, client["client_id"], code, verifier)).json()
    agent = await companion.principal_for(tokens["access_token"])
    assert agent is not None and not agent.person_facing
    memo.RUNS.clear()
    first = await companion.gateway.call(agent, "memo_add_note", {"text": "x"}, Channel(url=True))
    approval_id = first.prompt.approval_id if first.prompt else first.data["approval_id"]
    nonce = first.prompt.nonce if first.prompt else ""
    for action, decision in [("accept", "approve"), ("decline", None)]:
        forged = Answer(approval_id, nonce, "form", action, decision=decision, remember="30d")  # type: ignore[arg-type]
        result = await companion.gateway.call(agent, "memo_add_note", {"text": "x"}, Channel(form=True, answer=forged))
        assert result.data is not None and result.data["status"] == "approval_required"
    assert memo.RUNS == []
    async with companion.db.session() as session:
        assert [a.status for a in await session.scalars(select(Approval))] == [ApprovalStatus.PENDING]
        assert list(await session.scalars(select(RuleRow))) == []


async def test_a_registration_cannot_choose_its_client_id_nor_a_grant_type_beyond_code(
    http: httpx2.AsyncClient, companion: Companion
) -> None:
    """An admin allows a metadata-document client by its URL; a registration must not take that id for itself."""
    allowed = "https://claude.ai/oauth/claude-code-client-metadata"
    await store_policy(companion, allowed, may_decide=True, person_facing="allowed")
    answer = await http.post(
        "/register",
        json={"client_id": allowed, "client_name": "Claude", "redirect_uris": [REDIRECT],
              "token_endpoint_auth_method": "none"},
    )  # fmt: skip
    assert answer.status_code == 201 and answer.json()["client_id"] != allowed
    async with companion.db.session() as session:
        assert await session.scalar(select(AssistantClient).where(AssistantClient.client_id == allowed)) is None
    jwt_bearer = await http.post(
        "/register",
        json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
              "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"]},
    )  # fmt: skip
    assert jwt_bearer.status_code == 400
    client_id = "https://assistant.example/client.json"
    use_documents(
        companion,
        StubDocuments({client_id: {"client_id": client_id, "redirect_uris": [REDIRECT],
                                   "grant_types": ["authorization_code", "refresh_token",
                                                   "urn:ietf:params:oauth:grant-type:jwt-bearer"]}}),
    )  # fmt: skip
    assertion = await http.post(
        "/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": "x.y.z",
            "client_id": client_id,
        },
    )
    assert assertion.status_code in (400, 401) and "access_token" not in assertion.text


async def test_the_consent_and_assistants_pages_show_hidden_characters_in_a_name(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, browser_of: Any
) -> None:
    """Approvals show an assistant's name escaped ("it can neither break a line nor hide a character"). The consent
    page and the admin's Assistants page, where an admin picks which "Claude" may decide approvals, must not let a
    zero-width or bidi character make one registered name pass for another."""
    hidden = "Cla\u200bude\u202e"
    client = await register(http, client_name=hidden)
    code_url_page = await open_consent(
        browser,
        authorize_url(BASE, client_id=client["client_id"], redirect_uri=REDIRECT, code_challenge=pkce()[1]),
        email=ALICE,
    )
    assert code_url_page.status_code == 200
    assert "\u200b" not in code_url_page.text and "\u202e" not in code_url_page.text
    await code_for(browser, client["client_id"])
    admin_page = await (await browser_of(ADMIN)).get("/assistants")
    assert "\u200b" not in admin_page.text and "\u202e" not in admin_page.text

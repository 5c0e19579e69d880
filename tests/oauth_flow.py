"""An assistant signs in to Companion's own OAuth 2.1 authorization server, in process, as in ``test_oauth_server``:
it registers, sends the person to sign in and consent, and exchanges the code it gets back.

Its fixtures are the two sides of that flow on the demo workspace, ``http`` (the assistant's HTTP client) and
``browser`` (Alice's), and ``browser_of`` for other people; a test module imports them to use them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import pytest

from server.app import Companion
from server.services import demo
from store.directory import workspace_by_slug
from store.models import AssistantPolicy
from tests.console import sign_in
from tests.oauth_browser import authorize_url, consent, pkce, query_of
from tests.rest import bearer

BASE = "http://127.0.0.1:8000"
MCP = f"{BASE}/mcp"
API = f"{BASE}/api/v1"
REDIRECT = "http://127.0.0.1:33418/callback"
ALICE = "alice@acme.test"
ADMIN = "admin@acme.test"


@pytest.fixture(name="http")
async def assistant_http(app_client: Any, demo_keys: demo.DemoKeys) -> AsyncIterator[httpx2.AsyncClient]:
    """The assistant's HTTP client, which people's keys use for REST too: no cookies, no redirects followed."""
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


@pytest.fixture(name="browser")
async def alices_browser(app_client: Any, demo_keys: demo.DemoKeys) -> AsyncIterator[httpx2.AsyncClient]:
    """Alice's browser, which keeps its cookies: consenting signs her in to the console."""
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


@pytest.fixture(name="browser_of")
async def browsers_of_others(
    app_client: Any, demo_keys: demo.DemoKeys
) -> AsyncIterator[Callable[[str], Awaitable[httpx2.AsyncClient]]]:
    """Another person's browser, signed in to the console when a test asks for it."""
    clients: list[httpx2.AsyncClient] = []

    async def open_for(email: str) -> httpx2.AsyncClient:
        client = httpx2.AsyncClient(transport=app_client.transport, base_url=BASE)
        clients.append(client)
        await sign_in(client, email)
        return client

    yield open_for
    for client in clients:
        await client.aclose()


async def register(http: httpx2.AsyncClient, **metadata: Any) -> dict[str, Any]:
    body = {"client_name": "Test Assistant", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    answer = await http.post("/register", json=body | metadata)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def code_for(
    browser: httpx2.AsyncClient,
    client_id: str,
    *,
    scope: str = "tools",
    resource: str = MCP,
    email: str = ALICE,
    person_facing: bool = False,
) -> tuple[str, str]:
    """Sign in and consent; the code the server sent back, and the PKCE verifier that goes with it."""
    verifier, challenge = pkce()
    back = await consent(
        browser,
        authorize_url(
            BASE, client_id=client_id, redirect_uri=REDIRECT, code_challenge=challenge, code_challenge_method="S256",
            state="st-1", scope=scope, resource=resource,
        ),
        email=email,
        person_facing=person_facing,
    )  # fmt: skip
    assert back.startswith(REDIRECT + "?"), back
    params = query_of(back)
    assert params["state"] == "st-1" and params["iss"] == BASE, params
    return params["code"], verifier


async def exchange(http: httpx2.AsyncClient, client_id: str, code: str, verifier: str, **extra: str) -> httpx2.Response:
    form = {
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": REDIRECT,
        "client_id": client_id, "resource": MCP,
    }  # fmt: skip
    return await http.post("/token", data=form | extra)


async def refresh(http: httpx2.AsyncClient, client_id: str, token: str) -> httpx2.Response:
    return await http.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    )


async def tokens_for(
    http: httpx2.AsyncClient, browser: httpx2.AsyncClient, *, scope: str = "tools", resource: str = MCP, **options: Any
) -> tuple[str, dict[str, Any]]:
    """Register an assistant, consent to it and exchange the code: its client id and the tokens it got."""
    client = await register(http)
    code, verifier = await code_for(browser, client["client_id"], scope=scope, resource=resource, **options)
    answer = await exchange(http, client["client_id"], code, verifier, resource=resource)
    assert answer.status_code == 200, answer.text
    return client["client_id"], dict(answer.json())


async def tools_work(app_client: Any, token: str) -> bool:
    try:
        async with app_client(token) as session:
            await session.list_tools()
    except Exception:
        return False
    return True


async def set_policy(http: httpx2.AsyncClient, demo_keys: demo.DemoKeys, client_id: str, **change: Any) -> Any:
    """The admin decides about an assistant for the workspace, over REST; the policy it answers with."""
    body = {"client_id": client_id, "blocked": False, "person_facing": "default", "may_decide": False} | change
    answer = await http.put(
        "/api/v1/workspace/assistants/policy", headers=bearer(demo_keys.user_keys[ADMIN]), json=body
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


async def store_policy(companion: Companion, client_id: str, **values: Any) -> None:
    """The workspace's policy for an assistant, written straight to the database: the admin's choice as the
    server finds it, for tests whose subject is what follows from it."""
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        policy = await session.get(AssistantPolicy, (workspace.id, client_id))
        if policy is None:
            policy = AssistantPolicy(workspace_id=workspace.id, client_id=client_id)
            session.add(policy)
        for name, value in values.items():
            setattr(policy, name, value)

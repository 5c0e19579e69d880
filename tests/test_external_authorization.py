"""Companion as a resource server only, taking the JWT access tokens of an external authorization server.

The authorization server is a fake on a real loopback port, serving its RFC 8414 metadata and its key set; the
tokens are signed here. Companion runs in process and fetches the metadata and keys over HTTP, as it would from
Okta or Keycloak (loopback is allowed by the development setting ``webhooks_allow_private``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pydantic
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.app import Companion
from server.services import demo
from server.services.assistants import issuer_keys
from server.settings import Settings
from store import directory
from store.connections import add_connection
from store.models import AssistantPolicy, ConnectionScope, KeyKind, Plan, Role, Workspace
from tests.apps import memo

# The fake server's port is taken when the module loads, so the settings marker can name its issuer; the socket
# stays bound until the server listens on it.
_LISTENER = socket.socket()
_LISTENER.bind(("127.0.0.1", 0))
ISSUER = f"http://127.0.0.1:{_LISTENER.getsockname()[1]}"

BASE = "http://127.0.0.1:8000"
MCP = f"{BASE}/mcp"
API = f"{BASE}/api/v1"
ALICE = "alice@acme.test"
CLIENT = "assistant-at-the-idp"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
STREAMABLE = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

RSA = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
EC = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
# Not published: the same key id as the published RSA key, another key.
IMPOSTOR = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
ROTATED = RSAKey.generate_key(2048, parameters={"kid": "rsa-2"})

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.settings(authorization_servers=ISSUER, webhooks_allow_private=True, base_url=BASE),
]


class FakeAuthorizationServer:
    """What Companion reads of an authorization server: its metadata and its key set, and how often it asked."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.keys = [RSA, EC]
        self.rfc8414 = True
        self.key_set_fetches = 0

    def app(self) -> Starlette:
        metadata = {
            "issuer": ISSUER,
            "authorization_endpoint": f"{ISSUER}/authorize",
            "token_endpoint": f"{ISSUER}/token",
            "jwks_uri": f"{ISSUER}/jwks",
            "response_types_supported": ["code"],
        }

        async def authorization_server(request: Request) -> Response:
            return JSONResponse(metadata) if self.rfc8414 else Response(status_code=404)

        async def openid_configuration(request: Request) -> Response:
            return JSONResponse(metadata)

        async def jwks(request: Request) -> Response:
            self.key_set_fetches += 1
            return JSONResponse({"keys": [key.as_dict(private=False) for key in self.keys]})

        return Starlette(
            routes=[
                Route("/.well-known/oauth-authorization-server", authorization_server),
                Route("/.well-known/openid-configuration", openid_configuration),
                Route("/jwks", jwks),
            ]
        )


@pytest.fixture(scope="module")
def served() -> Iterator[FakeAuthorizationServer]:
    """The fake authorization server under uvicorn in a thread of its own, for the whole module."""
    fake = FakeAuthorizationServer()
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [_LISTENER]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the fake authorization server did not start"
        time.sleep(0.01)
    yield fake
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def idp(served: FakeAuthorizationServer) -> Iterator[FakeAuthorizationServer]:
    served.reset()
    yield served
    served.reset()


@pytest.fixture
async def http(app_client: Any, demo_keys: demo.DemoKeys, idp: FakeAuthorizationServer) -> AsyncIterator[Any]:
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


def token(*, key: RSAKey | ECKey = RSA, alg: str = "RS256", **claims: Any) -> str:
    """An access token as the fake server would issue it; a claim given as None is left out."""
    now = int(time.time())
    defaults = {
        "iss": ISSUER, "aud": MCP, "sub": "00u1", "email": ALICE, "client_id": CLIENT, "scope": "tools",
        "iat": now, "exp": now + 300,
    }  # fmt: skip
    payload = {name: value for name, value in (defaults | claims).items() if value is not None}
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "at+jwt"}, payload, key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A token whose signature is made by hand (``alg: none``, or a MAC keyed with what ``sign`` holds)."""
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": MCP, "email": ALICE, "client_id": CLIENT, "scope": "tools", "exp": now + 300}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload | claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{_b64(signature)}"


def bearer(value: str) -> dict[str, str]:
    return {**STREAMABLE, "Authorization": f"Bearer {value}"}


async def mcp_status(http: httpx2.AsyncClient, value: str) -> int:
    return int((await http.post("/mcp", json=INITIALIZE, headers=bearer(value))).status_code)


async def test_a_valid_token_lists_and_calls_tools(app_client: Any, http: Any, companion: Companion) -> None:
    for value in (token(), token(key=EC, alg="ES256")):
        async with app_client(value) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert "harmony_list_meetings" in names
            result = await session.call_tool("harmony_list_meetings", {})
            assert not result.is_error, result
    principal = await companion.principal_for(token())
    assert principal is not None and principal.email == ALICE and principal.workspace_slug == "acme"
    assert principal.key_kind is KeyKind.AGENT and not principal.person_facing
    assert principal.client_id == CLIENT and principal.assistant == CLIENT and principal.audience == MCP
    assert principal.key_id.startswith("ext_") and len(principal.key_id) == 32
    again = await companion.principal_for(token(sub="another-session", scope="tools api:read"))
    assert again is not None and again.key_id == principal.key_id, "one id per issuer, client and person"


def _hs256_with_public_key(signing_input: bytes) -> bytes:
    return hmac.new(RSA.as_pem(private=False), signing_input, hashlib.sha256).digest()


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda: token(key=IMPOSTOR), id="bad-signature"),
        pytest.param(lambda: token(iss="https://elsewhere.example"), id="wrong-iss"),
        pytest.param(lambda: token(iss=None), id="no-iss"),
        pytest.param(lambda: token(aud="https://other.example/mcp"), id="another-resource"),
        pytest.param(lambda: token(aud=None), id="no-aud"),
        pytest.param(lambda: token(exp=int(time.time()) - 120), id="expired"),
        pytest.param(lambda: token(exp=None), id="no-exp"),
        pytest.param(lambda: token(nbf=int(time.time()) + 600), id="not-yet-valid"),
        pytest.param(lambda: unsigned({"alg": "none", "kid": "rsa-1"}, {}), id="alg-none"),
        pytest.param(
            lambda: unsigned({"alg": "HS256", "kid": "rsa-1"}, {}, _hs256_with_public_key), id="hs256-with-public-key"
        ),
        pytest.param(lambda: token(email="nobody@acme.test"), id="unknown-user"),
        pytest.param(lambda: token(email=None), id="no-user-claim"),
        pytest.param(lambda: token(client_id=None), id="no-client"),
        pytest.param(lambda: "hca_" + "x" * 43, id="companion-own-token-format"),
    ],
)
async def test_a_token_failing_a_check_identifies_nobody(http: Any, value: Any) -> None:
    assert await mcp_status(http, value()) == 401


async def test_a_token_without_the_tools_scope_gets_403(http: Any) -> None:
    response = await http.post("/mcp", json=INITIALIZE, headers=bearer(token(scope="api:read")))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert await mcp_status(http, token(scope=None, scp=["tools"])) == 200, "scp, as a list, counts too"


async def test_a_token_works_only_at_its_audience(http: Any) -> None:
    for_mcp = token(scope="tools api:read")
    assert (await http.get("/api/v1/meetings", headers=bearer(for_mcp))).status_code == 401
    for_api = token(aud=API, scope="tools api:read")
    assert (await http.get("/api/v1/meetings", headers=bearer(for_api))).status_code == 200
    assert await mcp_status(http, for_api) == 401
    for value in (token(aud=[MCP, API], scope="tools api:read"), token(aud=BASE + "/", scope="tools api:read")):
        assert (await http.get("/api/v1/meetings", headers=bearer(value))).status_code == 200
        assert await mcp_status(http, value) == 200


async def test_approvals_need_an_admins_word_for_the_client(http: Any, companion: Companion) -> None:
    value = token(aud=API, scope="api:read approvals")
    assert (await http.get("/api/v1/approvals", headers=bearer(value))).status_code == 403
    async with companion.db.transaction() as session:
        workspace = await session.scalar(select(Workspace).where(Workspace.slug == "acme"))
        assert workspace is not None
        session.add(AssistantPolicy(workspace_id=workspace.id, client_id=CLIENT, may_decide=True))
    assert (await http.get("/api/v1/approvals", headers=bearer(value))).status_code == 200


async def test_an_admin_block_stops_the_client(http: Any, companion: Companion) -> None:
    async with companion.db.transaction() as session:
        workspace = await session.scalar(select(Workspace).where(Workspace.slug == "acme"))
        assert workspace is not None
        session.add(AssistantPolicy(workspace_id=workspace.id, client_id=CLIENT, blocked=True))
    assert await mcp_status(http, token()) == 401
    assert await mcp_status(http, token(client_id=None, azp="another-assistant")) == 200


async def _alice_joins_a_second_workspace(companion: Companion) -> None:
    async with companion.db.transaction() as session:
        workspace = await directory.create_workspace(session, slug="globex", name="Globex", plan=Plan.MAX)
        await directory.add_member(session, workspace, email=ALICE, role=Role.MEMBER)


async def test_a_person_in_several_workspaces_needs_the_workspace_named(http: Any, companion: Companion) -> None:
    await _alice_joins_a_second_workspace(companion)
    assert await mcp_status(http, token()) == 401


@pytest.mark.settings(
    authorization_servers=ISSUER, webhooks_allow_private=True, base_url=BASE, authorization_workspace_claim="org"
)
async def test_the_workspace_claim_names_the_workspace(http: Any, companion: Companion) -> None:
    await _alice_joins_a_second_workspace(companion)
    principal = await companion.principal_for(token(org="globex"))
    assert principal is not None and principal.workspace_slug == "globex"
    assert await companion.principal_for(token(org="initech")) is None, "not a member there"
    assert await companion.principal_for(token()) is None, "no claim, and more than one workspace"


async def test_keys_are_kept_and_fetched_again_for_a_new_key_at_most_so_often(
    http: Any, idp: FakeAuthorizationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await mcp_status(http, token()) == 200
    assert await mcp_status(http, token(key=EC, alg="ES256")) == 200
    assert idp.key_set_fetches == 1
    idp.keys = [ROTATED, RSA]
    assert await mcp_status(http, token(key=ROTATED)) == 401, "fetched a moment ago: not again yet"
    assert idp.key_set_fetches == 1
    monkeypatch.setattr(issuer_keys, "RETRY_SECONDS", 0.0)  # as if the wait had passed
    assert await mcp_status(http, token(key=ROTATED)) == 200, "a key the kept set lacks: the set is fetched again"
    assert idp.key_set_fetches == 2
    monkeypatch.undo()
    made_up = RSAKey.generate_key(2048, parameters={"kid": "made-up"})
    assert await mcp_status(http, token(key=made_up)) == 401
    assert idp.key_set_fetches == 2, "not fetched again so soon"


async def test_metadata_is_found_through_openid_discovery_too(http: Any, idp: FakeAuthorizationServer) -> None:
    idp.rfc8414 = False
    assert await mcp_status(http, token()) == 200


async def test_the_resource_metadata_names_the_external_server(http: Any) -> None:
    for path, resource in (("/mcp", MCP), ("/api/v1", API)):
        metadata = (await http.get(f"/.well-known/oauth-protected-resource{path}")).json()
        assert metadata["resource"] == resource and metadata["authorization_servers"] == [ISSUER]
    challenge = (await http.post("/mcp", json=INITIALIZE, headers=STREAMABLE)).headers["www-authenticate"]
    assert f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"' in challenge


async def test_companions_own_authorization_server_is_not_there(http: Any) -> None:
    for method, path in (
        ("GET", "/.well-known/oauth-authorization-server"),
        ("GET", "/authorize"),
        ("POST", "/token"),
        ("POST", "/register"),
        ("POST", "/revoke"),
        ("GET", "/oauth/consent"),
        ("POST", "/oauth/consent"),
    ):
        assert (await http.request(method, path)).status_code == 404, (method, path)


def test_more_than_one_authorization_server_is_refused_at_start() -> None:
    with pytest.raises(pydantic.ValidationError, match="accepts the tokens of one external authorization server"):
        Settings(authorization_servers="https://a.example,https://b.example")
    with pytest.raises(pydantic.ValidationError, match="https unless"):
        Settings(authorization_servers="http://login.example")


async def test_an_external_call_approved_then_allowed_by_a_rule_runs_once(
    app_client: Any, http: Any, companion: Companion, demo_keys: demo.DemoKeys
) -> None:
    """No row of Companion's records when an external token's calls asked, so every call a rule allows is looked
    for among its approvals: the approval the person gave is what runs, once."""
    async with companion.db.transaction() as session:
        alice = await directory.user_by_email(session, ALICE)
        assert alice is not None
        await add_connection(
            session, companion.box, app="memo", scope=ConnectionScope.PERSONAL, workspace_id=None, user_id=alice.id,
            label="Notes", credentials={"api_key": "memo-secret"},
        )  # fmt: skip
    memo.RUNS.clear()
    person = {"Authorization": f"Bearer {demo_keys.user_keys[ALICE]}"}
    rule = {"effect": "allow", "scope": "user", "app": "memo", "tool": "memo_add_note"}
    async with app_client(token()) as assistant:
        waiting = await assistant.call_tool("memo_add_note", {"text": "pay invoice 9"})
        approval_id = waiting.structured_content["approval_id"]
        assert (await http.post(f"/api/v1/approvals/{approval_id}/approve", headers=person, json={})).status_code == 200
        assert (await http.post("/api/v1/rules", headers=person, json=rule)).status_code == 201
        ran = await assistant.call_tool("memo_add_note", {"text": "pay invoice 9"})
        again = await assistant.call_tool("memo_add_note", {"text": "pay invoice 9"})
    assert [approval_id] == memo.RUNS, "it ran once, through the approval the person gave"
    assert again.structured_content == ran.structured_content

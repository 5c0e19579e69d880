"""The ``mcp`` SDK's own OAuth client against Companion on 127.0.0.1, as a hosted assistant meets it.

It discovers the authorization server from the protected resource metadata, registers (RFC 7591) or names its
Client ID Metadata Document, sends the person to sign in and consent (form posts stand in for their clicks),
then lists and calls tools with its token, refreshes it, and loses it when it is revoked.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from server.app import Companion, create_app
from server.services import demo
from server.services.documents import DocumentFetcher
from server.settings import Settings
from tests.conftest import free_port, serving
from tests.oauth_browser import consent, query_of
from tests.oauth_flow import ALICE, REDIRECT
from tests.tls import loopback_tls

pytestmark = pytest.mark.anyio


@dataclass
class Storage:
    """The SDK client's token storage, in memory."""

    tokens: OAuthToken | None = None
    client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@dataclass
class Person:
    """Alice's browser: when the client sends her to sign in, she does and allows it."""

    browser: httpx2.AsyncClient
    consents: list[str] = field(default_factory=list)
    back: str = ""

    async def open(self, url: str) -> None:
        self.consents.append(url)
        self.back = await consent(self.browser, url, email=ALICE)

    async def callback(self) -> AuthorizationCodeResult:
        params = query_of(self.back)
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


@pytest.fixture
async def live(
    settings: Settings, companion: Companion, demo_keys: demo.DemoKeys
) -> AsyncIterator[tuple[str, Companion]]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # The development setting lets client metadata documents live on loopback, as the test serves one.
    live_settings = settings.model_copy(update={"base_url": base_url, "webhooks_allow_private": True})
    served = Companion.build(live_settings, registry=companion.registry)
    async with serving(create_app(served), port):
        yield base_url, served


def metadata() -> OAuthClientMetadata:
    return OAuthClientMetadata(
        client_name="SDK Assistant",
        redirect_uris=[REDIRECT],  # type: ignore[list-item]
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )


async def sign_in_and_use(base_url: str, client_metadata_url: str | None = None) -> tuple[Storage, Person]:
    """The whole first run of an assistant: discovery, registration or CIMD, consent, tokens, tools."""
    storage = Storage()
    async with httpx2.AsyncClient(base_url=base_url) as browser:
        person = Person(browser)
        auth = OAuthClientProvider(
            f"{base_url}/mcp",
            metadata(),
            storage,
            person.open,
            person.callback,
            client_metadata_url=client_metadata_url,
        )
        async with (
            httpx2.AsyncClient(auth=auth, timeout=30) as http,
            Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as session,
        ):
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert "harmony_list_meetings" in names
            assert not (await session.call_tool("harmony_list_meetings", {})).is_error
            first = storage.tokens
            assert first is not None and first.refresh_token
            # The access token runs out: the client refreshes on its next request, and gets a new pair.
            auth.context.token_expiry_time = time.time() - 1
            assert not (await session.call_tool("harmony_list_meetings", {})).is_error
            assert storage.tokens is not None and storage.tokens.access_token != first.access_token
            assert storage.tokens.refresh_token != first.refresh_token
    assert len(person.consents) == 1, "the person was asked once"
    return storage, person


async def revoke_and_check_refused(base_url: str, storage: Storage) -> None:
    assert storage.tokens is not None and storage.client is not None
    async with httpx2.AsyncClient(base_url=base_url) as http:
        revoked = await http.post(
            "/revoke", data={"token": storage.tokens.access_token, "client_id": storage.client.client_id or ""}
        )
        assert revoked.status_code == 200
        answer = await http.post(
            "/mcp",
            headers={"Authorization": f"Bearer {storage.tokens.access_token}", "Accept": "application/json"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        )
        assert answer.status_code == 401 and "invalid_token" in answer.headers["www-authenticate"]


@asynccontextmanager
async def hosting(
    served: Companion, tmp_path: Path, port: int, path: str, document: Callable[[Request], Awaitable[JSONResponse]]
) -> AsyncIterator[None]:
    """Serve a client metadata document over TLS on 127.0.0.1; the server fetches it through its real fetcher, with
    a client that trusts the test's authority, as a deployment behind a private CA would."""
    tls = loopback_tls(tmp_path)
    async with (
        serving(
            Starlette(routes=[Route(path, document)]),
            port,
            ssl_certfile=str(tls.cert_file),
            ssl_keyfile=str(tls.key_file),
        ),
        httpx.AsyncClient(verify=tls.client_context()) as trusting,
    ):
        served.authorization.clients.fetcher = DocumentFetcher(trusting, https_only=True, allow_private=True)
        yield


async def test_the_sdk_client_registers_signs_in_calls_refreshes_and_is_revoked(live: tuple[str, Companion]) -> None:
    base_url, _ = live
    storage, person = await sign_in_and_use(base_url)
    assert storage.client is not None and not (storage.client.client_id or "").startswith("http")
    assert query_of(person.back)["iss"] == base_url
    await revoke_and_check_refused(base_url, storage)


async def test_the_sdk_client_signs_in_with_its_client_metadata_document(
    live: tuple[str, Companion], tmp_path: Path
) -> None:
    base_url, served = live
    port = free_port()
    client_id = f"https://127.0.0.1:{port}/oauth/client.json"
    fetched: list[str] = []

    async def document(request: Request) -> JSONResponse:
        fetched.append(request.url.path)
        return JSONResponse(
            {
                "client_id": client_id,
                "client_name": "Metadata Document Assistant",
                "client_uri": f"https://127.0.0.1:{port}/",
                "redirect_uris": [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            }
        )

    async with hosting(served, tmp_path, port, "/oauth/client.json", document):
        storage, _ = await sign_in_and_use(base_url, client_metadata_url=client_id)
    assert storage.client is not None and storage.client.client_id == client_id
    assert fetched, "the document was fetched"
    assert len(fetched) == 1, "and kept, not fetched for every request"
    await revoke_and_check_refused(base_url, storage)


async def test_a_metadata_document_whose_redirects_differ_is_held_to_its_own(
    live: tuple[str, Companion], tmp_path: Path
) -> None:
    """The document, not the request, says where the browser may go back to."""
    base_url, served = live
    port = free_port()
    client_id = f"https://127.0.0.1:{port}/client.json"

    async def document(request: Request) -> JSONResponse:
        return JSONResponse(
            {"client_id": client_id, "client_name": "X", "redirect_uris": ["http://127.0.0.1:1/elsewhere"]}
        )

    async with hosting(served, tmp_path, port, "/client.json", document), httpx2.AsyncClient(base_url=base_url) as http:
        answer = await http.get(
            "/authorize",
            params={
                "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "code_challenge": "x" * 43,
            },
        )  # fmt: skip
    assert answer.status_code == 400 and "location" not in answer.headers

"""What every provider fake shares: an OAuth 2 server, bearer checks, scripted failures and a request log.

A fake is a real HTTP server on 127.0.0.1 (see ``serve``), reached through
``COMPANION_PROVIDER_ORIGINS``, so the product's client layer runs unchanged.
Each provider module adds the routes of its documented API with the
documented request and response shapes.

The OAuth server follows RFC 6749 and RFC 7636: authorization codes are single
use, bound to the client, the redirect URI and an S256 code challenge, and a
refresh token can be revoked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

CLIENT_ID = "companion-test-client"
CLIENT_SECRET = "companion-test-client-secret"


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Failure:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    when: Callable[[Seen], bool] | None = None


class ProviderFake:
    """A provider's API and its OAuth server, with knobs a test turns."""

    #: Header and scheme an API key arrives in; providers differ.
    key_header = "Authorization"
    key_scheme = "Bearer"

    def __init__(
        self,
        routes: list[BaseRoute],
        *,
        authorize_path: str = "/oauth/authorize",
        token_path: str = "/oauth/token",
        open_paths: tuple[str, ...] = (),
    ) -> None:
        self.authorize_path = authorize_path
        self.token_path = token_path
        self.open_paths = open_paths
        self.access_tokens: dict[str, float] = {}
        self.refresh_tokens: set[str] = set()
        self.api_keys: set[str] = set()
        self.codes: dict[str, dict[str, str]] = {}
        self.failures: list[Failure] = []
        # Set to an unset asyncio.Event and API calls wait on it: a provider that takes its time to answer.
        self.hold: asyncio.Event | None = None
        self.seen: list[Seen] = []
        self.refreshes = 0
        self.issued: list[str] = []
        self.token_delay = 0.0
        self.expires_in = 3600
        self.origin = ""
        self.app = Starlette(
            routes=[
                Route(authorize_path, self.authorize, methods=["GET"]),
                Route(token_path, self._token_endpoint, methods=["POST"]),
                *routes,
            ]
        )
        self.app.add_middleware(_Gate, fake=self)  # type: ignore[arg-type]

    # -- knobs ---------------------------------------------------------------------------------

    def issue(self, *, expires_in: int | None = None) -> dict[str, Any]:
        """Tokens as a token endpoint would return them, already valid here."""
        access, refresh = "at-" + secrets.token_urlsafe(12), "rt-" + secrets.token_urlsafe(12)
        lifetime = self.expires_in if expires_in is None else expires_in
        self.access_tokens[access] = time.time() + lifetime
        self.refresh_tokens.add(refresh)
        self.issued += [access, refresh]
        return {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": "read write",
        }

    def issue_key(self) -> str:
        key = "key-" + secrets.token_urlsafe(16)
        self.api_keys.add(key)
        self.issued.append(key)
        return key

    def expire_access_tokens(self) -> None:
        """Every access token is refused from now on, as after a password change or an early expiry."""
        self.access_tokens = dict.fromkeys(self.access_tokens, 0.0)

    def revoke_refresh_tokens(self) -> None:
        self.refresh_tokens.clear()
        self.expire_access_tokens()

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
        when: Callable[[Seen], bool] | None = None,
    ) -> None:
        """Answer the next ``times`` API requests (those ``when`` accepts) with this error instead."""
        self.failures.extend(Failure(status, headers or {}, body, when) for _ in range(times))

    def api_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path not in (self.authorize_path, self.token_path)]

    # -- the provider's answers, overridable in each fake ---------------------------------------

    def unauthorized(self) -> Response:
        return JSONResponse({"message": "invalid credentials"}, status_code=401)

    def failure_response(self, failure: Failure) -> Response:
        body = failure.body if failure.body is not None else {"message": f"scripted {failure.status}"}
        return JSONResponse(body, status_code=failure.status, headers=failure.headers)

    def is_authorized(self, request: Request) -> bool:
        key = request.headers.get(self.key_header, "")
        if self.key_scheme:
            key = key.removeprefix(f"{self.key_scheme} ") if key.startswith(f"{self.key_scheme} ") else ""
        if key in self.api_keys:
            return True
        bearer = request.headers.get("Authorization", "")
        token = bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else ""
        return self.access_tokens.get(token, 0.0) > time.time()

    # -- OAuth 2 -------------------------------------------------------------------------------

    async def authorize(self, request: Request) -> Response:
        """Approve at once, as a signed-in person clicking Allow would, and redirect with a code."""
        query = request.query_params
        if query.get("client_id") != CLIENT_ID or query.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return JSONResponse({"error": "invalid_request", "error_description": "PKCE required"}, status_code=400)
        code = "code-" + secrets.token_urlsafe(12)
        self.codes[code] = {"challenge": query["code_challenge"], "redirect_uri": query.get("redirect_uri", "")}
        target = query.get("redirect_uri", "")
        return RedirectResponse(f"{target}?{urlencode({'code': code, 'state': query.get('state', '')})}", 302)

    async def _token_endpoint(self, request: Request) -> Response:
        # Looked up per request, so a test can swap in a provider's odd answer.
        return await self.token(request)

    async def token(self, request: Request) -> Response:
        form = dict(await request.form())
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
        if client_id != CLIENT_ID or client_secret != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            issued = self.codes.pop(str(form.get("code", "")), None)
            if issued is None:
                return JSONResponse({"error": "invalid_grant", "error_description": "unknown or used code"}, 400)
            verifier = str(form.get("code_verifier", ""))
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if not verifier or challenge != issued["challenge"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE verification failed"}, 400)
            if form.get("redirect_uri") != issued["redirect_uri"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "redirect_uri mismatch"}, 400)
            return JSONResponse(self.issue())
        if grant == "refresh_token":
            refresh = str(form.get("refresh_token", ""))
            if refresh not in self.refresh_tokens:
                return JSONResponse({"error": "invalid_grant", "error_description": "refresh token revoked"}, 400)
            self.refresh_tokens.discard(refresh)
            self.refreshes += 1
            return JSONResponse(self.issue())
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)


class _Gate:
    """Logs every request, plays scripted failures, then lets only authorized API calls through."""

    def __init__(self, app: Any, fake: ProviderFake) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        body = await request.body()
        fake = self.fake
        seen = Seen(request.method, request.url.path, dict(request.query_params), dict(request.headers), body)
        fake.seen.append(seen)

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        path = request.url.path
        if path in (fake.authorize_path, fake.token_path) or path in fake.open_paths:
            await self.app(scope, replay, send)
            return
        failure = next((f for f in fake.failures if f.when is None or f.when(seen)), None)
        if failure is not None:
            fake.failures.remove(failure)
            await fake.failure_response(failure)(scope, replay, send)
            return
        if not fake.is_authorized(request):
            await fake.unauthorized()(scope, replay, send)
            return
        if fake.hold is not None:
            await fake.hold.wait()
        await self.app(scope, replay, send)


@asynccontextmanager
async def serve(fake: ProviderFake) -> AsyncIterator[str]:
    """Run the fake with uvicorn on a free port of 127.0.0.1; yield its origin."""
    config = uvicorn.Config(fake.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.origin = f"http://127.0.0.1:{port}"
    try:
        yield fake.origin
    finally:
        server.should_exit = True
        await task

"""The composition root: builds every part once and joins them into one Starlette app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version

import httpx
from cachetools import TTLCache
from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from approvals.audit import AuditLog
from manifests import MANIFEST_DIR
from server.gateway import ToolGateway
from server.mcp_endpoint import TOOLS_SCOPE, PrincipalToken, build_mcp_server, principal_from_bearer
from server.settings import Settings
from store.crypto import SecretBox
from store.db import Database
from store.keys import authenticate, digest
from store.principal import Principal
from tools.registry import Registry


def package_version() -> str:
    try:
        return version("harmony-companion")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class Companion:
    """The parts of one running server, shared by the MCP endpoint, the API and the CLI."""

    settings: Settings
    db: Database
    box: SecretBox
    registry: Registry
    http: httpx.AsyncClient
    audit: AuditLog
    gateway: ToolGateway
    _principals: TTLCache[str, Principal] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._principals = TTLCache(maxsize=10_000, ttl=self.settings.cache_seconds or 1)

    @classmethod
    def build(cls, settings: Settings, *, registry: Registry | None = None) -> Companion:
        db = Database(settings.resolved_database_url)
        box = SecretBox(settings.encryption_keys())
        registry = registry or Registry.load(MANIFEST_DIR)
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=False)
        audit = AuditLog(db)
        gateway = ToolGateway(registry, db, box, http, audit, cache_seconds=settings.cache_seconds)
        return cls(settings, db, box, registry, http, audit, gateway)

    async def principal_for(self, token: str) -> Principal | None:
        """The principal behind a bearer key, reusing a lookup for ``cache_seconds``.

        A key revoked elsewhere stops working here within that time.
        """
        cache_key = digest(token)
        if cache_key in self._principals:
            return self._principals[cache_key]
        async with self.db.session() as session:
            principal = await authenticate(
                session, token, touch_after=timedelta(seconds=self.settings.api_key_touch_seconds)
            )
        if principal is not None and self.settings.cache_seconds:
            self._principals[cache_key] = principal
        return principal

    async def aclose(self) -> None:
        await self.audit.aclose()
        await self.http.aclose()
        await self.db.dispose()


class ApiKeyVerifier(TokenVerifier):
    """Resolves a bearer API key to its principal for the SDK's auth middleware."""

    def __init__(self, companion: Companion) -> None:
        self.companion = companion

    async def verify_token(self, token: str) -> AccessToken | None:
        principal = await self.companion.principal_for(token)
        if principal is None:
            return None
        return PrincipalToken(
            token=token,
            client_id=principal.key_id,
            subject=principal.user_id,
            scopes=sorted(principal.scopes),
            expires_at=None,
            principal=principal,
        )


def create_app(companion: Companion) -> Starlette:
    settings = companion.settings
    mcp_server = build_mcp_server(companion.gateway, principal_from_bearer, version=package_version())
    mcp_app = mcp_server.streamable_http_app(
        streamable_http_path="/mcp",
        auth=AuthSettings(
            issuer_url=settings.base_url,
            resource_server_url=settings.mcp_url,
            required_scopes=[TOOLS_SCOPE],
            validate_token_resource=False,
        ),
        token_verifier=ApiKeyVerifier(companion),
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=settings.host_allowlist,
            allowed_origins=settings.origin_allowlist,
        ),
    )

    async def healthz(request: Request) -> JSONResponse:
        try:
            async with companion.db.session() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "version": package_version()})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The SDK app's own lifespan is not used, so the MCP session manager is started here.
        async with mcp_server.session_manager.run():
            try:
                yield
            finally:
                await companion.aclose()

    # The SDK's routes (/mcp and the RFC 9728 metadata) and its auth middleware
    # are lifted into this app rather than mounted, so a call crosses one
    # Starlette stack instead of two. The auth middleware only identifies the
    # caller; routes that need a principal enforce it themselves.
    app = Starlette(
        routes=[Route("/healthz", healthz), *mcp_app.routes],
        middleware=mcp_app.user_middleware,
        lifespan=lifespan,
    )
    app.state.companion = companion
    return app

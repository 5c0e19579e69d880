"""The composition root: builds every part once and joins them into one Starlette app."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

import httpx
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.routes import create_protected_resource_routes
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from approvals.audit import AuditLog
from approvals.rulebook import RuleBook
from manifests import MANIFEST_DIR
from server import oauth, slack, web
from server.api import errors
from server.api import v1 as api_v1
from server.api.errors import ApiError
from server.api.nul import RefuseNul
from server.api.ratelimit import RateLimit
from server.bearer import AudienceBearerBackend, PrincipalVerifier
from server.mcp.endpoint import TOOLS_SCOPE, PrincipalSource, build_mcp_server, principal_from_bearer
from server.observability.logging import RequestId
from server.observability.loop import watch_loop_lag
from server.observability.metrics import Metrics, metrics_routes
from server.services.addresses import allow_private, host_policy
from server.services.ai_models import catalogue_of
from server.services.approval_flow import ApprovalFlow
from server.services.approval_mail import ApprovalMail
from server.services.assistants.authorization import SCOPES, AuthorizationServer
from server.services.assistants.clients import AssistantClients
from server.services.assistants.external import ExternalTokens, Resources
from server.services.assistants.issuer_keys import IssuerKeys
from server.services.cards import Cards
from server.services.documents import DocumentFetcher
from server.services.integrations.autosync import AutoSync
from server.services.integrations.lifecycle import Integrations
from server.services.integrations.oauth import OAuthConnect
from server.services.integrations.sync import SyncEngine
from server.services.notices import Notices
from server.services.processing import worker as processing
from server.services.push import WebPush
from server.services.slack_approvals import SlackApprovals, SlackChannel
from server.services.tool_gateway import ToolGateway, catalog_of
from server.services.webhooks import dispatcher
from server.services.wiring import ConsoleServices, RestServices
from server.settings import Settings
from server.version import package_version
from store import assistant_tokens, invalidation, wakeups
from store.cache import SharedCache
from store.crypto import SecretBox, derive_key
from store.db import Database
from store.invalidation import Topic, subscribe
from store.keys import TOKEN_PREFIX, authenticate, digest
from store.listener import Listener
from store.principal import Principal
from tools.registry import Registry
from tools.tokens import ProviderPolicy, TokenKeeper


def provider_policy(settings: Settings) -> ProviderPolicy:
    return ProviderPolicy(
        origins=settings.provider_origins,
        oauth_clients={
            app: (client.client_id, client.client_secret.get_secret_value())
            for app, client in settings.oauth_clients.items()
        },
        timeout=settings.provider_timeout_seconds,
        retries=settings.provider_retries,
        max_wait=settings.provider_max_wait_seconds,
    )


@dataclass(eq=False)  # compared by identity: it is subscribed to cache invalidation, which needs a hash
class Companion:
    """The parts of one running server, shared by the MCP endpoint, the API and the CLI."""

    settings: Settings
    db: Database
    box: SecretBox
    registry: Registry
    http: httpx.AsyncClient
    audit: AuditLog
    rulebook: RuleBook
    gateway: ToolGateway
    integrations: Integrations
    oauth: OAuthConnect
    sync: SyncEngine
    autosync: AutoSync
    mail: ApprovalMail
    notices: Notices
    authorization: AuthorizationServer
    #: Set when an external authorization server issues the access tokens; Companion's own then issues none.
    external: ExternalTokens | None
    #: Approvals in Slack: the channel, its sweep, and what the Slack front end is handed.
    slack: SlackApprovals = field(kw_only=True)
    #: The cards the console, the approval e-mail and Slack tell each call's story with: one, so they share its reads.
    cards: Cards = field(kw_only=True)
    _principals: SharedCache[str, Principal | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._principals = SharedCache(self.settings.cache_seconds)
        subscribe(self)

    @classmethod
    def build(cls, settings: Settings, *, registry: Registry | None = None) -> Companion:
        # A broken models file stops the server here rather than on the Models tab.
        catalogue_of(settings)
        db = Database(settings.resolved_database_url, pool_size=settings.database_pool_size)
        box = SecretBox(settings.encryption_keys())
        registry = registry or Registry.load(MANIFEST_DIR)
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=False)
        audit = AuditLog(db)
        rulebook = RuleBook(db, catalog_of(registry), cache_seconds=settings.cache_seconds)
        flow = ApprovalFlow(
            db,
            box,
            rulebook,
            base_url=settings.base_url,
            ttl=timedelta(seconds=settings.approval_ttl_seconds),
            wait_seconds=settings.approval_wait_seconds,
            lease=timedelta(seconds=settings.execution_lease_seconds),
            max_pending_per_key=settings.max_pending_approvals_per_key,
        )
        metrics = Metrics()
        keeper = TokenKeeper(
            db.sessions, box, provider_policy(settings), on_refresh_failure=metrics.token_refresh_failed
        )
        # Hosts typed into setup fields (SMTP) follow the webhook address policy, at connect time and at use.
        hosts = host_policy(settings)
        gateway = ToolGateway(
            registry,
            db,
            box,
            http,
            audit,
            rulebook,
            flow,
            keeper,
            cache_seconds=settings.cache_seconds,
            metrics=metrics,
            hosts=hosts,
        )
        cards = Cards(gateway, cache_seconds=settings.cache_seconds)
        integrations = Integrations(db, box, registry, keeper, http, hosts=hosts)
        oauth = OAuthConnect(integrations, settings.base_url, timedelta(seconds=settings.oauth_state_seconds))
        sync = SyncEngine(integrations)
        autosync = AutoSync(sync, timedelta(minutes=settings.auto_sync_minutes or 60))
        mail = ApprovalMail(settings, db, cards)
        notices = Notices([mail])
        notices.add(WebPush(settings, db, http))
        slack_approvals = SlackApprovals.of(SlackChannel(settings, db, box, registry, http, keeper, flow, cards))
        notices.add(slack_approvals.channel)
        flow.announce = notices.announce
        # Client metadata documents are fetched under the webhook address policy, over https unless it allows
        # private addresses (development), where a document served on loopback over http is accepted too.
        documents = DocumentFetcher(http, https_only=not allow_private(settings), allow_private=allow_private(settings))
        clients = AssistantClients(
            db,
            box,
            documents,
            registrations_per_window=settings.oauth_registrations_per_window,
            unused_for=timedelta(days=settings.oauth_unused_client_days),
        )
        authorization = AuthorizationServer(settings, db, clients)
        return cls(
            settings, db, box, registry, http, audit, rulebook, gateway, integrations, oauth, sync, autosync, mail,
            notices, authorization, external_tokens(settings, db, documents, authorization), slack=slack_approvals,
            cards=cards,
        )  # fmt: skip

    def rest_services(self) -> RestServices:
        """What the REST API is handed."""
        return RestServices(
            self.settings,
            self.db,
            self.box,
            self.registry,
            self.rulebook,
            self.gateway.flow,
            self.integrations,
            self.oauth,
            self.sync,
            self.authorization,
        )

    def console_services(self) -> ConsoleServices:
        """What the web console is handed."""
        rest = self.rest_services()
        return ConsoleServices(
            **{part.name: getattr(rest, part.name) for part in fields(rest)}, mail=self.mail, cards=self.cards
        )

    def mcp_server(self, principal_source: PrincipalSource) -> Server[Any]:
        return build_mcp_server(
            self.gateway,
            principal_source,
            version=package_version(),
            state_key=derive_key(self.settings.encryption_keys()[0], "mcp request state"),
            state_ttl=float(self.settings.approval_ttl_seconds),
        )

    async def principal_for(self, token: str) -> Principal | None:
        """The principal behind a bearer key or access token, reusing a lookup for ``cache_seconds``.

        A key revoked or a role changed on any replica is forgotten here as soon
        as the change commits (on PostgreSQL), and within that time in any case.
        """

        touch_after = timedelta(seconds=self.settings.api_key_touch_seconds)
        external = self.external

        async def lookup() -> Principal | None:
            if external is not None and not token.startswith(TOKEN_PREFIX):
                # Checked outside a database session: it may wait for the authorization server's keys.
                return await external.principal_for(token)
            async with self.db.session() as session:
                if token.startswith(TOKEN_PREFIX):
                    return await authenticate(session, token, touch_after=touch_after)
                return await assistant_tokens.authenticate(session, token, touch_after=touch_after)

        # A refusal is not kept: a key created a moment ago on another replica works at once.
        return await self._principals.get(digest(token), lookup, keep=lambda found: found is not None)

    def forget(self, topic: Topic) -> None:
        if topic is Topic.KEYS:
            self._principals.clear()

    async def aclose(self) -> None:
        await self.sync.wait()
        await self.notices.drain()
        await self.audit.aclose()
        await self.http.aclose()
        await self.db.dispose()


def external_tokens(
    settings: Settings, db: Database, documents: DocumentFetcher, authorization: AuthorizationServer
) -> ExternalTokens | None:
    """The checks for an external authorization server's access tokens, if one is configured."""
    issuer = settings.authorization_server
    if issuer is None:
        return None
    return ExternalTokens(
        issuer=issuer,
        keys=IssuerKeys(issuer, documents),
        resources=Resources(mcp=settings.mcp_url, api=authorization.api_url, server=settings.base_url),
        db=db,
        user_claim=settings.authorization_user_claim,
        workspace_claim=settings.authorization_workspace_claim,
    )


def issuer_of(companion: Companion) -> str:
    """The authorization server this server's resources name: the external one if configured, else its own."""
    return companion.settings.authorization_server or companion.authorization.issuer


def audiences_at(authorization: AuthorizationServer) -> Callable[[str], tuple[str, ...]]:
    """The audiences an access token may carry at a path: its own resource's, or the whole server's."""
    mcp = (authorization.settings.mcp_url, authorization.issuer)
    api = (authorization.api_url, authorization.issuer)

    def at(path: str) -> tuple[str, ...]:
        if path == "/mcp" or path.startswith("/mcp/"):
            return mcp
        if path.startswith("/api/"):
            return api
        return ()

    return at


#: An issuer is compared as an exact string (RFC 8414 section 3.3), so one with no path must not gain the "/" that
#: AnyHttpUrl adds; the SDK's own settings keep it out the same way.
_URL = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))


def api_resource_metadata(authorization: AuthorizationServer, issuer: str) -> list[Route]:
    """RFC 9728 metadata for the REST API, as the SDK serves it for the MCP endpoint."""
    return create_protected_resource_routes(
        resource_url=_URL.validate_python(authorization.api_url),
        authorization_servers=[_URL.validate_python(issuer)],
        scopes_supported=[scope for scope in SCOPES if scope != TOOLS_SCOPE],
        resource_name="Harmony Companion REST API",
    )


def create_app(companion: Companion) -> Starlette:
    settings = companion.settings
    authorization = companion.authorization
    issuer = issuer_of(companion)
    verifier = PrincipalVerifier(companion.principal_for)
    mcp_server = companion.mcp_server(principal_from_bearer)
    mcp_app = mcp_server.streamable_http_app(
        streamable_http_path="/mcp",
        auth=AuthSettings(
            issuer_url=issuer,
            resource_server_url=settings.mcp_url,
            required_scopes=[TOOLS_SCOPE],
            validate_token_resource=False,
        ),
        token_verifier=verifier,
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
        background: list[asyncio.Task[Any]] = []
        if settings.run_workers:
            # The API's background work: delivering webhooks, and processing uploaded meetings.
            background.append(asyncio.create_task(dispatcher.worker(settings, companion.db, companion.box)))
            background.append(asyncio.create_task(processing.worker(settings, companion.db, companion.http)))
        background.append(asyncio.create_task(watch_loop_lag(companion.gateway.metrics.loop_lag.observe)))
        if settings.auto_sync_minutes:
            background.append(asyncio.create_task(companion.autosync.forever()))
        # Approvals no one decided in time get the workspace's admins as approvers (each once, on any replica).
        background.append(asyncio.create_task(companion.gateway.flow.escalate_forever(companion.registry.tools)))
        if companion.slack.channel.configured:
            # Slack messages about approvals decided elsewhere, or expired, are updated.
            background.append(asyncio.create_task(companion.slack.channel.forever()))
        if not companion.db.is_sqlite:
            # Decisions made on other replicas wake this one's waiting calls, and their changes to keys, rules
            # and connections clear this one's caches (PostgreSQL LISTEN/NOTIFY).
            handlers = {wakeups.CHANNEL: wakeups.wake, invalidation.CHANNEL: invalidation.dispatch}
            background.append(asyncio.create_task(Listener(settings.resolved_database_url, handlers).forever()))
        async with mcp_server.session_manager.run():
            try:
                yield
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                await companion.aclose()

    # The SDK's routes (/mcp and the RFC 9728 metadata) and its auth middleware
    # are lifted into this app rather than mounted, so a call crosses one
    # Starlette stack instead of two. The auth middleware only identifies the
    # caller; routes that need a principal enforce it themselves.
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            *metrics_routes(companion.gateway.metrics, companion.db, settings.metrics_token),
            Mount("/api/v1", routes=api_v1.routes()),
            *web.routes,
            *slack.routes,
            *mcp_app.routes,
            *api_resource_metadata(authorization, issuer),
            # With an external authorization server Companion is a resource server only: it issues nothing.
            *(oauth.routes(authorization, authorization.clients) if authorization.enabled else []),
        ],
        middleware=[
            Middleware(RequestId),
            Middleware(RefuseNul),
            web.session_middleware(settings),
            # The SDK's bearer middleware, with each access token held to its audience (server/bearer.py).
            Middleware(AuthenticationMiddleware, backend=AudienceBearerBackend(verifier, audiences_at(authorization))),
            Middleware(AuthContextMiddleware),
            Middleware(RateLimit, db_of=lambda scope: companion.db),
        ],
        exception_handlers={ApiError: errors.api_error, HTTPException: errors.http_error, 500: errors.server_error},
        lifespan=lifespan,
    )
    # Each front end reads back only its own typed services (server.api.services, server.web.pages); the browser
    # session, which both use, only the database.
    app.state.rest = companion.rest_services()
    app.state.console = companion.console_services()
    app.state.slack = companion.slack
    app.state.database = companion.db
    return app

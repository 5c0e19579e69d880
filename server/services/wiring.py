"""What the composition root (``server.app``) hands each HTTP front end: the services it uses, typed.

``server.app`` builds every service once, then puts one of these on the Starlette app's state for each front end; the
front end reads it back with its own accessor (``server.api.services.services_of``, ``server.web.pages.services_of``). A
front end so sees only the parts named here, never the container, and never imports ``server.app``. The MCP front end
is handed its ``ToolGateway`` directly, and the CLI builds what it needs itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from approvals.rulebook import RuleBook
from server.services.addresses import allow_private, require_https
from server.services.approval_flow import ApprovalFlow
from server.services.approval_mail import ApprovalMail
from server.services.assistants.authorization import AuthorizationServer
from server.services.cards import Cards
from server.services.documents import DocumentFetcher
from server.services.integrations.lifecycle import Integrations
from server.services.integrations.oauth import OAuthConnect
from server.services.integrations.sync import SyncEngine
from server.services.oidc.code_flow import CodeFlow
from server.services.oidc.provider import DocumentCache, Providers, document_cache
from server.services.oidc.sign_in import CompanySignIn
from server.settings import Settings
from store.crypto import SecretBox
from store.db import Database
from tools.registry import Registry


@dataclass(frozen=True, slots=True)
class RestServices:
    """What the REST API (``server.api``) uses."""

    settings: Settings
    db: Database
    box: SecretBox
    registry: Registry
    rulebook: RuleBook
    flow: ApprovalFlow
    integrations: Integrations
    oauth: OAuthConnect
    sync: SyncEngine
    #: Companion's own authorization server: its consent page, and the assistants people signed in to.
    authorization: AuthorizationServer
    #: Identity providers' discovery documents and keys, kept a few minutes between sign-ins.
    provider_documents: DocumentCache = field(default_factory=document_cache, kw_only=True)

    @property
    def company_sign_in(self) -> CompanySignIn:
        """Sign-in through each workspace's identity provider, fetching through the server's shared HTTP client
        under the webhook address policy."""
        settings, http = self.settings, self.integrations.http
        https_only, private = require_https(settings), allow_private(settings)
        return CompanySignIn(
            self.db,
            self.box,
            Providers(DocumentFetcher(http, https_only, private), self.provider_documents),
            CodeFlow(https_only, private),
            settings.base_url,
        )


@dataclass(frozen=True, slots=True)
class ConsoleServices(RestServices):
    """What the web console (``server.web``) uses: REST's services, whether approval e-mail can be sent, and the
    cards that tell each approval's story."""

    mail: ApprovalMail
    cards: Cards

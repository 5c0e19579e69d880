"""What the composition root (``server.app``) hands each HTTP front end: the services it uses, typed.

``server.app`` builds every service once, then puts one of these on the Starlette app's state for each front end; the
front end reads it back with its own accessor (``server.api.services.services_of``, ``server.web.pages.services_of``). A
front end so sees only the parts named here, never the container, and never imports ``server.app``. The MCP front end
is handed its ``ToolGateway`` directly, and the CLI builds what it needs itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from approvals.rulebook import RuleBook
from server.services.approval_flow import ApprovalFlow
from server.services.approval_mail import ApprovalMail
from server.services.assistants.authorization import AuthorizationServer
from server.services.integrations.lifecycle import Integrations
from server.services.integrations.oauth import OAuthConnect
from server.services.integrations.sync import SyncEngine
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


@dataclass(frozen=True, slots=True)
class ConsoleServices(RestServices):
    """What the web console (``server.web``) uses: REST's services, and whether approval e-mail can be sent."""

    mail: ApprovalMail

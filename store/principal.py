"""Who is calling: the identity a bearer credential resolves to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from store.models import KeyKind, Plan, Role

#: Scopes. An API key has ``tools`` and/or ``api``; an access token from the authorization server has any of
#: ``tools``, ``api:read``, ``api:write`` and ``approvals`` (the last only where an admin grants it to its client).
TOOLS = "tools"
API = "api"
API_READ = "api:read"
API_WRITE = "api:write"
APPROVALS = "approvals"


@dataclass(frozen=True)
class Principal:
    user_id: str
    email: str
    workspace_id: str
    workspace_slug: str
    role: Role
    key_id: str
    key_kind: KeyKind
    scopes: frozenset[str]
    timezone: str = "UTC"
    manages_integrations: bool = False
    plan: Plan = Plan.PLUS
    rate_limit: int | None = None
    # The key is used by a person-facing host (its owner said so, and the workspace allows it): an answer to a
    # form in its chat comes from the person, so it may approve up to ``in_chat_max_risk`` (SECURITY.md).
    person_facing: bool = False
    in_chat_max_risk: str = "delete"
    last_asked_at: datetime | None = None
    # The assistant in words: the key's name, or the OAuth client's. People see it beside who it acts for.
    assistant: str = ""
    # Set for an access token from an authorization server: the client it was issued to, and its audience (the
    # resource it may be used at). An API key has neither and works at every resource it has a scope for.
    client_id: str | None = None
    audience: str | None = None

    @property
    def is_assistant_token(self) -> bool:
        return self.client_id is not None

    @property
    def may_read_api(self) -> bool:
        return bool(self.scopes & {API, API_READ, API_WRITE})

    @property
    def may_write_api(self) -> bool:
        """A person's user key, or an assistant's token the person gave ``api:write`` at consent; never an agent key."""
        if self.is_assistant_token:
            return API_WRITE in self.scopes
        return self.key_kind is KeyKind.USER and API in self.scopes

    @property
    def may_decide(self) -> bool:
        """A person's own credential, or an assistant's token with ``approvals``, which only an admin grants."""
        if self.is_assistant_token:
            return APPROVALS in self.scopes
        return self.key_kind is KeyKind.USER

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)

    @property
    def may_manage_workspace_integrations(self) -> bool:
        return self.is_admin or self.manages_integrations

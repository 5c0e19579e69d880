"""Who is calling: the identity a bearer credential resolves to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from store.models import KeyKind, Plan, Role


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

    @property
    def is_admin(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)

    @property
    def may_manage_workspace_integrations(self) -> bool:
        return self.is_admin or self.manages_integrations

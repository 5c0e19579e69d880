"""What an adapter is given for one call: who is calling, through which connection, and the means to act."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.connections import ConnectionView
from store.principal import Principal
from tools.errors import ToolError
from tools.manifest import Manifest
from tools.provider import ProviderApi
from tools.tokens import TokenKeeper


class HostCheck(Protocol):
    """The deployment's address policy for hosts typed into setup fields (``server.services.addresses.HostPolicy``).

    ``addresses`` returns the addresses the host may be reached on, or raises ValueError: with ``refused``
    true when the policy refuses where it points (an internal address), false when the name does not resolve.
    """

    def addresses(self, host: str, port: int) -> Awaitable[list[str]]: ...


@dataclass
class ToolContext:
    principal: Principal
    connection: ConnectionView
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    credentials: dict[str, Any] = field(default_factory=dict, repr=False)
    manifest: Manifest | None = None
    keeper: TokenKeeper | None = None
    # Set when a person approved this call: the same approval runs again only by a person's choice, so a
    # provider that accepts an idempotency key can be given one derived from it.
    approval_id: str | None = None
    # Where an adapter that connects to a host from its setup (SMTP) may connect. Every context the server
    # builds carries the deployment's policy; None (a context a test built by hand) checks nothing.
    hosts: HostCheck | None = None

    @cached_property
    def api(self) -> ProviderApi:
        """The provider's API as this connection may use it: authenticated, refreshed, retried."""
        if self.manifest is None or self.keeper is None:
            raise ToolError("This tool has no provider to call.", code="server_error")
        return ProviderApi(self.manifest, self.connection, self.http, self.keeper, self.credentials)

    @property
    def options(self) -> dict[str, Any]:
        return self.connection.options

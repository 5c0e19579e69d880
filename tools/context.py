"""What an adapter is given for one call: who is calling, through which connection, and the means to act."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.connections import ConnectionView
from store.principal import Principal


@dataclass
class ToolContext:
    principal: Principal
    connection: ConnectionView
    sessions: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    credentials: dict[str, Any] = field(default_factory=dict, repr=False)

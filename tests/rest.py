"""Companion's REST API over the in-process app, as a key's holder calls it: each request names its key, and a
person decides an approval, or changes it, as the console's buttons do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

BASE = "http://127.0.0.1:8000"


@pytest.fixture(name="http")
async def rest_client(app_client: Any) -> AsyncIterator[httpx2.AsyncClient]:
    """A client of the in-process app that keeps no cookies: its requests are only as good as the key they name."""
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def decide(
    http: httpx2.AsyncClient, key: str, approval_id: str, approve: bool = True, reason: str | None = None
) -> httpx2.Response:
    action = "approve" if approve else "deny"
    body = {} if approve else {"reason": reason}
    return await http.post(f"/api/v1/approvals/{approval_id}/{action}", headers=bearer(key), json=body)


async def edit(http: httpx2.AsyncClient, key: str, approval_id: str, arguments: Any) -> httpx2.Response:
    """Approve the call with ``arguments`` in place of what the assistant asked for."""
    return await http.post(f"/api/v1/approvals/{approval_id}/edit", headers=bearer(key), json={"arguments": arguments})

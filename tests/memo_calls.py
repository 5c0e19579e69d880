"""An assistant's calls to the tests' own Memo app over MCP, in process, and the workspace rule that makes them wait
for an approval: what the approval tests ask for before a person decides."""

from __future__ import annotations

from typing import Any

import httpx2

from tests.apps import memo
from tests.conftest import mcp_client
from tests.rest import BASE, bearer


async def add_note(transport: Any, key: str, text: str) -> Any:
    async with mcp_client(BASE, key, transport=transport) as client:
        return await client.call_tool("memo_add_note", {"text": text})


async def asked(transport: Any, key: str, text: str) -> str:
    """Ask to add a note; the id of the approval it waits for."""
    waiting = await add_note(transport, key, text)
    assert waiting.structured_content["status"] == "approval_required", waiting.content
    return str(waiting.structured_content["approval_id"])


async def share(transport: Any, key: str, arguments: dict[str, Any]) -> Any:
    async with mcp_client(BASE, key, transport=transport) as client:
        return await client.call_tool("memo_share_note", arguments)


def shared() -> list[dict[str, Any]]:
    """What each memo_share_note that ran was called with, in order."""
    return [arguments for name, _, arguments in memo.CALLS if name == "share_note"]


async def ask_rule(http: httpx2.AsyncClient, admin_key: str, **fields: Any) -> dict[str, Any]:
    """An admin's workspace rule that adding a note waits for an approval, with ``fields`` on top; as saved."""
    body = {"effect": "ask", "scope": "workspace", "app": "memo", "tool": "memo_add_note", **fields}
    made = await http.post("/api/v1/rules", headers=bearer(admin_key), json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())

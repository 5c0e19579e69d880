"""``client.keys``: create, list, change, revoke and rotate API keys. These calls need a user key, not an agent key.

``person_facing`` marks an agent key as used by a host that shows approval forms to you and never to the AI
model (Claude Desktop, Claude Code, VS Code): answers in its chat then approve calls, within the workspace's
policy. Mark only such a key (SECURITY.md).

A new key's ``token`` is in the answer that creates it (or rotates to it) and
never again: the server keeps only its hash.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, Literal

from harmony_client._http import AsyncHttp, Call, SyncHttp, segment
from harmony_client.models import ApiKey, KeyList, NewApiKey

Kind = Literal["agent", "user"]
Scope = Literal["api", "tools"]


def _create(name: str, kind: Kind, scopes: Sequence[Scope] | None, person_facing: bool) -> Call:
    body: dict[str, Any] = {"name": name, "kind": kind}
    if scopes is not None:
        body["scopes"] = list(scopes)
    if person_facing:
        body["person_facing"] = True
    return Call("POST", "/keys", json=body)


def _change(key_id: str, person_facing: bool) -> Call:
    return Call("PATCH", f"/keys/{segment(key_id)}", json={"person_facing": person_facing})


def _rotate(key_id: str, grace_seconds: int) -> Call:
    return Call("POST", f"/keys/{segment(key_id)}/rotate", json={"grace_seconds": grace_seconds})


def _revoke(key_id: str) -> Call:
    return Call("DELETE", f"/keys/{segment(key_id)}")


class Keys:
    def __init__(self, http: SyncHttp) -> None:
        self._http = http

    def create(
        self,
        *,
        name: str = "",
        kind: Kind = "agent",
        scopes: Sequence[Scope] | None = None,
        person_facing: bool = False,
    ) -> NewApiKey:
        """A new key owned by the caller; ``scopes`` default by kind on the server. Store ``token`` now."""
        return self._http.request(_create(name, kind, scopes, person_facing), NewApiKey)

    def change(self, key_id: str, *, person_facing: bool) -> ApiKey:
        """Mark (or unmark) one of your own agent keys as used by a person-facing host."""
        return self._http.request(_change(key_id, person_facing), ApiKey)

    def list(self) -> builtins.list[ApiKey]:
        """Your keys (an admin: the workspace's), revoked ones included with their ``revoked_at``."""
        return self._http.get("/keys", KeyList).data

    def revoke(self, key_id: str) -> None:
        self._http.send(_revoke(key_id))

    def rotate(self, key_id: str, *, grace_seconds: int = 0) -> NewApiKey:
        """A new key like this one; the old one keeps working ``grace_seconds`` more, so you can swap it in."""
        return self._http.request(_rotate(key_id, grace_seconds), NewApiKey)


class AsyncKeys:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http

    async def create(
        self,
        *,
        name: str = "",
        kind: Kind = "agent",
        scopes: Sequence[Scope] | None = None,
        person_facing: bool = False,
    ) -> NewApiKey:
        return await self._http.request(_create(name, kind, scopes, person_facing), NewApiKey)

    async def change(self, key_id: str, *, person_facing: bool) -> ApiKey:
        return await self._http.request(_change(key_id, person_facing), ApiKey)

    async def list(self) -> builtins.list[ApiKey]:
        return (await self._http.get("/keys", KeyList)).data

    async def revoke(self, key_id: str) -> None:
        await self._http.send(_revoke(key_id))

    async def rotate(self, key_id: str, *, grace_seconds: int = 0) -> NewApiKey:
        return await self._http.request(_rotate(key_id, grace_seconds), NewApiKey)

"""``client.approvals``: the calls waiting for your decision; approve, deny, change then approve, decide several at
once, withdraw, settle an unknown outcome.

These calls need a **user** key: an assistant's agent key gets ``Forbidden``, so an assistant can never
approve its own calls. Approving runs nothing here: the assistant's waiting call (or its next try of the
same call) runs it, once.
"""

from __future__ import annotations

import builtins
from typing import Any

from harmony_client._http import AsyncHttp, Call, SyncHttp, query, segment
from harmony_client.models import Approval, ApprovalList, ApprovalStatus, BatchItem, BatchResult, Remember


def _path(approval_id: str, action: str = "") -> str:
    return f"/approvals/{segment(approval_id)}" + (f"/{action}" if action else "")


def _approve(approval_id: str, remember: Remember) -> Call:
    return Call("POST", _path(approval_id, "approve"), json={"remember": remember})


def _deny(approval_id: str, reason: str | None) -> Call:
    return Call("POST", _path(approval_id, "deny"), json={} if reason is None else {"reason": reason})


def _edit(approval_id: str, arguments: dict[str, Any]) -> Call:
    return Call("POST", _path(approval_id, "edit"), json={"arguments": arguments})


def _batch(approval_ids: builtins.list[str], approve: bool, reason: str | None) -> Call:
    body: dict[str, Any] = {"ids": approval_ids, "approve": approve}
    if reason is not None:
        body["reason"] = reason
    return Call("POST", "/approvals/batch", json=body)


class Approvals:
    def __init__(self, http: SyncHttp) -> None:
        self._http = http

    def list(self, *, status: ApprovalStatus | str | None = ApprovalStatus.PENDING) -> builtins.list[Approval]:
        """Your calls' approvals (and those an admin rule lets admins decide), newest first, at most 200.

        ``status=None`` lists every state.
        """
        return self._http.get("/approvals", ApprovalList, query(status=status)).data

    def get(self, approval_id: str) -> Approval:
        return self._http.get(_path(approval_id), Approval)

    def approve(self, approval_id: str, *, remember: Remember = "no") -> Approval:
        """Approve a pending call. ``remember="1h"`` or ``"30d"`` also approves such calls for that long
        (the approval's ``remember_scope`` says which, in plain words)."""
        return self._http.request(_approve(approval_id, remember), Approval)

    def deny(self, approval_id: str, *, reason: str | None = None) -> Approval:
        """Deny a pending call; ``reason`` is shown to the assistant and kept in the audit log."""
        return self._http.request(_deny(approval_id, reason), Approval)

    def edit(self, approval_id: str, arguments: dict[str, Any]) -> Approval:
        """Approve a pending call with these arguments instead of the assistant's ("approved with changes"). They
        are checked as a call's are (``InvalidRequest`` names each bad field); the assistant's retry runs the
        changed call once and is told what changed."""
        return self._http.request(_edit(approval_id, arguments), Approval)

    def decide_many(
        self, approval_ids: builtins.list[str], *, approve: bool, reason: str | None = None
    ) -> builtins.list[BatchItem]:
        """Approve (or deny) each approval with one reason, each as its own decision; one answer per id."""
        return self._http.request(_batch(approval_ids, approve, reason), BatchResult).data

    def cancel(self, approval_id: str) -> Approval:
        """Withdraw a request of your own that is still pending."""
        return self._http.request(Call("POST", _path(approval_id, "cancel")), Approval)

    def run_again(self, approval_id: str) -> Approval:
        """Settle an ``outcome_unknown`` call as not done: it may run once more on the assistant's next try."""
        return self._http.request(Call("POST", _path(approval_id, "run-again")), Approval)

    def mark_happened(self, approval_id: str) -> Approval:
        """Settle an ``outcome_unknown`` call as done: it never runs again."""
        return self._http.request(Call("POST", _path(approval_id, "happened")), Approval)


class AsyncApprovals:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http

    async def list(self, *, status: ApprovalStatus | str | None = ApprovalStatus.PENDING) -> builtins.list[Approval]:
        return (await self._http.get("/approvals", ApprovalList, query(status=status))).data

    async def get(self, approval_id: str) -> Approval:
        return await self._http.get(_path(approval_id), Approval)

    async def approve(self, approval_id: str, *, remember: Remember = "no") -> Approval:
        return await self._http.request(_approve(approval_id, remember), Approval)

    async def deny(self, approval_id: str, *, reason: str | None = None) -> Approval:
        return await self._http.request(_deny(approval_id, reason), Approval)

    async def edit(self, approval_id: str, arguments: dict[str, Any]) -> Approval:
        return await self._http.request(_edit(approval_id, arguments), Approval)

    async def decide_many(
        self, approval_ids: builtins.list[str], *, approve: bool, reason: str | None = None
    ) -> builtins.list[BatchItem]:
        return (await self._http.request(_batch(approval_ids, approve, reason), BatchResult)).data

    async def cancel(self, approval_id: str) -> Approval:
        return await self._http.request(Call("POST", _path(approval_id, "cancel")), Approval)

    async def run_again(self, approval_id: str) -> Approval:
        return await self._http.request(Call("POST", _path(approval_id, "run-again")), Approval)

    async def mark_happened(self, approval_id: str) -> Approval:
        return await self._http.request(Call("POST", _path(approval_id, "happened")), Approval)

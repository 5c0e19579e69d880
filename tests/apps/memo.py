"""A small personal app used by the tests: notes kept in memory, with a call log to prove what ran."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.context import ToolContext

CALLS: list[tuple[str, str, dict[str, Any]]] = []
# The approval each run was made under (None for a call no one had to approve), to prove an approval runs once.
RUNS: list[str | None] = []


class ListNotes(BaseModel):
    model_config = ConfigDict(extra="forbid")
    folder: str
    limit: int = 10


class AddNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)


async def list_notes(ctx: ToolContext, args: ListNotes) -> dict[str, Any]:
    CALLS.append(("list_notes", ctx.connection.id, args.model_dump()))
    return {
        "folder": args.folder,
        "owner": ctx.principal.email,
        "has_api_key": bool(ctx.credentials.get("api_key")),
        "notes": [f"note {i}" for i in range(min(args.limit, 3))],
    }


async def add_note(ctx: ToolContext, args: AddNote) -> dict[str, Any]:
    CALLS.append(("add_note", ctx.connection.id, args.model_dump()))
    RUNS.append(ctx.approval_id)
    return {"id": len(CALLS), "text": args.text}


class ShareNote(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: list[str] = Field(min_length=1)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    text: str = Field(min_length=1)


async def share_note(ctx: ToolContext, args: ShareNote) -> dict[str, Any]:
    CALLS.append(("share_note", ctx.connection.id, args.model_dump()))
    RUNS.append(ctx.approval_id)
    return {"shared_with": args.to}

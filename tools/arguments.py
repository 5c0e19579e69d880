"""The base of every adapter's argument model.

The manifest's input schema is what callers are held to; the model is what the adapter reads. An unknown
field is refused here as well, so an argument the schema let through by mistake never reaches a provider
call unnoticed, and the registry's cross-check can compare the two field by field.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Arguments(BaseModel):
    """Subclass it once per tool: ``async def create_issue(ctx: ToolContext, arguments: CreateIssue)``."""

    model_config = ConfigDict(extra="forbid")

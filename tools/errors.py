"""Errors an adapter raises; the gateway turns them into tool errors the assistant can read."""

from __future__ import annotations

from typing import Any

from store.errors import CompanionError


class ToolError(CompanionError):
    """A failure to report to the caller as it is. The message must hold no secret."""

    code = "tool_error"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code, details=details)


class NotFound(ToolError):
    code = "not_found"


class InvalidArguments(ToolError):
    """Arguments that fail the tool's schema. ``fields`` maps each bad field to its problem."""

    code = "invalid_arguments"

    def __init__(self, fields: dict[str, str]) -> None:
        # A problem may quote the value (a list of 100,000 addresses): the answer names it, not repeats it.
        self.fields = {name[:200]: _short(problem) for name, problem in list(fields.items())[:50]}
        listed = "; ".join(f"{name}: {problem}" for name, problem in self.fields.items())
        super().__init__(f"Invalid arguments: {listed}", details={"fields": self.fields})


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"

"""Errors an adapter raises; the gateway turns them into tool errors the assistant can read."""

from __future__ import annotations


class ToolError(Exception):
    """A failure to report to the caller as it is. The message must hold no secret."""

    code = "tool_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class NotFound(ToolError):
    code = "not_found"


class InvalidArguments(ToolError):
    """Arguments that fail the tool's schema. ``fields`` maps each bad field to its problem."""

    code = "invalid_arguments"

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        listed = "; ".join(f"{name}: {problem}" for name, problem in fields.items())
        super().__init__(f"Invalid arguments: {listed}")

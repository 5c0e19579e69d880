"""The one base of every refusal the product reports, whichever layer refuses.

An error has a ``code`` (a stable word a program can branch on), a ``message`` written for the person
who asked, and ``details`` a program may act on (the fields at fault, an approval's id). Layers raise
subclasses of it and never speak HTTP, JSON-RPC or exit codes; each front end maps it once, at its edge.
It lives in the bottom layer so tools, approvals and the server's use cases can all derive from it.
"""

from __future__ import annotations

from typing import Any


class CompanionError(Exception):
    """A refusal to report to the caller as it is. Its message must hold no secret."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details: dict[str, Any] = details or {}

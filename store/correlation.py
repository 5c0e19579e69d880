"""The id of the request being served, so log lines and audit entries of one call can be found together.

It lives below the server and the approvals packages because both read it:
the server's middleware sets it, the log formatter and the audit trail record it.
"""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def current_request_id() -> str | None:
    return request_id.get()

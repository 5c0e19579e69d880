"""Structured logs: one JSON object per line, each naming the request it belongs to, and no secrets.

The request id is the caller's ``X-Request-Id`` when that is a sane token,
else one made here; the response carries it back. It lives in a context
variable, which the MCP SDK hands on to the task that runs the call, so the
gateway's and the adapter's lines carry it too, and one id finds every line
of a call across replicas.

API keys (``hck_…``), bearer credentials, ``Authorization`` values and any
field named like a password, secret, token or API key become ``[redacted]``,
in the message, the extra fields and the traceback, in both formats: a log
line is read by more people, and kept longer, than the secret it would leak.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from store.correlation import request_id
from store.keys import TOKEN_PREFIX

REQUEST_ID_HEADER = "x-request-id"
REDACTED = "[redacted]"
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"

# An id from outside goes into every log line: only a short, plain token is taken as it is.
SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
SECRET_NAMES = r"authorization|cookie|password|passwd|secret|token|api[_-]?key"
SECRET_KEY = re.compile(rf"(?:^|[_-])(?:{SECRET_NAMES})$", re.IGNORECASE)
API_KEY = re.compile(rf"{re.escape(TOKEN_PREFIX)}[A-Za-z0-9_-]+")
BEARER = re.compile(r"\b(Bearer)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# "token=…", "'password': '…'", "Authorization: Basic …": the name stays, the value goes (a quoted one whole).
NAMED_VALUE = re.compile(
    rf"""(?P<name>["']?\b[\w-]*(?:{SECRET_NAMES})["']?\s*[:=]\s*)"""
    r"""(?:(?P<quote>["'])(?:(?!(?P=quote)).)*(?P=quote)|(?:(?:bearer|basic)\s+)?[^\s"',;&}\][]+)""",
    re.IGNORECASE,
)
# What a bare LogRecord has; anything else on a record came in through ``extra=``.
STANDARD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def redact_text(text: str) -> str:
    # Named values first: they take a whole quoted value, of which a key pattern would leave the rest.
    text = NAMED_VALUE.sub(
        lambda m: m["name"] + (f"{m['quote']}{REDACTED}{m['quote']}" if m["quote"] else REDACTED), text
    )
    text = API_KEY.sub(REDACTED, text)
    return BEARER.sub(rf"\1 {REDACTED}", text)


def redact_value(value: Any) -> Any:
    """``value`` with its secrets redacted, as plain JSON: names decide for mappings, patterns for text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): REDACTED if SECRET_KEY.search(str(k)) else redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item) for item in value]
    return redact_text(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
            "time": at.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
            "request_id": request_id.get(),
        }
        for name, value in record.__dict__.items():
            if name not in STANDARD_FIELDS and name not in entry:
                entry[name] = REDACTED if SECRET_KEY.search(name) else redact_value(value)
        if record.exc_info:
            entry["exception"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact_text(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """The plain text format, with the same redaction as the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def configure(level: str, log_format: str) -> None:
    """Log to stderr at ``level``, as ``text`` or ``json`` lines."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else RedactingFormatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


class RequestId:
    """ASGI middleware: names each HTTP request, for its log lines and in its ``X-Request-Id`` response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        current = given if SANE_ID.fullmatch(given) else uuid.uuid4().hex

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = current
            await send(message)

        token = request_id.set(current)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)

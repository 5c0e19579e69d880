"""JSON log lines: one object per line, the caller's request id on every line of a call and its audit entry, and no
secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import select

from server.observability.logging import JsonFormatter, RedactingFormatter, RequestId
from store.correlation import request_id
from store.models import AuditEntry
from tests.conftest import COMPANION

pytestmark = pytest.mark.anyio

ALICE = "alice@acme.test"
BASE = "http://127.0.0.1:8000"
GIVEN_ID = "req-42.Trace_id"


@contextmanager
def json_lines(level: int = logging.INFO) -> Iterator[list[dict[str, Any]]]:
    """Every record logged in the block, formatted as JSON by the root logger; the list fills when it ends."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


def record(message: str, *args: Any, exc_info: Any = None, **extra: Any) -> logging.LogRecord:
    made = logging.LogRecord("tests", logging.WARNING, __file__, 1, message, args, exc_info)
    made.__dict__.update(extra)
    return made


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_a_call_logs_with_the_callers_request_id_through_the_adapter(
    app_client, demo_keys, companion, monkeypatch, mode
):
    tool = companion.registry.tools["harmony_list_meetings"]
    seen_by_adapter: list[str | None] = []

    async def adapter(context: Any, arguments: Any) -> Any:
        seen_by_adapter.append(request_id.get())
        return await tool.adapter(context, arguments)

    monkeypatch.setitem(companion.registry.tools, tool.name, replace(tool, adapter=adapter))
    key = demo_keys.keys[ALICE]
    headers = {"Authorization": f"Bearer {key}", "X-Request-Id": GIVEN_ID}
    with json_lines(logging.DEBUG) as lines:
        async with (
            httpx2.AsyncClient(headers=headers, transport=app_client.transport, base_url=BASE) as http,
            Client(streamable_http_client(f"{BASE}/mcp", http_client=http), mode=mode) as client,
        ):
            result = await client.call_tool("harmony_list_meetings", {"limit": 1})
            logging.getLogger("tests").warning("the key %s leaked into a message", key)
    assert result.is_error is False
    assert seen_by_adapter == [GIVEN_ID]
    [call] = [line for line in lines if line["logger"] == "server.services.tool_gateway"]
    assert call["request_id"] == GIVEN_ID
    assert call["message"] == "tool call 'harmony_list_meetings': allow, succeeded"
    assert (call["level"], call["tool"], call["decision"], call["outcome"]) == (
        "INFO",
        "harmony_list_meetings",
        "allow",
        "succeeded",
    )
    assert call["time"].endswith("Z")
    # The audit entry of the call carries the same id, so the trail leads to the log lines and back.
    await companion.audit.flush()
    async with companion.db.session() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.tool == "harmony_list_meetings").order_by(AuditEntry.id.desc())
        )
    assert entry is not None and entry.request_id == GIVEN_ID
    # Every line of the session, the SDK's and the database's at DEBUG included, is free of the key.
    everything = json.dumps(lines)
    assert key.startswith("hck_") and key not in everything
    assert "the key [redacted] leaked into a message" in everything


async def test_the_request_id_comes_back_in_the_response_and_a_bad_one_is_replaced(app_client):
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as http:
        given = await http.get("/healthz", headers={"X-Request-Id": GIVEN_ID})
        too_long = await http.get("/healthz", headers={"X-Request-Id": "a" * 65})
        odd = await http.get("/healthz", headers={"X-Request-Id": "two words\n"})
        none = await http.get("/healthz")
    assert given.headers["x-request-id"] == GIVEN_ID
    made = [response.headers["x-request-id"] for response in (too_long, odd, none)]
    assert all(len(rid) == 32 and rid.isalnum() for rid in made)
    assert len(set(made)) == 3


async def test_the_middleware_names_the_request_for_the_app_and_the_response():
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert request_id.get() == GIVEN_ID
        await send({"type": "http.response.start", "status": 204})
        await send({"type": "http.response.body", "body": b""})

    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=RequestId(app)), base_url=BASE) as http:
        response = await http.get("/", headers={"X-Request-Id": GIVEN_ID})
    assert response.headers["x-request-id"] == GIVEN_ID
    assert request_id.get() is None


def test_secrets_are_redacted_from_messages_fields_and_tracebacks():
    key = "hck_" + "Zx9-_" * 8
    try:
        raise ValueError(f"bad key {key}")
    except ValueError:
        exc_info = sys.exc_info()
    line = JsonFormatter().format(
        record(
            "calling with %s, Authorization: Bearer %s, %s",
            key,
            "provider-bearer-token",
            "client_secret=s3cr3t&scope=read",
            exc_info=exc_info,
            token="plain-token",
            headers={"Authorization": "Basic dXNlcjpwYXNz", "Accept": "application/json"},
            connection={"api_key": "memo-key", "password": "pw", "label": f"uses {key}"},
            attempts=3,
        )
    )
    entry = json.loads(line)
    for secret in (key, "provider-bearer-token", "s3cr3t", "plain-token", "dXNlcjpwYXNz", "memo-key", '"pw"'):
        assert secret not in line
    assert entry["message"] == "calling with [redacted], Authorization: [redacted], client_secret=[redacted]&scope=read"
    assert entry["token"] == "[redacted]"
    assert entry["headers"] == {"Authorization": "[redacted]", "Accept": "application/json"}
    assert entry["connection"] == {"api_key": "[redacted]", "password": "[redacted]", "label": "uses [redacted]"}
    assert entry["attempts"] == 3
    assert entry["request_id"] is None
    assert "ValueError: bad key [redacted]" in entry["exception"]


def test_the_text_format_is_redacted_too():
    formatter = RedactingFormatter("%(levelname)s %(name)s: %(message)s")
    text = formatter.format(record("sent %s with {'refresh_token': 'r-1 2'}", "hck_abc"))
    assert text == "WARNING tests: sent [redacted] with {'refresh_token': '[redacted]'}"


def test_the_cli_logs_json_lines_when_asked(tmp_path):
    env = {"PATH": os.environ["PATH"], "COMPANION_DATA_DIR": str(tmp_path / "data"), "COMPANION_LOG_FORMAT": "json"}
    result = subprocess.run(
        [COMPANION, "demo", "seed", "--json"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    [entry] = [json.loads(line) for line in result.stderr.splitlines()]
    assert (entry["level"], entry["logger"], entry["request_id"]) == ("WARNING", "server.settings", None)
    assert "generated a development key" in entry["message"]

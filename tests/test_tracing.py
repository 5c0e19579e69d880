"""OpenTelemetry: spans for each phase of a call, sent to the exporter the standard OTEL_* variables name, and
nothing at all unless they name one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from server.observability.tracing import configure_tracing
from server.settings import SettingsError
from tests.conftest import COMPANION, alices_meeting, free_port, mcp_client
from tests.processes import healthy

pytestmark = pytest.mark.anyio

ALICE = "alice@acme.test"
PHASES = {"companion.auth", "companion.decision", "companion.approval_wait", "companion.adapter", "companion.audit"}


def test_tracing_is_off_unless_an_exporter_is_named():
    assert configure_tracing({}) is False
    assert configure_tracing({"OTEL_TRACES_EXPORTER": "none"}) is False
    assert configure_tracing({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}) is False


def test_an_exporter_that_is_not_installed_is_named_in_the_error():
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER: no exporter 'zipkin_json'"):
        configure_tracing({"OTEL_TRACES_EXPORTER": "zipkin_json"})


def spans_in(text: str) -> list[dict[str, Any]]:
    """The console exporter's spans: indented JSON objects, among the server's other lines."""
    decoder, spans, lines = json.JSONDecoder(), [], text.splitlines(keepends=True)
    offsets = [sum(len(line) for line in lines[:i]) for i in range(len(lines))]
    end = 0
    for offset, line in zip(offsets, lines, strict=True):
        if offset >= end and line.startswith("{"):
            span, end = decoder.raw_decode(text, offset)
            spans.append(span)
    return spans


async def test_each_phase_of_a_call_is_a_span_sent_to_the_exporter_named(env, demo_keys, companion, tmp_path: Path):
    meeting = await alices_meeting(companion)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    output = tmp_path / "stdout.txt"
    with output.open("wb") as sink:
        server = subprocess.Popen(
            [COMPANION, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={
                **env,
                "COMPANION_BASE_URL": base,
                "OTEL_TRACES_EXPORTER": "console",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
            },
            stdout=sink,
            stderr=subprocess.DEVNULL,
        )
    try:
        await healthy(base)
        async with mcp_client(base, demo_keys.keys[ALICE]) as assistant:
            read = await assistant.call_tool("harmony_get_meeting", {"meeting_id": meeting})
            asked = await assistant.call_tool("harmony_create_action_item", {"meeting_id": meeting, "text": "Deck"})
        assert read.is_error is False and (asked.structured_content or {}).get("status") == "approval_required"
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    spans = spans_in(output.read_text())
    names = {span["name"] for span in spans}
    assert names >= PHASES, names
    by_id = {span["context"]["span_id"]: span for span in spans}
    adapter = next(span for span in spans if span["name"] == "companion.adapter")
    # Nested in the MCP SDK's own span for the request, so a trace shows the phases of each call together.
    assert "tools/call" in by_id[adapter["parent_id"]]["name"]
    resource = adapter["resource"]["attributes"]
    assert resource["service.name"] == "harmony-companion" and resource["deployment.environment"] == "test"

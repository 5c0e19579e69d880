"""The whole path on a real server: upload → processed → meeting.processed delivered, signed, to a receiver →
transcript readable over the REST API and through harmony_get_transcript over MCP."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import mcp_client
from tests.webhook_receiver import Receiver, serve_receiver

pytestmark = pytest.mark.anyio

VTT = (
    b"WEBVTT\n\n"
    b"00:00:05.000 --> 00:00:07.000\n<v Alice Archer>Thanks for joining today.</v>\n\n"
    b"00:00:09.500 --> 00:00:12.000\n<v Carol Chen>Happy to be here. Let's talk pricing.</v>\n"
)


@pytest.mark.settings(run_workers=True, webhooks_allow_private=True, processing_poll_seconds=0.05)
async def test_an_upload_is_processed_announced_and_readable_everywhere(live_server, demo_keys):
    admin = {"Authorization": f"Bearer {demo_keys.user_keys['admin@acme.test']}"}
    async with serve_receiver(Receiver()) as receiver, httpx.AsyncClient(base_url=f"{live_server}/api/v1") as api:
        endpoint = await api.post(
            "/webhooks", headers=admin, json={"url": receiver.url, "events": ["meeting.started", "meeting.processed"]}
        )
        assert endpoint.status_code == 201, endpoint.text
        receiver.secret = endpoint.json()["secret"]
        uploaded = await api.post(
            "/meetings/upload",
            headers=admin,
            files={
                "file": ("call.mp3", b"ID3" + bytes(2048), "audio/mpeg"),
                "transcript": ("call.vtt", VTT, "text/vtt"),
            },
            data={"title": "Customer Call", "date": "2026-02-01T10:00:00Z"},
        )
        assert uploaded.status_code == 202, uploaded.text
        meeting_id = uploaded.json()["id"]
        delivered = await receiver.wait_for(2, timeout=30)
        events = [r.event["event"] for r in delivered]
        assert sorted(events) == ["meeting.processed", "meeting.started"]
        assert all(r.verdict == "processed" for r in delivered)  # each signature checked by the documented snippet
        processed = next(r.event for r in delivered if r.event["event"] == "meeting.processed")
        assert processed["data"]["meeting_id"] == meeting_id and processed["data"]["title"] == "Customer Call"
        status = (await api.get(f"/meetings/{meeting_id}/status", headers=admin)).json()
        assert status["status"] == "processed"
        transcript = (await api.get(f"/meetings/{meeting_id}/transcript", headers=admin)).json()["transcript"]
    assert [(line["speaker"], line["timestamp"]) for line in transcript] == [
        ("Alice Archer", "00:00:05"),
        ("Carol Chen", "00:00:09"),
    ]
    async with mcp_client(live_server, demo_keys.keys["admin@acme.test"]) as client:
        result = await client.call_tool("harmony_get_transcript", {"meeting_id": meeting_id})
    assert result.is_error is False
    assert [line["text"] for line in result.structured_content["transcript"]] == [
        "Thanks for joining today.",
        "Happy to be here. Let's talk pricing.",
    ]

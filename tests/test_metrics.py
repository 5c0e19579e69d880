"""GET /metrics: off by default, behind its own token, and counting real calls through the whole app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from server.observability.loop import INTERVAL_SECONDS, watch_loop_lag
from server.observability.metrics import PHASES, Metrics
from store.models import Meeting
from tests.fakes.linear import LinearFake
from tests.providers import connected

pytestmark = pytest.mark.anyio

ALICE = "alice@acme.test"
TOKEN = "metrics-token-for-tests"
BASE = "http://127.0.0.1:8000"


@pytest.fixture
async def http(app_client) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


async def test_metrics_are_off_by_default(http):
    response = await http.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert response.status_code == 404


@pytest.mark.settings(metrics_token=TOKEN)
@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "], ids=str
)
async def test_metrics_refuse_a_missing_or_wrong_token(http, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.settings(metrics_token=TOKEN)
async def test_metrics_count_an_allowed_read_and_an_asked_write(app_client, http, demo_keys, companion):
    async with companion.db.session() as session:
        meeting_id = await session.scalar(select(Meeting.id).limit(1))
    async with app_client(demo_keys.keys[ALICE]) as client:
        read = await client.call_tool("harmony_list_meetings", {"limit": 1})
        write = await client.call_tool("harmony_create_action_item", {"meeting_id": meeting_id, "text": "Ship it"})
    assert read.is_error is False
    assert write.structured_content["status"] == "approval_required"

    response = await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    found = samples(response.text)

    calls = "companion_tool_calls_total"
    read_labels = {"app": "harmony", "tool": "harmony_list_meetings", "decision": "allow", "outcome": "succeeded"}
    write_labels = {"app": "harmony", "tool": "harmony_create_action_item", "decision": "ask", "outcome": "pending"}
    assert value(found, calls, **read_labels) == 1
    assert value(found, calls, **write_labels) == 1
    assert sum(v for (name, _), v in found.items() if name == calls) == 2

    # Both calls were authorized, decided and audited; only the read ran its adapter, only the write waited.
    counts = {phase: value(found, "companion_call_phase_seconds_count", phase=phase) for phase in PHASES}
    # Neither tool asks its provider for a canonical form, so neither has a resolve phase.
    assert counts == {"auth": 2, "resolve": 0, "decision": 2, "approval_wait": 1, "adapter": 1, "audit": 2}
    assert value(found, "companion_call_phase_seconds_sum", phase="adapter") > 0
    assert value(found, "companion_call_phase_seconds_bucket", phase="approval_wait", le="+Inf") == 1

    assert value(found, "companion_pending_approvals") == 1
    assert value(found, "companion_webhook_backlog") == 0
    assert value(found, "python_gc_collections_total", generation="2") is not None


@pytest.mark.settings(metrics_token=TOKEN)
async def test_the_server_watches_its_event_loop_from_the_start(http):
    await asyncio.sleep(2 * INTERVAL_SECONDS)
    found = samples((await http.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})).text)
    assert value(found, "companion_event_loop_lag_seconds_count") >= 1


async def test_a_blocked_loop_shows_as_lag_as_long_as_the_block():
    metrics = Metrics()
    watcher = asyncio.create_task(watch_loop_lag(metrics.loop_lag.observe, interval=0.01))
    await asyncio.sleep(0.05)
    time.sleep(0.2)  # what a long garbage collection or a synchronous call does to every task on the loop
    await asyncio.sleep(0.05)
    watcher.cancel()
    count = metrics.registry.get_sample_value("companion_event_loop_lag_seconds_count")
    under_a_tenth = metrics.registry.get_sample_value("companion_event_loop_lag_seconds_bucket", {"le": "0.1"})
    assert count >= 3
    assert count - under_a_tenth >= 1
    assert metrics.registry.get_sample_value("companion_event_loop_lag_seconds_sum") >= 0.19


async def test_a_revoked_grant_counts_as_a_failed_refresh(settings, registry):
    async with connected(settings, registry, LinearFake(), "linear") as linear:
        linear.fake.revoke_refresh_tokens()
        result = await linear.call("linear_list_teams", {})
        assert result.error_code == "needs_reauth"
        found = samples((await linear.companion.gateway.metrics.exposition(linear.companion.db)).decode())
    assert value(found, "companion_token_refresh_failures_total", app="linear") == 1
    assert value(found, "companion_call_phase_seconds_count", phase="adapter") == 1


async def test_each_companion_keeps_its_own_metrics():
    one, other = Metrics(), Metrics()
    one.token_refresh_failed("linear")
    name, labels = "companion_token_refresh_failures_total", {"app": "linear"}
    assert one.registry.get_sample_value(name, labels) == 1
    assert other.registry.get_sample_value(name, labels) is None

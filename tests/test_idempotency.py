"""Idempotency keys for approved calls: derived from the approval id, so a call the person chose to run once
more after its outcome became unknown returns what the first run made instead of making it twice."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from approvals import lifecycle
from server.app import create_app
from store.models import Approval, utcnow
from tests.fakes.base import ProviderFake
from tests.fakes.gcal import PRIMARY_ID, GoogleCalendarFake
from tests.fakes.linear import LinearFake
from tests.providers import Harness, connected
from tools.idempotency import base32hex_key, uuid4_key

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
APPROVAL = "apr_0123456789abcdef"


# -- the keys -----------------------------------------------------------------------------------------


def test_a_uuid_key_is_a_version_4_uuid_the_same_for_the_same_approval():
    key = uuid4_key(APPROVAL, "linear.issue")
    parsed = uuid.UUID(key)
    assert str(parsed) == key and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert uuid4_key(APPROVAL, "linear.issue") == key
    assert uuid4_key("apr_fedcba9876543210", "linear.issue") != key
    assert uuid4_key(APPROVAL, "linear.comment") != key


def test_a_base32hex_key_fits_a_calendar_event_id_and_is_the_same_for_the_same_approval():
    key = base32hex_key(APPROVAL, "gcal.event")
    assert re.fullmatch(r"[a-v0-9]{5,1024}", key) and len(key) == 52
    assert base32hex_key(APPROVAL, "gcal.event") == key
    assert base32hex_key("apr_fedcba9876543210", "gcal.event") != key
    assert base32hex_key(APPROVAL, "gcal.other") != key


# -- run once more, end to end ------------------------------------------------------------------------


@asynccontextmanager
async def person(harness: Harness) -> AsyncIterator[httpx.AsyncClient]:
    """Alice over the REST API, deciding on her approvals as she would from a script or the CLI."""
    app = create_app(harness.companion)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=f"{BASE}/api/v1",
            headers={"Authorization": f"Bearer {harness.keys.user_keys['alice@acme.test']}"},
        ) as api,
    ):
        yield api


async def died_after_the_provider_acted(harness: Harness, approval_id: str, tool: str, arguments: dict) -> Any:
    """Run an approved call as a process does that is killed after the provider acted, before it recorded that.

    It claims the approval and calls the adapter, then stops renewing its lease; the result never reaches
    the approval, only the provider.
    """
    async with harness.companion.db.transaction() as session:
        assert await lifecycle.claim(session, approval_id, lease=timedelta(seconds=30))
    bound = next(b for b in await harness.companion.gateway.tools_for(harness.principal) if b.name == tool)
    ctx = await harness.context()
    ctx.approval_id = approval_id
    made = await bound.tool.adapter(ctx, bound.tool.parse_arguments(arguments))
    async with harness.companion.db.transaction() as session:
        await session.execute(
            update(Approval).where(Approval.id == approval_id).values(lease_until=utcnow() - timedelta(seconds=1))
        )
    return made


CASES = [
    pytest.param(
        LinearFake,
        "linear",
        "linear_create_issue",
        {"team": "ENG", "title": "Fix login"},
        lambda fake: len(fake.issues),
        id="linear",
    ),
    pytest.param(
        GoogleCalendarFake,
        "gcal",
        "gcal_create_event",
        {"summary": "Follow-up", "start": "2030-01-10T10:00:00", "end": "2030-01-10T11:00:00"},
        lambda fake: len(fake.events[PRIMARY_ID]),
        id="gcal",
    ),
]


@pytest.mark.parametrize(("fake", "app", "tool", "arguments", "made"), CASES)
async def test_run_it_once_more_returns_what_the_first_run_made(
    settings, registry, fake: Callable[[], ProviderFake], app: str, tool: str, arguments: dict, made: Callable
):
    async with connected(settings, registry, fake(), app, allow=False) as harness, person(harness) as api:
        asked = await harness.ok(tool, arguments)
        assert asked["status"] == "approval_required" and made(harness.fake) == 0
        approval_id = asked["approval_id"]
        assert (await api.post(f"/approvals/{approval_id}/approve", json={})).status_code == 200

        first = await died_after_the_provider_acted(harness, approval_id, tool, arguments)
        assert made(harness.fake) == 1
        assert (await api.get(f"/approvals/{approval_id}")).json()["status"] == "outcome_unknown"
        again = await api.post(f"/approvals/{approval_id}/run-again")
        assert again.status_code == 200 and again.json()["status"] == "approved"

        rerun = await harness.ok(tool, arguments)
        assert rerun == first and made(harness.fake) == 1
        assert (await api.get(f"/approvals/{approval_id}")).json()["status"] == "succeeded"

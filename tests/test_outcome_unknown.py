"""A call whose process died while running it: its outcome is unknown, it never runs again on its own, and
the person who asked decides, in the inbox or over the API."""

from __future__ import annotations

from datetime import timedelta

import httpx2
import pytest
from sqlalchemy import func, select, update

from approvals import lifecycle
from store.models import ActionItem, Approval, ApprovalStatus, utcnow
from tests.conftest import alices_meeting, mcp_client
from tests.console import form_post, sign_in

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


@pytest.fixture
async def call(companion, demo_keys) -> dict[str, str]:
    return {"meeting_id": await alices_meeting(companion), "text": "Send Carol the contract"}


async def ask(app_client, demo_keys, arguments):
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=app_client.transport) as client:
        return await client.call_tool("harmony_create_action_item", arguments)


async def get_approval(app_client, demo_keys, approval_id):
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=app_client.transport) as client:
        return await client.call_tool("companion_get_approval", {"approval_id": approval_id})


async def items(companion, arguments) -> int:
    async with companion.db.session() as session:
        return int(
            await session.scalar(
                select(func.count()).select_from(ActionItem).where(ActionItem.text == arguments["text"])
            )
            or 0
        )


async def died_while_running(app_client, demo_keys, companion, arguments) -> str:
    """Ask, approve, then leave the call as a killed process leaves it: executing, its lease lapsed."""
    approval_id = (await ask(app_client, demo_keys, arguments)).structured_content["approval_id"]
    async with companion.db.transaction() as session:
        approval = await lifecycle.get(session, (await session.get(Approval, approval_id)).workspace_id, approval_id)
        await lifecycle.decide(session, approval, approve=True, actor_id=approval.user_id, via="api")
        assert await lifecycle.claim(session, approval_id, lease=timedelta(seconds=30))
        await session.execute(
            update(Approval).where(Approval.id == approval_id).values(lease_until=utcnow() - timedelta(seconds=1))
        )
    return approval_id


async def test_a_run_whose_process_died_is_not_run_again_by_a_retry(app_client, demo_keys, companion, call):
    approval_id = await died_while_running(app_client, demo_keys, companion, call)
    retry = await ask(app_client, demo_keys, call)
    assert retry.is_error and "may or may not have happened" in retry.content[0].text
    assert f"{BASE}/approvals/{approval_id}" in retry.content[0].text
    state = await get_approval(app_client, demo_keys, approval_id)
    assert state.structured_content["status"] == "outcome_unknown"
    assert await items(companion, call) == 0


async def test_the_person_settles_it_in_the_inbox_and_then_it_runs_once(app_client, demo_keys, companion, call):
    approval_id = await died_while_running(app_client, demo_keys, companion, call)
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, "alice@acme.test")
        waiting = await browser.get("/inbox")
        assert f'id="card-{approval_id}"' in waiting.text and "may or may not have happened" in waiting.text
        settled = await form_post(browser, "/inbox", f"/approvals/{approval_id}/run-again")
        assert settled.status_code == 303
    first = await ask(app_client, demo_keys, call)
    second = await ask(app_client, demo_keys, call)
    assert not first.is_error and first.structured_content == second.structured_content
    assert await items(companion, call) == 1


async def test_it_happened_closes_it_for_good(app_client, demo_keys, companion, call):
    approval_id = await died_while_running(app_client, demo_keys, companion, call)
    async with httpx2.AsyncClient(
        transport=app_client.transport,
        base_url=f"{BASE}/api/v1",
        headers={"Authorization": f"Bearer {demo_keys.user_keys['alice@acme.test']}"},
    ) as api:
        read = await api.get(f"/approvals/{approval_id}")
        assert read.json()["status"] == "outcome_unknown"
        closed = await api.post(f"/approvals/{approval_id}/happened")
        assert closed.status_code == 200 and closed.json()["status"] == "succeeded"
        again = await api.post(f"/approvals/{approval_id}/run-again")
        assert again.status_code == 409
    retry = await ask(app_client, demo_keys, call)
    assert retry.is_error and "recorded that approved call" in retry.content[0].text
    assert await items(companion, call) == 0


async def test_a_slow_run_that_finishes_after_its_lease_lapsed_still_records_its_outcome(
    app_client, demo_keys, companion, call
):
    approval_id = await died_while_running(app_client, demo_keys, companion, call)
    async with companion.db.transaction() as session:
        assert await lifecycle.expire_due(session) == 1  # as every approval step first does: the lapsed run
        approval = await session.get(Approval, approval_id)
        assert approval is not None and approval.status is ApprovalStatus.OUTCOME_UNKNOWN
        await lifecycle.finish(
            session, companion.box, approval, ok=True, result={"id": "act_1"}, error=None, duration_ms=40_000
        )
        approval = await lifecycle.reload(session, approval_id)
    assert approval.status is ApprovalStatus.SUCCEEDED and approval.lease_until is None
    assert lifecycle.result_of(companion.box, approval) == {"id": "act_1"}

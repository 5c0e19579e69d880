"""A server sent SIGTERM stops taking calls, lets a running call finish and deliver its result, answers a call
waiting for a decision at once (its approval stays pending, for the other replicas), ends its idle event streams
and exits 0 as soon as that work is done, well within COMPANION_SHUTDOWN_SECONDS."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx2
import pytest
from mcp import types
from sqlalchemy import select

from store.models import Approval, ApprovalStatus
from tests.conftest import free_port, mcp_client
from tests.console import sign_in
from tests.fakes.base import serve
from tests.fakes.linear import LinearFake
from tests.processes import healthy, start

pytestmark = pytest.mark.anyio

RUNNING = {"team": "ENG", "title": "Renew the Globex contract"}
WAITING = {"team": "ENG", "title": "Cancel the Initech contract"}
GRACE = 20


async def refused(base: str) -> float:
    """Seconds until a new connection to ``base`` fails."""
    began = time.monotonic()
    async with asyncio.timeout(5):
        while True:
            try:
                async with httpx2.AsyncClient(base_url=base) as fresh:
                    await fresh.get("/healthz")
            except httpx2.TransportError:
                return time.monotonic() - began
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("asked", ["in the assistant", "on the approval page"])
async def test_sigterm_finishes_the_running_call_and_leaves_the_waiting_one_pending(env, demo_keys, companion, asked):
    linear = LinearFake()
    async with serve(linear) as origin:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start(
            {
                **env,
                "COMPANION_BASE_URL": base,
                "COMPANION_PROVIDER_ORIGINS": json.dumps({"linear": origin}),
                "COMPANION_SHUTDOWN_SECONDS": str(GRACE),
                # Longer than the grace: a call waiting on the approval page would hold the shutdown to its end.
                "COMPANION_APPROVAL_WAIT_SECONDS": str(GRACE * 3),
            },
            port,
        )
        agent, person = demo_keys.keys["alice@acme.test"], demo_keys.user_keys["alice@acme.test"]
        person_answers = asyncio.Event()
        try:
            await healthy(base)
            async with (
                httpx2.AsyncClient(
                    base_url=f"{base}/api/v1", headers={"Authorization": f"Bearer {person}"}, timeout=30
                ) as api,
                httpx2.AsyncClient(base_url=base, timeout=30) as browser,
            ):
                connected = await api.post(
                    "/integrations/apps/linear/connect",
                    json={"method": "api_key", "scope": "personal", "setup": {"api_key": linear.issue_key()}},
                )
                assert connected.status_code == 201, connected.text
                if asked == "on the approval page":
                    admin = demo_keys.user_keys["admin@acme.test"]
                    rule = {"effect": "ask", "scope": "workspace", "tool": "linear_create_issue"}
                    made = await api.post(
                        "/rules",
                        json={**rule, "require_out_of_band": True},
                        headers={"Authorization": f"Bearer {admin}"},
                    )
                    assert made.status_code == 201, made.text
                async with mcp_client(base, agent, mode="2026-07-28") as assistant:
                    first = await assistant.call_tool("linear_create_issue", RUNNING)
                running_id = first.structured_content["approval_id"]
                assert (await api.post(f"/approvals/{running_id}/approve", json={})).status_code == 200

                prompted = asyncio.Event()

                async def the_person_has_not_answered(ctx, params):
                    # In the assistant the form stays unanswered; on the page, the person opened it and has not
                    # decided yet, so the server waits on the approval's row.
                    prompted.set()
                    if isinstance(params, types.ElicitRequestURLParams):
                        return types.ElicitResult(action="accept")
                    await person_answers.wait()
                    return types.ElicitResult(action="cancel")

                async with (
                    # 2025-11-25 sessions: each keeps a GET event stream open besides its calls.
                    mcp_client(base, agent, mode="legacy", elicitation_callback=the_person_has_not_answered) as asking,
                    mcp_client(base, agent, mode="legacy") as retrying,
                ):
                    await asking.list_tools()  # as an assistant does; its results are checked against these
                    await retrying.list_tools()
                    waiting = asyncio.create_task(asking.call_tool("linear_create_issue", WAITING))
                    await prompted.wait()
                    linear.hold = asyncio.Event()
                    running = asyncio.create_task(retrying.call_tool("linear_create_issue", RUNNING))
                    async with asyncio.timeout(20):
                        while not linear.api_requests():  # the approved call is inside Linear now
                            await asyncio.sleep(0.02)
                    await sign_in(browser, "alice@acme.test")
                    async with browser.stream(
                        "GET", "/inbox/events", headers={"Accept": "text/event-stream"}
                    ) as inbox:  # an open console inbox, as a browser's EventSource keeps it
                        assert inbox.status_code == 200
                        assert not waiting.done() and not running.done()

                        server.send_signal(signal.SIGTERM)
                        sent = time.monotonic()
                        refusing = await refused(base)
                        with pytest.raises(httpx2.TransportError):
                            await api.get("/approvals")  # the idle kept-alive connection is closed too

                        async with asyncio.timeout(5):
                            answered = await waiting
                        waited = time.monotonic() - sent
                        assert not running.done()  # still inside Linear
                        assert answered.structured_content["status"] == "approval_required"
                        waiting_id = answered.structured_content["approval_id"]

                        released = time.monotonic()
                        linear.hold.set()
                        async with asyncio.timeout(10):
                            ran = await running
                        exit_code = await asyncio.to_thread(server.wait, GRACE)
                        stopped = time.monotonic()
        finally:
            person_answers.set()
            if linear.hold is not None:
                linear.hold.set()
            server.kill()
            server.wait()

    assert not ran.is_error, ran.content
    assert ran.structured_content["title"] == RUNNING["title"]
    assert [issue["title"] for issue in linear.issues] == [RUNNING["title"]]  # created once; the waiting one never
    assert exit_code == 0
    # The open inbox and the sessions' GET streams ended with the work, instead of at the end of the grace.
    assert stopped - released < GRACE / 4, "the process held its shutdown after its work was done"
    async with companion.db.session() as session:
        statuses = dict((await session.execute(select(Approval.id, Approval.status))).all())
    assert statuses == {running_id: ApprovalStatus.SUCCEEDED, waiting_id: ApprovalStatus.PENDING}
    print(
        f"{asked}: refused new connections {refusing * 1000:.0f} ms after SIGTERM, answered the waiting call "
        f"{waited * 1000:.0f} ms after it, exited {(stopped - released) * 1000:.0f} ms after the running call "
        f"was released (grace {GRACE} s)"
    )

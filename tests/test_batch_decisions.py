"""Batch decisions: select several waiting approvals and approve or deny them with one reason; each is still its
own decision, and each approved call runs once. Identical pending calls are grouped.

Alice has two assistants (two agent keys), which both ask to add the same note to the workspace's Memo connection
(the tests' own app, whose runs ``memo.RUNS`` counts), and one asks for another note besides.
"""

from __future__ import annotations

import re
from typing import Any

import httpx2
import pytest

from server.app import Companion
from store import directory
from store.keys import create_key
from tests.apps import memo
from tests.console import csrf_of, sign_in
from tests.memo_calls import add_note
from tests.memo_connections import connect_workspace_memo
from tests.rest import bearer, rest_client  # noqa: F401 (rest_client is the http fixture)

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
ALICE = "alice@acme.test"


@pytest.fixture
async def keys(companion: Companion, demo_keys: Any) -> dict[str, str]:
    async with companion.db.transaction() as session:
        workspace = await directory.workspace_by_slug(session, "acme")
        alice = await directory.user_by_email(session, ALICE)
        await connect_workspace_memo(session, companion.box, workspace.id)
        second = await create_key(session, workspace_id=workspace.id, user_id=alice.id, name="second assistant")
    memo.RUNS.clear()
    return {"first": demo_keys.keys[ALICE], "second": second.token, "user": demo_keys.user_keys[ALICE]}


async def three_waiting(app_client: Any, keys: dict[str, str]) -> list[str]:
    """The same call from both assistants, and another call from the first."""
    answers = [
        await add_note(app_client.transport, keys["first"], "order more coffee"),
        await add_note(app_client.transport, keys["second"], "order more coffee"),
        await add_note(app_client.transport, keys["first"], "book the boardroom"),
    ]
    ids = [answer.structured_content["approval_id"] for answer in answers]
    assert len(set(ids)) == 3
    return ids


async def test_a_batch_approve_of_three_runs_each_call_exactly_once(
    app_client: Any, http: httpx2.AsyncClient, keys: dict[str, str]
) -> None:
    ids = await three_waiting(app_client, keys)
    answer = await http.post(
        "/api/v1/approvals/batch", headers=bearer(keys["user"]), json={"ids": ids, "approve": True, "reason": "fine"}
    )
    assert answer.status_code == 200, answer.text
    assert [(item["id"], item["result"], item["status"]) for item in answer.json()["data"]] == [
        (approval_id, "decided", "approved") for approval_id in ids
    ]
    assert memo.RUNS == [], "approving runs nothing by itself"
    for key, text in (("first", "order more coffee"), ("second", "order more coffee"), ("first", "book the boardroom")):
        for _ in range(2):
            ran = await add_note(app_client.transport, keys[key], text)
            assert ran.is_error is False and ran.structured_content["text"] == text
    assert sorted(memo.RUNS) == sorted(ids), "each approval ran once, under itself"


async def test_each_id_gets_its_own_answer(app_client: Any, http: httpx2.AsyncClient, keys: dict[str, str]) -> None:
    ids = await three_waiting(app_client, keys)
    denied = await http.post(f"/api/v1/approvals/{ids[0]}/deny", headers=bearer(keys["user"]), json={})
    assert denied.status_code == 200
    answer = await http.post(
        "/api/v1/approvals/batch",
        headers=bearer(keys["user"]),
        json={"ids": [ids[0], "apr_nothing", ids[1], ids[1]], "approve": False, "reason": "too much coffee"},
    )
    assert answer.status_code == 200
    items = {item["id"]: item for item in answer.json()["data"]}
    assert list(items) == [ids[0], "apr_nothing", ids[1]], "each id once, in order"
    assert (items[ids[0]]["result"], items[ids[0]]["code"]) == ("refused", "conflict")
    assert (items["apr_nothing"]["result"], items["apr_nothing"]["code"]) == ("refused", "not_found")
    assert (items[ids[1]]["result"], items[ids[1]]["status"]) == ("decided", "denied")
    denial = await add_note(app_client.transport, keys["second"], "order more coffee")
    assert denial.is_error and "too much coffee" in denial.content[0].text
    left = await http.get(f"/api/v1/approvals/{ids[2]}", headers=bearer(keys["user"]))
    assert left.json()["status"] == "pending", "what was not listed is left alone"


async def test_an_agent_key_cannot_decide_in_a_batch(
    app_client: Any, http: httpx2.AsyncClient, keys: dict[str, str]
) -> None:
    ids = await three_waiting(app_client, keys)
    refused = await http.post(
        "/api/v1/approvals/batch", headers=bearer(keys["first"]), json={"ids": ids, "approve": True}
    )
    assert refused.status_code == 403
    still = await http.get("/api/v1/approvals?status=pending", headers=bearer(keys["user"]))
    assert len(still.json()["data"]) == 3 and memo.RUNS == []


async def test_the_console_groups_identical_calls_and_decides_the_selection(
    app_client: Any, keys: dict[str, str]
) -> None:
    ids = await three_waiting(app_client, keys)
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        await sign_in(browser, ALICE)
        inbox = await browser.get("/inbox")
        assert 'href="/approvals/batch">Decide several</a>' in inbox.text
        page = await browser.get("/approvals/batch")
        assert page.status_code == 200
        assert page.text.count('name="ids"') == 2, "the identical pair is one row"
        assert "2 identical requests" in page.text
        named = re.findall(r'class="meta muted small"[^>]*>([^<]*)', page.text)
        assert any("demo agent key" in meta and "second assistant" in meta for meta in named), (
            "the one row names both assistants that asked"
        )
        pair = re.search(r'name="ids" value="([^"]+,[^"]+)"', page.text)
        assert pair is not None and set(pair.group(1).split(",")) == set(ids[:2])
        done = await browser.post(
            "/approvals/batch", data={"csrf": csrf_of(page.text), "ids": pair.group(1), "action": "approve"}
        )
        assert done.status_code == 200 and "2 decided" in done.text
        assert done.text.count('name="ids"') == 1, "only the other call still waits"
        empty = await browser.post("/approvals/batch", data={"csrf": csrf_of(page.text), "action": "approve"})
        assert empty.status_code == 422
    for key in ("first", "second"):
        await add_note(app_client.transport, keys[key], "order more coffee")
    assert sorted(memo.RUNS) == sorted(ids[:2])

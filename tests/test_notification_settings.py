"""Where approvals reach people: each person's channels (e-mail, Slack, their devices) and the workspace's policy
(Slack approvals, what an e-mailed link decides alone), in the console's settings and over REST.

An assistant that could switch off its person's notifications, or widen what a link decides, would choose who
notices its calls: agent keys and assistants' tokens are refused, and only admins set the workspace's policy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from server.services import demo
from store.approval_channels import link_may_decide, personal_channels, workspace_channels
from store.directory import user_by_email, workspace_by_slug
from tests.console import form_post, sign_in
from tests.test_oauth_server import API, BASE, tokens_for

pytestmark = pytest.mark.anyio

ALICE, ADMIN = "alice@acme.test", "admin@acme.test"
MINE, WORKSPACE = "/api/v1/me/notifications", "/api/v1/workspace/approval-channels"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def http(app_client: Any, demo_keys: demo.DemoKeys) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


@pytest.fixture
async def browser_of(app_client: Any, demo_keys: demo.DemoKeys) -> AsyncIterator[Any]:
    clients: list[httpx2.AsyncClient] = []

    async def open_for(email: str | None = None) -> httpx2.AsyncClient:
        client = httpx2.AsyncClient(transport=app_client.transport, base_url=BASE)
        clients.append(client)
        if email:
            await sign_in(client, email)
        return client

    yield open_for
    for client in clients:
        await client.aclose()


async def stored(companion: Any, email: str) -> Any:
    async with companion.db.session() as session:
        user = await user_by_email(session, email)
        return await personal_channels(session, user.id)


async def workspace_policy(companion: Any, demo_keys: demo.DemoKeys) -> Any:
    async with companion.db.session() as session:
        return await workspace_channels(session, (await workspace_by_slug(session, demo_keys.workspace)).id)


def test_a_link_decides_up_to_the_setting_and_nothing_unknown() -> None:
    assert not link_may_decide("none", "read")
    assert link_may_decide("write", "read") and link_may_decide("write", "write")
    assert not link_may_decide("write", "send") and not link_may_decide("send", "delete")
    assert link_may_decide("delete", "delete")
    assert not link_may_decide("delete", "unknown") and not link_may_decide("everything", "read")


async def test_a_person_reads_and_sets_their_channels_with_their_user_key(http, companion, demo_keys):
    key = bearer(demo_keys.user_keys[ALICE])
    first = await http.get(MINE, headers=key)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "email": False,
        "slack": False,
        "push": False,
        "available": {"email": False, "slack": False},
    }
    changed = await http.put(MINE, headers=key, json={"email": True, "slack": True, "push": True})
    assert changed.status_code == 200, changed.text
    assert changed.json()["slack"] is True and changed.json()["available"]["slack"] is False, "kept for later"
    saved = await stored(companion, ALICE)
    assert (saved.email, saved.slack, saved.push) == (True, True, True)
    # All three, and nothing else: a partial or unknown body names the field.
    partial = await http.put(MINE, headers=key, json={"email": False})
    extra = await http.put(MINE, headers=key, json={"email": False, "slack": False, "push": False, "sms": True})
    assert partial.status_code == extra.status_code == 422
    assert (await stored(companion, ALICE)).email is True


async def test_an_agent_key_or_an_assistants_token_cannot_read_or_set_anyones_channels(
    http, browser_of, companion, demo_keys
):
    body = {"email": False, "slack": False, "push": False}
    _, tokens = await tokens_for(http, await browser_of(), scope="api:read api:write approvals", resource=API)
    for credential in (demo_keys.keys[ALICE], tokens["access_token"]):
        for method, path, payload in (
            ("GET", MINE, None),
            ("PUT", MINE, body),
            ("GET", WORKSPACE, None),
            ("PATCH", WORKSPACE, {"email_link_max_risk": "delete"}),
        ):
            answer = await http.request(method, path, headers=bearer(credential), json=payload)
            assert answer.status_code == 403, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "forbidden"
    policy = await workspace_policy(companion, demo_keys)
    assert (policy.slack_approvals, policy.email_link_max_risk) == (False, "none")


async def test_only_an_admin_sets_the_workspaces_channels(http, companion, demo_keys):
    member, admin = bearer(demo_keys.user_keys[ALICE]), bearer(demo_keys.user_keys[ADMIN])
    read = await http.get(WORKSPACE, headers=member)
    assert read.status_code == 200 and read.json() == {"slack_approvals": False, "email_link_max_risk": "none"}
    refused = await http.patch(WORKSPACE, headers=member, json={"email_link_max_risk": "delete"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"

    slack = await http.patch(WORKSPACE, headers=admin, json={"slack_approvals": True})
    assert slack.json() == {"slack_approvals": True, "email_link_max_risk": "none"}
    link = await http.patch(WORKSPACE, headers=admin, json={"email_link_max_risk": "write"})
    assert link.json() == {"slack_approvals": True, "email_link_max_risk": "write"}, "a PATCH keeps what it omits"
    wrong = await http.patch(WORKSPACE, headers=admin, json={"email_link_max_risk": "everything"})
    assert wrong.status_code == 422 and "email_link_max_risk" in wrong.text
    policy = await workspace_policy(companion, demo_keys)
    assert (policy.slack_approvals, policy.email_link_max_risk) == (True, "write")
    mine = await http.get(MINE, headers=member)
    assert mine.json()["available"]["slack"] is True


async def test_the_settings_page_says_where_approvals_reach_you(browser_of, companion, demo_keys):
    alice = await browser_of(ALICE)
    page = (await alice.get("/settings")).text
    section = page.split('id="channels"')[1].split("</section>")[0]
    assert "Where approvals reach you" in section and '<div id="push-device">' in section
    slack_box = section.split('name="notify_slack"')[1].split(">")[0]
    assert "disabled" in slack_box and "has not turned on approvals in Slack" in section
    # A member reads the workspace's policy but has no form for it.
    admin_part = page.split('id="approval-channels"')[1].split("</section>")[0]
    assert "deciding from an approval e-mail needs signing in" in admin_part and "<form" not in admin_part

    saved = await form_post(alice, "/settings", "/settings/notifications", {"notify_push": "on"})
    assert saved.status_code == 303 and saved.headers["location"] == "/settings#channels"
    assert (await stored(companion, ALICE)).push is True


async def test_a_channel_switched_off_keeps_the_persons_choice(browser_of, http, companion, demo_keys):
    await http.put(MINE, headers=bearer(demo_keys.user_keys[ALICE]), json={"email": True, "slack": True, "push": False})
    alice = await browser_of(ALICE)
    # No mail server and no Slack approvals: both boxes are off on the page, and saving does not clear them.
    await form_post(alice, "/settings", "/settings/notifications", {"notify_push": "on"})
    saved = await stored(companion, ALICE)
    assert (saved.email, saved.slack, saved.push) == (True, True, True)
    await http.patch(WORKSPACE, headers=bearer(demo_keys.user_keys[ADMIN]), json={"slack_approvals": True})
    page = (await alice.get("/settings")).text
    assert "disabled" not in page.split('name="notify_slack"')[1].split(">")[0]
    await form_post(alice, "/settings", "/settings/notifications", {})
    saved = await stored(companion, ALICE)
    assert (saved.email, saved.slack, saved.push) == (True, False, False)


async def test_an_admin_sets_the_policy_in_the_console_and_a_member_cannot(browser_of, companion, demo_keys):
    admin = await browser_of(ADMIN)
    page = (await admin.get("/settings")).text
    assert 'action="/settings/approval-channels"' in page
    assert "A link in the e-mail is enough to decide calls up to “send”" in page
    saved = await form_post(
        admin, "/settings", "/settings/approval-channels", {"slack_approvals": "on", "email_link_max_risk": "read"}
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/settings#approval-channels"
    policy = await workspace_policy(companion, demo_keys)
    assert (policy.slack_approvals, policy.email_link_max_risk) == (True, "read")
    wrong = await form_post(admin, "/settings", "/settings/approval-channels", {"email_link_max_risk": "all"})
    assert wrong.status_code == 400 and "Choose one of: none, read, write, send, delete." in wrong.text

    alice = await browser_of(ALICE)
    refused = await form_post(alice, "/settings", "/settings/approval-channels", {"email_link_max_risk": "delete"})
    assert refused.status_code == 403
    assert (await workspace_policy(companion, demo_keys)).email_link_max_risk == "read"

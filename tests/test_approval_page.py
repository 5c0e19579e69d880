"""The approval page: sign in with a user key, read what will happen, approve or deny; forms need their CSRF token."""

from __future__ import annotations

import re

import httpx2
import pytest

from tests.conftest import mcp_client

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match.group(1)


@pytest.fixture
async def waiting(app_client, demo_keys):
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=app_client.transport) as client:
        result = await client.call_tool(
            "harmony_create_action_item", {"meeting_id": "mtg_x", "text": "Send <b>the</b> quote"}
        )
    return result.structured_content["approval_id"]


@pytest.fixture
async def browser(app_client):
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


async def sign_in(browser, key: str, next_path: str = "/") -> httpx2.Response:
    page = await browser.get(f"/login?next={next_path}")
    return await browser.post("/login", data={"key": key, "csrf": csrf_of(page.text), "next": next_path})


async def test_the_page_asks_for_sign_in_then_shows_the_call(browser, demo_keys, waiting):
    first = await browser.get(f"/approvals/{waiting}")
    assert first.status_code == 303 and first.headers["location"] == f"/login?next=/approvals/{waiting}"
    signed = await sign_in(browser, demo_keys.user_keys["alice@acme.test"], f"/approvals/{waiting}")
    assert signed.status_code == 303 and signed.headers["location"] == f"/approvals/{waiting}"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    page = await browser.get(f"/approvals/{waiting}")
    assert page.status_code == 200
    assert "Add the action item “Send &lt;b&gt;the&lt;/b&gt; quote” to meeting mtg_x" in page.text
    assert "<b>the</b>" not in page.text
    assert 'action="/approvals/' in page.text and ">Approve</button>" in page.text and ">Deny</button>" in page.text


async def test_approving_on_the_page(browser, demo_keys, waiting):
    await sign_in(browser, demo_keys.user_keys["alice@acme.test"])
    page = await browser.get(f"/approvals/{waiting}")
    done = await browser.post(f"/approvals/{waiting}/approve", data={"csrf": csrf_of(page.text), "remember": "no"})
    assert done.status_code == 303
    after = await browser.get(done.headers["location"])
    assert "You approved this call." in after.text and ">approved<" in after.text


async def test_a_form_post_without_its_csrf_token_is_refused(browser, demo_keys, waiting):
    await sign_in(browser, demo_keys.user_keys["alice@acme.test"])
    refused = await browser.post(f"/approvals/{waiting}/approve", data={"remember": "no"})
    assert refused.status_code == 403
    page = await browser.get(f"/approvals/{waiting}")
    assert ">pending<" in page.text


async def test_agent_keys_cannot_sign_in(browser, demo_keys):
    refused = await sign_in(browser, demo_keys.keys["alice@acme.test"])
    assert refused.status_code == 401 and "not a valid user key" in refused.text


async def test_someone_else_sees_nothing(browser, demo_keys, waiting):
    await sign_in(browser, demo_keys.user_keys["admin@acme.test"])
    page = await browser.get(f"/approvals/{waiting}")
    assert page.status_code == 404 and "Send" not in page.text

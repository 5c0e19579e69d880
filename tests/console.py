"""Signing a test browser (an httpx client) in to the web console, as a person does."""

from __future__ import annotations

import re

import httpx2

from server.services.demo import DEMO_PASSWORD


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page) or re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert match, page
    return match.group(1)


async def sign_in(
    browser: httpx2.AsyncClient, email: str, password: str = DEMO_PASSWORD, next_path: str = "/"
) -> httpx2.Response:
    page = await browser.get(f"/login?next={next_path}")
    return await browser.post(
        "/login", data={"email": email, "password": password, "csrf": csrf_of(page.text), "next": next_path}
    )


async def form_post(
    browser: httpx2.AsyncClient, page_path: str, action: str, data: dict | None = None
) -> httpx2.Response:
    """Open ``page_path`` for its CSRF token, then post ``data`` to ``action`` as its form would."""
    page = await browser.get(page_path)
    return await browser.post(action, data={"csrf": csrf_of(page.text), **(data or {})})

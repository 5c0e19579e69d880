"""Real Chromium (Debian's package, driven by Playwright) against the real app under uvicorn on 127.0.0.1.

Chromium is not downloaded by Playwright: it is the system's, named by
``COMPANION_CHROMIUM`` or found at /usr/bin/chromium. Without it the browser
tests are skipped, unless ``COMPANION_REQUIRE_BROWSER=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from server.app import Companion, create_app
from server.services import demo
from tests.conftest import free_port
from tests.fakes.base import serve
from tests.fakes.linear import LinearFake
from tests.providers import provider_settings

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    return os.environ.get("COMPANION_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    path = chromium_path()
    if path is None:
        if os.environ.get("COMPANION_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (COMPANION_REQUIRE_BROWSER=1) but was not found")
        pytest.skip("no Chromium on this machine (install Debian's chromium, or set COMPANION_CHROMIUM)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Console:
    """A running server with the demo workspace, a Linear fake it can reach, and a way to open pages."""

    base_url: str
    companion: Companion
    keys: demo.DemoKeys
    linear: LinearFake
    browser: Browser
    contexts: list[BrowserContext]

    async def person(self, email: str | None = None) -> Page:
        """A fresh browser profile; signed in as ``email`` when given."""
        context = await self.browser.new_context(base_url=self.base_url, viewport={"width": 1360, "height": 900})
        context.set_default_timeout(10_000)
        self.contexts.append(context)
        page = await context.new_page()
        if email:
            await sign_in(page, email)
        return page


async def sign_in(page: Page, email: str, password: str = demo.DEMO_PASSWORD) -> None:
    await page.goto("/login")
    await page.get_by_label("E-mail").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/inbox")


@pytest.fixture
async def console(settings, registry, companion, chromium) -> AsyncIterator[Console]:
    linear = LinearFake()
    async with serve(linear) as origin:
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        live = provider_settings(settings, "linear", origin).model_copy(update={"base_url": base_url})
        server_core = Companion.build(live, registry=registry)
        async with server_core.db.transaction() as session:
            keys = await demo.seed(session, registry, server_core.box, live.encryption_keys()[0])
        app = create_app(server_core)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        running = Console(base_url, server_core, keys, linear, chromium, [])
        try:
            yield running
        finally:
            for context in running.contexts:
                await context.close()
            server.should_exit = True
            await task

"""The Marketplace in the web console: browse and filter apps, connect one, see it installed, choose the AI models.

Linear's fake on 127.0.0.1 is the provider; a test browser (an httpx client) signs in as a demo person.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import httpx2
import pytest
from sqlalchemy import select

from server.services.ai_models import SHIPPED_MODELS_FILE, ModelsFileError, catalogue_of, enabled_models, load_models
from store.directory import workspace_by_slug
from store.models import Connection
from tests.console import csrf_of, form_post, sign_in
from tests.fakes.base import serve
from tests.fakes.linear import LinearFake
from tests.providers import provider_settings

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


@pytest.fixture
async def linear() -> AsyncIterator[LinearFake]:
    fake = LinearFake()
    async with serve(fake):
        yield fake


@pytest.fixture
def settings(settings, linear):
    """The suite's settings, with Linear's traffic and OAuth client pointed at the fake."""
    return provider_settings(settings, "linear", linear.origin)


@pytest.fixture
async def browser(app_client, demo_keys) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


async def signed_in(browser: httpx2.AsyncClient, email: str) -> httpx2.AsyncClient:
    done = await sign_in(browser, email)
    assert done.status_code == 303, done.text
    return browser


def card_of(page: str, app_id: str) -> str:
    """One app's card on the Apps tab."""
    match = re.search(rf'<article class="card app-card" aria-labelledby="app-{app_id}">(.*?)</article>', page, re.S)
    assert match, f"no card for {app_id}"
    return match.group(1)


def error_beside(page: str, field_id: str) -> str:
    match = re.search(rf'<span class="field-error" id="{field_id}-error">([^<]*)</span>', page)
    assert match, f"no error beside {field_id}"
    return match.group(1)


async def linear_rows(companion) -> list[Connection]:
    async with companion.db.session() as session:
        return list(await session.scalars(select(Connection).where(Connection.app == "linear")))


async def connect_with_key(browser: httpx2.AsyncClient, key: str, scope: str = "personal", **extra: str):
    return await form_post(
        browser,
        "/marketplace/apps/linear",
        "/marketplace/apps/linear/connect",
        {"method": "api_key", "scope": scope, "setup.api_key": key, **extra},
    )


# -- Apps ---------------------------------------------------------------------------------------------------------


async def test_apps_shows_each_app_with_its_scopes_access_and_tool_risks(browser):
    await signed_in(browser, "alice@acme.test")
    page = (await browser.get("/marketplace")).text
    linear = card_of(page, "linear")
    assert "Task management" in linear and ">Workspace<" in linear and ">Personal<" in linear
    assert "<strong>OAuth</strong>: read, write" in linear
    assert "<strong>API key</strong>: Personal API key" in linear
    assert "2 read" in linear and "2 write" in linear
    assert "calendar.readonly, calendar.events" in card_of(page, "gcal")
    assert "A workspace app: admins connect it." in card_of(page, "salesforce")
    assert 'aria-labelledby="app-harmony"' not in page  # built in, never connected
    assert 'aria-current="page">Apps</a>' in page


async def test_search_and_category_filters_work_as_plain_links(browser):
    await signed_in(browser, "alice@acme.test")
    found = (await browser.get("/marketplace", params={"q": "calendar"})).text
    assert 'id="app-gcal"' in found and 'id="app-linear"' not in found
    crm = (await browser.get("/marketplace", params={"category": "CRM"})).text
    assert 'id="app-hubspot"' in crm and 'id="app-salesforce"' in crm and 'id="app-linear"' not in crm
    assert 'href="/marketplace?category=CRM" aria-current="page"' in crm
    both = (await browser.get("/marketplace", params={"q": "pipeline", "category": "CRM"})).text
    assert 'id="app-hubspot"' in both and 'id="app-salesforce"' not in both
    nothing = (await browser.get("/marketplace", params={"q": "spreadsheet"})).text
    assert "No apps match “spreadsheet”" in nothing


async def test_an_oauth_app_without_a_client_on_this_server_says_so(browser):
    await signed_in(browser, "alice@acme.test")
    assert "Not set up on this server yet." in card_of((await browser.get("/marketplace")).text, "gcal")
    page = (await browser.get("/marketplace/apps/gcal")).text
    assert "is not set up on this server" in page
    assert '<button class="button primary" type="submit" disabled>Continue with Google Calendar</button>' in page


# -- Connecting -----------------------------------------------------------------------------------------------------


async def test_connecting_with_an_api_key_shows_errors_beside_the_field_then_connects(browser, companion, linear):
    await signed_in(browser, "alice@acme.test")
    form = (await browser.get("/marketplace/apps/linear")).text
    assert 'name="setup.api_key" type="password"' in form and "Personal API keys" in form

    missing = await connect_with_key(browser, "")
    assert missing.status_code == 422
    assert error_beside(missing.text, "api_key-api_key") == "Personal API key is required"
    assert "Nothing was saved: fix the field marked below." in missing.text
    assert await linear_rows(companion) == []

    key = linear.issue_key()
    done = await connect_with_key(browser, key, label="Team tracker")
    assert done.status_code == 303 and done.headers["location"].startswith("/integrations/conn_")
    page = await browser.get(done.headers["location"])
    assert "Linear is connected." in page.text and key not in page.text

    installed = (await browser.get("/marketplace/installed")).text
    personal = installed.split('id="personal-heading"')[1]
    assert "Team tracker" in personal and ">Active<" in personal and "Alice Archer" in personal
    assert "No workspace integrations yet" in installed


async def test_a_setup_form_types_numbers_choices_and_checkboxes_as_the_manifest_says(browser, companion):
    await signed_in(browser, "alice@acme.test")
    form = (await browser.get("/marketplace/apps/email")).text
    assert 'name="setup.port" type="number"' in form and '<option value="starttls" selected>' in form
    assert 'name="setup.verify_tls" value="true" checked' in form
    typed = {
        "method": "smtp",
        "scope": "personal",
        "setup.host": "smtp.example.com",
        "setup.port": "five",
        "setup.security": "tls",
        "setup.verify_tls": "false",  # the hidden input alone: the box was unticked
        "setup.username": "alice@example.com",
        "setup.password": "app-password",
        "setup.from_address": "alice@example.com",
    }
    wrong = await form_post(browser, "/marketplace/apps/email", "/marketplace/apps/email/connect", typed)
    assert wrong.status_code == 422 and error_beside(wrong.text, "smtp-port") == "must be a whole number"
    assert 'value="smtp.example.com"' in wrong.text and "app-password" not in wrong.text
    done = await form_post(
        browser, "/marketplace/apps/email", "/marketplace/apps/email/connect", {**typed, "setup.port": "465"}
    )
    assert done.status_code == 303
    async with companion.db.session() as session:
        row = await session.scalar(select(Connection).where(Connection.app == "email"))
    assert row.setup == {
        "host": "smtp.example.com",
        "port": 465,
        "security": "tls",
        "verify_tls": False,
        "username": "alice@example.com",
        "from_address": "alice@example.com",
    }


async def test_a_refused_connection_never_sends_the_key_back_to_the_browser(browser, companion, linear):
    await signed_in(browser, "alice@acme.test")
    key = linear.issue_key()
    refused = await connect_with_key(browser, key, scope="team")
    assert refused.status_code == 422 and "connects as personal or workspace" in refused.text
    assert key not in refused.text
    assert await linear_rows(companion) == []


async def test_a_member_may_connect_only_for_themselves(browser, companion, linear):
    await signed_in(browser, "bob@acme.test")
    form = (await browser.get("/marketplace/apps/linear")).text
    assert 'value="workspace"' not in form and "personal integration, just for you" in form
    refused = await connect_with_key(browser, linear.issue_key(), scope="workspace")
    assert refused.status_code == 403 and "managed by admins" in refused.text
    assert await linear_rows(companion) == []


async def test_an_admin_chooses_workspace_or_personal(browser, companion, linear):
    await signed_in(browser, "admin@acme.test")
    form = (await browser.get("/marketplace/apps/linear")).text
    assert 'id="api_key-scope-workspace" name="scope" value="workspace"' in form
    assert 'id="api_key-scope-personal" name="scope" value="personal"' in form
    done = await connect_with_key(browser, linear.issue_key(), scope="workspace")
    assert done.status_code == 303
    installed = (await browser.get("/marketplace/installed")).text
    workspace = installed.split('id="workspace-heading"')[1].split('id="personal-heading"')[0]
    assert "Ada Admin" in workspace and ">Active<" in workspace
    assert [row.scope.value for row in await linear_rows(companion)] == ["workspace"]


async def test_others_see_the_workspace_integration_but_not_someones_personal_one(browser, linear, app_client):
    await signed_in(browser, "alice@acme.test")
    assert (await connect_with_key(browser, linear.issue_key(), label="Alice's Linear")).status_code == 303
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as admin:
        await signed_in(admin, "admin@acme.test")
        installed = (await admin.get("/marketplace/installed")).text
    assert "Alice's Linear" not in installed
    assert "You have not connected any personal apps" in installed


async def test_oauth_connect_opens_the_provider_and_ends_on_a_page_that_tells_the_opener(browser, companion):
    await signed_in(browser, "alice@acme.test")
    page = (await browser.get("/marketplace/apps/linear")).text
    assert "<form" in page and "data-oauth" in page and "Your browser blocked the sign-in window." in page
    started = await browser.post(
        "/marketplace/apps/linear/connect",
        data={"csrf": csrf_of(page), "method": "oauth2", "scope": "personal"},
        headers={"Accept": "application/json"},
    )
    assert started.status_code == 200, started.text
    to_provider = await browser.get(started.json()["authorize_url"])
    assert to_provider.status_code == 302
    async with httpx.AsyncClient() as provider:
        approved = await provider.get(to_provider.headers["location"])
    callback = httpx.URL(approved.headers["location"])
    back = await browser.get(callback.path, params=dict(callback.params))
    assert back.status_code == 303 and back.headers["location"].startswith("/marketplace/connected?connected=conn_")
    done = await browser.get(back.headers["location"])
    connection = (await linear_rows(companion))[0]
    assert f'data-connected="{connection.id}"' in done.text and "Linear is connected" in done.text
    assert connection.auth_method == "oauth2" and connection.scope.value == "personal"


async def test_a_sign_in_refused_at_the_provider_comes_back_to_a_page_that_says_so(browser, companion):
    await signed_in(browser, "alice@acme.test")
    page = (await browser.get("/marketplace/apps/linear")).text
    started = await browser.post(
        "/marketplace/apps/linear/connect",
        data={"csrf": csrf_of(page), "method": "oauth2", "scope": "personal"},
        headers={"Accept": "application/json"},
    )
    to_provider = await browser.get(started.json()["authorize_url"])
    state = httpx.URL(to_provider.headers["location"]).params["state"]
    back = await browser.get(
        "/api/v1/integrations/oauth/callback",
        params={"error": "access_denied", "error_description": "The user said no", "state": state},
    )
    assert back.status_code == 303 and back.headers["location"] == "/marketplace/connected?failed=1"
    told = await browser.get(back.headers["location"])
    assert told.status_code == 400 and "The provider did not authorize the connection: The user said no." in told.text
    assert await linear_rows(companion) == []


async def test_without_javascript_oauth_connect_goes_to_the_provider_in_the_same_tab(browser):
    await signed_in(browser, "alice@acme.test")
    page = (await browser.get("/marketplace/apps/linear")).text
    started = await browser.post(
        "/marketplace/apps/linear/connect", data={"csrf": csrf_of(page), "method": "oauth2", "scope": "personal"}
    )
    assert started.status_code == 303
    assert re.fullmatch(rf"{BASE}/api/v1/integrations/oauth/\w+/start", started.headers["location"])


async def test_a_post_without_its_csrf_token_is_refused(browser, companion, linear):
    await signed_in(browser, "admin@acme.test")
    refused = await browser.post(
        "/marketplace/apps/linear/connect", data={"method": "api_key", "setup.api_key": linear.issue_key()}
    )
    assert refused.status_code == 403 and "did not come from Companion" in refused.text
    assert await linear_rows(companion) == []
    toggled = await browser.post("/marketplace/models/claude-haiku-4-5", data={"enabled": "false"})
    assert toggled.status_code == 403


# -- Models ---------------------------------------------------------------------------------------------------------


async def test_an_admin_turns_models_on_and_off_for_the_workspace(browser, companion, demo_keys):
    await signed_in(browser, "admin@acme.test")
    page = (await browser.get("/marketplace/models")).text
    assert "Claude Sonnet 4.5" in page and "200,000 tokens" in page and "2 of 4 on" in page
    off = await form_post(browser, "/marketplace/models", "/marketplace/models/claude-sonnet-4-5", {"enabled": "false"})
    assert off.status_code == 303
    on = await form_post(browser, "/marketplace/models", "/marketplace/models/claude-opus-4-5", {"enabled": "true"})
    assert on.status_code == 303
    page = (await browser.get("/marketplace/models")).text
    assert "Claude Opus 4.5 is now on for Companion here." in page and "2 of 4 on" in page and "by Ada Admin" in page
    async with companion.db.session() as session:
        workspace = await workspace_by_slug(session, "acme")
        enabled = await enabled_models(session, workspace.id, catalogue_of(companion.settings))
    assert [m.id for m in enabled] == ["claude-haiku-4-5", "claude-opus-4-5"]
    # The assistant's own (agent) key reads the workspace's choice over the API.
    read = await browser.get("/api/v1/models", headers={"Authorization": f"Bearer {demo_keys.keys['alice@acme.test']}"})
    assert read.status_code == 200
    assert [m["id"] for m in read.json()["data"]] == ["claude-haiku-4-5", "claude-opus-4-5"]


async def test_htmx_swaps_the_model_list_in_place(browser):
    await signed_in(browser, "admin@acme.test")
    page = (await browser.get("/marketplace/models")).text
    swapped = await browser.post(
        "/marketplace/models/claude-haiku-4-5",
        data={"enabled": "false"},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf_of(page)},
    )
    assert swapped.status_code == 200 and 'id="models"' in swapped.text and "1 of 4 on" in swapped.text


async def test_members_see_the_models_but_cannot_change_them(browser):
    await signed_in(browser, "bob@acme.test")
    page = (await browser.get("/marketplace/models")).text
    assert "Claude Haiku 4.5" in page and "Only workspace admins can change this." in page
    assert "Turn off" not in page and "Turn on" not in page
    refused = await form_post(
        browser, "/marketplace/models", "/marketplace/models/claude-haiku-4-5", {"enabled": "false"}
    )
    assert refused.status_code == 403
    assert "2 of 4 on" in (await browser.get("/marketplace/models")).text


async def test_an_unknown_model_is_not_found(browser):
    await signed_in(browser, "admin@acme.test")
    missing = await form_post(browser, "/marketplace/models", "/marketplace/models/gpt-0", {"enabled": "true"})
    assert missing.status_code == 404


async def test_the_models_file_setting_points_at_another_list(browser, settings, tmp_path):
    custom = tmp_path / "models.yaml"
    custom.write_text(
        "models:\n  - {id: local-llama, name: Local Llama, provider: On-premises, context_window: 8192}\n"
    )
    settings.models_file = custom
    await signed_in(browser, "admin@acme.test")
    page = (await browser.get("/marketplace/models")).text
    assert "Local Llama" in page and "Claude" not in page and "8,192 tokens" in page


def test_a_broken_models_file_names_the_file_and_the_field(tmp_path):
    zero = tmp_path / "zero.yaml"
    zero.write_text("models:\n  - {id: a, name: A, provider: P, context_window: 0}\n")
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        "models:\n  - {id: a, name: A, provider: P, context_window: 1}\n" * 1
        + "  - {id: a, name: B, provider: P, context_window: 1}\n"
    )
    with pytest.raises(
        ModelsFileError, match=r"zero\.yaml: models\[0\]\.context_window: Input should be greater than 0"
    ):
        load_models(zero)
    with pytest.raises(ModelsFileError, match=r"twice\.yaml: models: .*duplicate model id a"):
        load_models(twice)


def test_the_shipped_models_file_is_valid():
    ids = [m.id for m in load_models(SHIPPED_MODELS_FILE)]
    assert "claude-sonnet-4-5" in ids and len(ids) == len(set(ids))

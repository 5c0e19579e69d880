"""An integration's page in the web console: test it, rotate its key, sync it and read the logs, see what its
tools would do, configure it, disconnect and delete it; only those who may manage it can change it.

Linear's fake on 127.0.0.1 is the provider (Google Calendar's for the calendar picker).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx2
import pytest

from approvals.rules import Effect, Rule
from server.app import Companion, create_app
from store.directory import user_by_email, workspace_by_slug
from store.keys import create_key
from store.models import Connection, ConnectionStatus, SyncRun, utcnow
from tests.console import csrf_of, form_post, sign_in
from tests.fakes.base import serve
from tests.fakes.gcal import TEAM_ID, GoogleCalendarFake
from tests.fakes.linear import LinearFake
from tests.providers import connected, provider_settings

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


@pytest.fixture
async def linear() -> AsyncIterator[LinearFake]:
    fake = LinearFake()
    async with serve(fake):
        yield fake


@pytest.fixture
def settings(settings, linear):
    return provider_settings(settings, "linear", linear.origin)


@pytest.fixture
async def people(app_client, demo_keys) -> AsyncIterator[dict[str, httpx2.AsyncClient]]:
    """A signed-in browser for each demo person."""
    browsers = {}
    for who in ("admin", "alice", "bob"):
        browser = httpx2.AsyncClient(transport=app_client.transport, base_url=BASE)
        done = await sign_in(browser, f"{who}@acme.test")
        assert done.status_code == 303
        browsers[who] = browser
    yield browsers
    for browser in browsers.values():
        await browser.aclose()


async def connect_linear(browser: httpx2.AsyncClient, fake: LinearFake, scope: str = "personal") -> str:
    """Connect Linear with a fresh API key through the Marketplace form; the new connection's page path."""
    done = await form_post(
        browser,
        "/marketplace/apps/linear",
        "/marketplace/apps/linear/connect",
        {"method": "api_key", "scope": scope, "setup.api_key": fake.issue_key()},
    )
    assert done.status_code == 303, done.text
    return done.headers["location"]


async def row_of(companion, path: str) -> Connection | None:
    async with companion.db.session() as session:
        return await session.get(Connection, path.rsplit("/", 1)[-1])


def tool_row(page: str, name: str) -> str:
    match = re.search(
        rf"<tr>\s*<td><strong>[^<]*</strong> <code class=\"small muted\">{name}</code>(.*?)</tr>", page, re.S
    )
    assert match, f"no row for {name}"
    return match.group(1)


async def test_the_page_shows_the_connection_and_what_each_tool_would_do_for_the_viewer(people, linear, companion):
    alice = people["alice"]
    path = await connect_linear(alice, linear)
    page = (await alice.get(path)).text
    assert "<h1>Linear</h1>" in page and ">Personal<" in page and ">Active<" in page
    assert "Personal, just for you" in page and "Alice Archer" in page
    assert "Runs without asking" in tool_row(page, "linear_list_teams")
    assert "Asks first" in tool_row(page, "linear_create_issue")
    assert "default for write tools: ask" in tool_row(page, "linear_create_issue")

    async with companion.db.transaction() as session:
        admin = await user_by_email(session, "admin@acme.test")
        workspace_id = (await workspace_by_slug(session, "acme")).id
        key = await create_key(session, workspace_id=workspace_id, user_id=admin.id, name="rules")
    principal = await companion.principal_for(key.token)
    async with companion.db.transaction() as session:
        await companion.rulebook.create(
            session,
            principal,
            Rule(
                effect=Effect.ALLOW,
                scope="workspace",
                app="linear",
                tool="linear_create_issue",
                description="Team rule",
            ),
        )
    page = (await alice.get(path)).text
    # Alice's connection is personal: only her own rules auto-approve its calls, and the page says why.
    assert "Asks first" in tool_row(page, "linear_create_issue")
    assert "Team rule (allow) set aside" in tool_row(page, "linear_create_issue")


async def test_test_connection_reports_success_and_the_providers_refusal(people, linear):
    alice = people["alice"]
    path = await connect_linear(alice, linear)
    tested = await form_post(alice, path, f"{path}/test")
    assert tested.status_code == 303
    assert "Signed in to Linear as Alice" in (await alice.get(path)).text

    linear.api_keys.clear()
    page = (await alice.get(path)).text
    inline = await alice.post(f"{path}/test", headers={"HX-Request": "true", "X-CSRF-Token": csrf_of(page)})
    assert inline.status_code == 200 and "<html" not in inline.text
    assert 'class="flash error"' in inline.text and "no longer accepts" in inline.text
    after = (await alice.get(path)).text
    assert ">Needs re-auth<" in after and ">Re-authenticate</a>" in after


async def test_a_new_api_key_is_checked_beside_its_field_then_replaces_the_old_one(people, linear, companion):
    alice = people["alice"]
    path = await connect_linear(alice, linear)
    before = await row_of(companion, path)
    missing = await form_post(alice, path, f"{path}/credentials", {"setup.api_key": ""})
    assert missing.status_code == 422
    assert (
        '<span class="field-error" id="credentials-api_key-error">Personal API key is required</span>' in missing.text
    )
    assert (await row_of(companion, path)).credentials == before.credentials

    linear.api_keys.clear()
    saved = await form_post(alice, path, f"{path}/credentials", {"setup.api_key": linear.issue_key()})
    assert saved.status_code == 303
    assert (await row_of(companion, path)).credentials != before.credentials
    assert (await form_post(alice, path, f"{path}/test")).status_code == 303
    assert "Signed in to Linear as Alice" in (await alice.get(path)).text


async def test_sync_users_matches_people_and_its_logs_page_back(people, linear, companion):
    alice = people["alice"]
    path = await connect_linear(alice, linear)
    started = await form_post(alice, path, f"{path}/sync")
    assert started.status_code == 303 and started.headers["location"].endswith("#sync-logs")
    await companion.sync.wait()
    page = (await alice.get(path)).text
    assert ">Succeeded<" in page and "3 fetched" in page
    assert "alice@acme.test" in page and "u-alice" in page

    connection_id = path.rsplit("/", 1)[-1]
    async with companion.db.transaction() as session:
        for hours in range(1, 12):
            moment = utcnow() - timedelta(hours=hours)
            session.add(
                SyncRun(connection_id=connection_id, status="failed", started_at=moment, finished_at=moment, errors=[])
            )
    first = (await alice.get(path)).text
    assert first.count(">Failed<") == 9 and "?logs=2#sync-logs" in first
    second = (await alice.get(path, params={"logs": 2})).text
    assert second.count(">Failed<") == 2 and "?logs=1#sync-logs" in second and "?logs=3" not in second


async def test_disconnect_keeps_the_settings_and_delete_removes_the_integration(people, linear, companion):
    alice = people["alice"]
    path = await connect_linear(alice, linear)
    page = (await alice.get(path)).text
    assert 'href="?confirm=disconnect#disconnect-dialog" data-dialog="disconnect-dialog"' in page
    assert '<dialog id="disconnect-dialog" aria-labelledby="disconnect-title" >' in page  # closed until asked
    without_javascript = (await alice.get(path, params={"confirm": "disconnect"})).text
    assert '<dialog id="disconnect-dialog" aria-labelledby="disconnect-title" open>' in without_javascript
    assert "<strong>Stays:</strong> its settings, mappings and the data it synced" in page
    assert "<strong>Goes:</strong> the credentials, its settings and mappings" in page

    gone = await form_post(alice, path, f"{path}/disconnect")
    assert gone.status_code == 303
    row = await row_of(companion, path)
    assert row.status is ConnectionStatus.DISCONNECTED and row.credentials is None and row.mappings
    page = (await alice.get(path)).text
    assert "is disconnected. Its settings and the data it synced are kept." in page
    assert ">Disconnected<" in page and ">Reconnect</a>" in page and 'data-dialog="disconnect-dialog"' not in page

    deleted = await form_post(alice, path, f"{path}/delete")
    assert deleted.status_code == 303 and deleted.headers["location"] == "/marketplace/installed"
    assert "is deleted. Data it synced into Harmony stays." in (await alice.get("/marketplace/installed")).text
    assert await row_of(companion, path) is None
    assert (await alice.get(path)).status_code == 404


async def test_a_member_sees_a_workspace_integration_but_cannot_manage_it(people, linear, companion):
    path = await connect_linear(people["admin"], linear, scope="workspace")
    bob = people["bob"]
    page = (await bob.get(path)).text
    assert "You can see and test this workspace integration." in page
    assert 'data-dialog="disconnect-dialog"' not in page and ">Sync users</button>" not in page
    assert (await form_post(bob, path, f"{path}/test")).status_code == 303
    refused = await form_post(bob, path, f"{path}/disconnect")
    assert (
        refused.status_code == 403 and "managed by admins and members with the integration permission" in refused.text
    )
    assert (await row_of(companion, path)).status is ConnectionStatus.ACTIVE
    assert (await form_post(bob, path, f"{path}/delete")).status_code == 403
    assert await row_of(companion, path) is not None


async def test_someone_elses_personal_integration_is_not_found(people, linear):
    path = await connect_linear(people["alice"], linear)
    assert (await people["admin"].get(path)).status_code == 404
    assert (await form_post(people["bob"], "/marketplace", f"{path}/disconnect")).status_code == 404


async def test_a_post_without_its_csrf_token_changes_nothing(people, linear, companion):
    alice = people["alice"]
    path = await connect_linear(alice, linear)
    refused = await alice.post(f"{path}/disconnect")
    assert refused.status_code == 403
    assert (await row_of(companion, path)).status is ConnectionStatus.ACTIVE


@pytest.fixture
async def calendar(settings, registry) -> AsyncIterator[tuple[httpx2.AsyncClient, str, Companion]]:
    """Alice's Google Calendar connected, and her browser signed in to a console on the same server."""
    fake = GoogleCalendarFake()
    async with connected(settings, registry, fake, "gcal", allow=False) as gcal:
        app = create_app(gcal.companion)
        async with (
            app.router.lifespan_context(app),
            httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as browser,
        ):
            assert (await sign_in(browser, "alice@acme.test")).status_code == 303
            yield browser, f"/integrations/{gcal.connection_id}", gcal.companion


async def test_refresh_list_offers_the_calendars_and_the_picked_ones_are_saved(calendar):
    browser, path, _ = calendar
    page = (await browser.get(path)).text
    assert "Calendars Harmony may see" in page and "Nothing picked yet" in page
    refreshed = (await browser.get(f"{path}/options/calendars/choices")).text
    assert "Team" in refreshed and "Holidays in Germany" in refreshed and ">Primary<" in refreshed
    fragment = await browser.get(f"{path}/options/calendars/choices", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith('<fieldset class="field option-picker"') and "Team" in fragment.text
    saved = await form_post(browser, path, f"{path}/options", {"options.calendars": TEAM_ID})
    assert saved.status_code == 303
    page = (await browser.get(path)).text
    assert re.search(rf'value="{re.escape(TEAM_ID)}" checked', page)


async def test_field_mappings_offer_only_valid_fields_and_refuse_others_beside_the_field(calendar):
    browser, path, companion = calendar
    page = (await browser.get(path)).text
    title = re.search(r'<select id="map-title" name="fields.title"[^>]*>(.*?)</select>', page, re.S)
    assert title and re.findall(r'<option value="([^"]*)"', title.group(1)) == [
        "",
        "summary",
        "start",
        "end",
        "attendees",
        "html_link",
    ]
    assert "into Harmony only" in page and 'name="direction" value="to_harmony"' in page
    refused = await form_post(browser, path, f"{path}/mappings", {"direction": "to_harmony", "fields.title": "bogus"})
    assert refused.status_code == 422
    assert "&#39;bogus&#39; is not a Google Calendar field" in refused.text
    assert 'id="map-title-error"' in refused.text
    saved = await form_post(
        browser, path, f"{path}/mappings", {"direction": "to_harmony", "auto_sync": "true", "fields.title": "summary"}
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("#sync")
    row = await row_of(companion, path)
    assert row.mappings["fields"] == {"title": "summary"} and row.mappings["auto_sync"] is True
    page = (await browser.get(path)).text
    assert 'id="auto-sync" name="auto_sync" value="true" checked' in page

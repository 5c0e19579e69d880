"""The integration lifecycle over the REST API, with Linear's fake on 127.0.0.1 as the provider.

Connect (OAuth with PKCE, or an API key) → test → rotate → options and mappings → sync and its logs →
disconnect → delete; and an assistant seeing the app's tools come and go over MCP.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import pytest
from sqlalchemy import delete, select, update

from server.app import Companion, create_app
from server.services import demo
from store.directory import user_by_email, workspace_by_slug
from store.keys import create_key
from store.models import Base, Connection, Contact, Event, KeyKind, Membership, OAuthFlow, SyncedRecord, User
from tests.conftest import TEST_SECRET, mcp_client
from tests.fakes.base import serve
from tests.fakes.linear import LinearFake
from tests.fakes.slack import SlackFake
from tests.providers import connected, provider_settings

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"


@dataclass
class World:
    companion: Companion
    fake: LinearFake
    keys: demo.DemoKeys
    app: Any

    def person(self, who: str = "alice") -> httpx.AsyncClient:
        """A person's API client (their user key) that also keeps a browser's cookies."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=BASE,
            headers={"Authorization": f"Bearer {self.keys.user_keys[f'{who}@acme.test']}"},
        )

    def agent(self, who: str = "alice") -> Any:
        return mcp_client(BASE, self.keys.keys[f"{who}@acme.test"], transport=httpx2.ASGITransport(app=self.app))


@pytest.fixture
async def world(settings, registry) -> AsyncIterator[World]:
    fake = LinearFake()
    async with serve(fake) as origin:
        companion = Companion.build(provider_settings(settings, "linear", origin), registry=registry)
        async with companion.db.transaction() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
        async with companion.db.transaction() as session:
            keys = await demo.seed(session, companion.registry, companion.box, TEST_SECRET.encode())
            workspace = await workspace_by_slug(session, keys.workspace)
            assert workspace is not None
            for email in ("alice@acme.test", "bob@acme.test", "admin@acme.test"):
                if email not in keys.user_keys:
                    user = await user_by_email(session, email)
                    assert user is not None
                    issued = await create_key(session, workspace_id=workspace.id, user_id=user.id, kind=KeyKind.USER)
                    keys.user_keys[email] = issued.token
        app = create_app(companion)
        async with app.router.lifespan_context(app):
            yield World(companion, fake, keys, app)


async def connect_with_key(client: httpx.AsyncClient, fake: LinearFake, **body: Any) -> httpx.Response:
    return await client.post(
        "/api/v1/integrations/apps/linear/connect",
        json={"method": "api_key", "scope": "personal", "setup": {"api_key": fake.issue_key()}, **body},
    )


async def sign_in(client: httpx.AsyncClient, email: str) -> None:
    page = await client.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    done = await client.post(
        "/login", data={"email": email, "password": demo.DEMO_PASSWORD, "csrf": csrf.group(1), "next": "/"}
    )
    assert done.status_code == 303


async def authorize(world: World, client: httpx.AsyncClient, started: dict[str, Any]) -> httpx.URL:
    """The browser's part: open the connect link, let the provider approve, come back with code and state."""
    to_provider = await client.get(started["authorize_url"])
    assert to_provider.status_code == 302, to_provider.text
    async with httpx.AsyncClient() as browser:
        approved = await browser.get(to_provider.headers["location"])
    assert approved.status_code == 302, approved.text
    return httpx.URL(approved.headers["location"])


async def replace_verifier(world: World, flow_id: str, verifier: str | None) -> None:
    """Tamper with a pending flow's sealed PKCE verifier, as a lost or forged one would be."""
    box = world.companion.box
    async with world.companion.db.transaction() as session:
        flow = await session.get(OAuthFlow, flow_id)
        assert flow is not None
        sealed = box.open_json(flow.sealed_secrets, context=f"oauth-flow:{flow.id}")
        flow.sealed_secrets = box.seal_json({**sealed, "code_verifier": verifier}, context=f"oauth-flow:{flow.id}")


async def test_the_catalog_lists_connectable_apps_with_their_setup(world):
    async with world.person() as alice:
        apps = (await alice.get("/api/v1/integrations/apps")).json()["data"]
    linear = next(a for a in apps if a["id"] == "linear")
    assert linear["methods"] == ["oauth2", "api_key"] and linear["oauth_configured"] is True
    assert linear["setup_fields"][0]["name"] == "api_key" and linear["syncs"] == "users"
    assert "harmony" not in {a["id"] for a in apps}


async def test_agent_keys_cannot_manage_integrations(world):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.app),
        base_url=BASE,
        headers={"Authorization": f"Bearer {world.keys.keys['alice@acme.test']}"},
    ) as agent:
        refused = await agent.get("/api/v1/integrations")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"


async def test_an_api_key_connection_hides_its_key_and_is_usable_at_once(world):
    async with world.person() as alice:
        created = await connect_with_key(alice, world.fake, label="My Linear")
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["status"] == "active" and body["auth_method"] == "api_key" and body["has_credentials"]
        assert "api_key" not in body["setup"] and "key-" not in created.text
        tested = await alice.post(f"/api/v1/integrations/{body['id']}/test")
    assert tested.json() == {"ok": True, "code": None, "message": "Signed in to Linear as Alice"}
    async with world.agent() as client:
        result = await client.call_tool("linear_list_teams", {})
    assert [t["key"] for t in result.structured_content["teams"]] == ["ENG", "DES", "OPS"]


async def test_setup_errors_name_each_field_and_store_nothing(world):
    async with world.person() as alice:
        missing = await alice.post(
            "/api/v1/integrations/apps/linear/connect",
            json={"method": "api_key", "setup": {"token": "x"}},
        )
        wrong_scope = await alice.post("/api/v1/integrations/apps/linear/connect", json={"scope": "team"})
        unknown = await alice.post("/api/v1/integrations/apps/nope/connect", json={})
    assert missing.status_code == 422
    assert missing.json()["error"]["details"]["fields"] == {
        "setup.token": "not a setup field of Linear when connecting with api_key",
        "setup.api_key": "Personal API key is required",
    }
    assert wrong_scope.status_code == 422 and "scope" in wrong_scope.json()["error"]["details"]["fields"]
    assert unknown.status_code == 404
    async with world.companion.db.session() as session:
        assert (await session.scalars(select(Connection).where(Connection.app == "linear"))).all() == []


async def test_workspace_connections_need_an_admin_or_the_integration_permission(world):
    async with world.person("bob") as bob:
        refused = await connect_with_key(bob, world.fake, scope="workspace")
        assert refused.status_code == 403
        async with world.companion.db.transaction() as session:
            bob_id = await session.scalar(select(User.id).where(User.email == "bob@acme.test"))
            await session.execute(
                update(Membership).where(Membership.user_id == bob_id).values(manages_integrations=True)
            )
        allowed = await connect_with_key(bob, world.fake, scope="workspace")
    assert allowed.status_code == 201 and allowed.json()["scope"] == "workspace"
    async with world.person("admin") as admin:
        assert (await connect_with_key(admin, world.fake, scope="workspace")).status_code == 201


async def test_a_personal_connection_is_its_owners_alone(world):
    async with world.person() as alice:
        connection = (await connect_with_key(alice, world.fake)).json()
    async with world.person("admin") as admin:
        listed = (await admin.get("/api/v1/integrations")).json()["data"]
        hidden = await admin.post(f"/api/v1/integrations/{connection['id']}/disconnect")
    assert listed == [] and hidden.status_code == 404


async def test_a_rotated_api_key_replaces_the_old_one_in_place(world):
    async with world.person() as alice:
        connection = (await connect_with_key(alice, world.fake)).json()
        await alice.patch(f"/api/v1/integrations/{connection['id']}/options", json={"options": {}})
        world.fake.api_keys.clear()
        failing = (await alice.post(f"/api/v1/integrations/{connection['id']}/test")).json()
        assert failing["ok"] is False and failing["code"] == "needs_reauth"
        assert "no longer accepts" in failing["message"]
        assert (await alice.get(f"/api/v1/integrations/{connection['id']}")).json()["status"] == "needs_reauth"
        rotated = await alice.put(
            f"/api/v1/integrations/{connection['id']}/credentials", json={"setup": {"api_key": world.fake.issue_key()}}
        )
        assert rotated.status_code == 200 and rotated.json()["status"] == "active"
        assert rotated.json()["id"] == connection["id"]
        assert (await alice.post(f"/api/v1/integrations/{connection['id']}/test")).json()["ok"] is True


async def test_oauth_connect_stores_encrypted_tokens_and_the_tools_work(world):
    async with world.person() as alice:
        await sign_in(alice, "alice@acme.test")
        started = await alice.post("/api/v1/integrations/apps/linear/connect", json={"scope": "personal"})
        assert started.status_code == 202, started.text
        callback = await authorize(world, alice, started.json())
        authorize_request = next(s for s in world.fake.seen if s.path == "/oauth/authorize")
        assert authorize_request.query["code_challenge_method"] == "S256"
        assert authorize_request.query["scope"] == "read,write"
        done = await alice.get(callback.path, params=dict(callback.params))
        assert done.status_code == 200, done.text
        connection = done.json()
    assert connection["auth_method"] == "oauth2" and connection["status"] == "active"
    async with world.companion.db.session() as session:
        row = await session.get(Connection, connection["id"])
    assert row is not None and row.credentials is not None and row.credentials.startswith("enc:v1:")
    for token in world.fake.access_tokens:
        assert token not in row.credentials
    async with world.agent() as client:
        result = await client.call_tool("linear_list_teams", {})
    assert result.is_error is False


async def test_a_wrong_state_a_replayed_code_and_another_session_are_refused(world):
    async with world.person() as alice:
        await sign_in(alice, "alice@acme.test")
        started = (await alice.post("/api/v1/integrations/apps/linear/connect", json={})).json()
        callback = await authorize(world, alice, started)
        params = dict(callback.params)
        wrong = await alice.get(callback.path, params={**params, "state": "forged"})
        assert wrong.status_code == 400 and "Unknown state" in wrong.json()["error"]["message"]
        async with world.person() as stranger:  # same user, but not the browser session that opened the link
            other = await stranger.get(callback.path, params=params)
        assert other.status_code == 403
        first = await alice.get(callback.path, params=params)
        assert first.status_code == 200
        replayed = await alice.get(callback.path, params=params)
        assert replayed.status_code == 400 and "already used" in replayed.json()["error"]["message"]
    async with world.companion.db.session() as session:
        assert len((await session.scalars(select(Connection).where(Connection.app == "linear"))).all()) == 1


async def test_a_flow_without_its_pkce_verifier_is_refused_and_stores_nothing(world):
    async with world.person() as alice:
        await sign_in(alice, "alice@acme.test")
        started = (await alice.post("/api/v1/integrations/apps/linear/connect", json={})).json()
        callback = await authorize(world, alice, started)
        await replace_verifier(world, started["flow_id"], None)
        refused = await alice.get(callback.path, params=dict(callback.params))
    assert refused.status_code == 400 and "PKCE" in refused.json()["error"]["message"]
    async with world.companion.db.session() as session:
        assert (await session.scalars(select(Connection).where(Connection.app == "linear"))).all() == []


async def test_the_provider_rejects_a_code_without_the_right_verifier(world):
    """Even a stolen code is useless: the token endpoint checks the S256 challenge."""
    async with world.person() as alice:
        await sign_in(alice, "alice@acme.test")
        started = (await alice.post("/api/v1/integrations/apps/linear/connect", json={})).json()
        callback = await authorize(world, alice, started)
        await replace_verifier(world, started["flow_id"], "x" * 64)
        refused = await alice.get(callback.path, params=dict(callback.params))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "oauth_refused"
    assert "invalid_grant" in refused.json()["error"]["message"]


async def test_reauthenticating_keeps_options_and_mappings(world):
    async with world.person() as alice:
        await sign_in(alice, "alice@acme.test")
        started = (await alice.post("/api/v1/integrations/apps/linear/connect", json={})).json()
        callback = await authorize(world, alice, started)
        connection = (await alice.get(callback.path, params=dict(callback.params))).json()
        world.fake.revoke_refresh_tokens()
        async with world.agent() as client:
            broken = await client.call_tool("linear_list_teams", {})
        assert broken.is_error and "Reconnect" in broken.content[0].text
        again = (await alice.post(f"/api/v1/integrations/{connection['id']}/reauth", json={})).json()
        callback = await authorize(world, alice, again)
        healed = (await alice.get(callback.path, params=dict(callback.params))).json()
    assert healed["id"] == connection["id"] and healed["status"] == "active"
    assert healed["mappings"] == connection["mappings"]
    async with world.companion.db.session() as session:
        kinds = [e.type for e in await session.scalars(select(Event).order_by(Event.created_at))]
    assert kinds == ["connection.created", "connection.needs_reauth", "connection.reauthenticated"]


async def test_sync_users_runs_logs_its_counts_and_maps_members_by_email(world):
    async with world.person() as alice:
        connection = (await connect_with_key(alice, world.fake)).json()
        run = await alice.post(f"/api/v1/integrations/{connection['id']}/sync", json={})
        assert run.status_code == 202 and run.json()["status"] == "running"
        await world.companion.sync.wait()
        logs = (await alice.get(f"/api/v1/integrations/{connection['id']}/sync/logs")).json()["data"]
        options = (await alice.get(f"/api/v1/integrations/{connection['id']}")).json()["options"]
    assert logs[0]["status"] == "succeeded" and logs[0]["finished_at"]
    assert logs[0]["counts"]["fetched"] == 3 and logs[0]["counts"]["updated"] == 2
    assert options["synced_users"] == {"alice@acme.test": "u-alice", "bob@acme.test": "u-bob"}


async def test_disconnect_drops_credentials_and_tools_and_delete_drops_the_rest(world):
    async with world.person() as alice:
        connection = (await connect_with_key(alice, world.fake, label="Work")).json()
        async with world.companion.db.transaction() as session:
            contact = Contact(workspace_id=await _workspace_id(world), name="Kept", email="kept@example.com")
            session.add(contact)
            await session.flush()
            session.add(
                SyncedRecord(connection_id=connection["id"], object="contacts", external_id="x", local_id=contact.id)
            )
        gone = (await alice.post(f"/api/v1/integrations/{connection['id']}/disconnect")).json()
        assert gone["status"] == "disconnected" and gone["has_credentials"] is False and gone["label"] == "Work"
        async with world.agent() as client:
            names = {t.name for t in (await client.list_tools()).tools}
        assert not any(n.startswith("linear_") for n in names)
        assert (await alice.post(f"/api/v1/integrations/{connection['id']}/sync", json={})).status_code == 409
        deleted = await alice.delete(f"/api/v1/integrations/{connection['id']}")
        assert deleted.status_code == 204
        assert (await alice.get(f"/api/v1/integrations/{connection['id']}")).status_code == 404
    async with world.companion.db.session() as session:
        assert await session.scalar(select(Contact.name).where(Contact.email == "kept@example.com")) == "Kept"


async def test_an_assistant_sees_tools_appear_calls_them_and_sees_them_go(world):
    async with world.agent() as client:
        before = {t.name for t in (await client.list_tools()).tools}
    assert not any(n.startswith("linear_") for n in before)
    async with world.person() as alice:
        connection = (await connect_with_key(alice, world.fake)).json()
        async with world.agent() as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert {"linear_create_issue", "linear_search_issues", "linear_list_teams"} <= set(tools)
            read = await client.call_tool("linear_list_teams", {})
            assert read.is_error is False
            write = await client.call_tool("linear_create_issue", {"team": "ENG", "title": "From the call"})
            assert write.structured_content["status"] == "approval_required"
            assert world.fake.issues == []  # nothing reaches Linear before a person approves
        await alice.post(f"/api/v1/integrations/{connection['id']}/disconnect")
        async with world.agent() as client:
            after = {t.name for t in (await client.list_tools()).tools}
    assert not any(n.startswith("linear_") for n in after)


async def _workspace_id(world: World) -> str:
    async with world.companion.db.session() as session:
        workspace = await workspace_by_slug(session, world.keys.workspace)
    assert workspace is not None
    return workspace.id


async def test_a_send_tool_waits_for_a_person_and_then_posts_once(settings, registry):
    """Over MCP: Slack's post is a send, so with no rule it waits; approved elsewhere, it runs exactly once."""
    async with connected(settings, registry, SlackFake(), "slack", allow=False) as slack:
        app = create_app(slack.companion)
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            arguments = {"channel": "C0GENERAL1", "text": "Recap: ship Friday"}
            async with mcp_client(BASE, slack.agent_key, transport=transport) as client:
                tools = {t.name: t for t in (await client.list_tools()).tools}
                assert tools["slack_post_message"].annotations.destructive_hint is False
                waiting = await client.call_tool("slack_post_message", arguments)
                assert waiting.structured_content["status"] == "approval_required"
                assert slack.fake.messages == []
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app),
                    base_url=BASE,
                    headers={"Authorization": f"Bearer {slack.keys.user_keys['alice@acme.test']}"},
                ) as alice:
                    approval = waiting.structured_content["approval_id"]
                    approved = await alice.post(f"/api/v1/approvals/{approval}/approve", json={})
                assert approved.status_code == 200, approved.text
                posted = await client.call_tool("slack_post_message", arguments)
                again = await client.call_tool("slack_post_message", arguments)
    assert posted.structured_content["ok"] is True and again.structured_content == posted.structured_content
    assert len(slack.fake.messages) == 1


async def test_a_url_setup_field_must_point_at_the_providers_hosts(world):
    async with world.person("admin") as admin:
        refused = await admin.post(
            "/api/v1/integrations/apps/salesforce/connect",
            json={"setup": {"instance_url": "https://attacker.example.com"}},
        )
        plain_http = await admin.post(
            "/api/v1/integrations/apps/salesforce/connect",
            json={"setup": {"instance_url": "http://acme.my.salesforce.com"}},
        )
        accepted_but_unconfigured = await admin.post(
            "/api/v1/integrations/apps/salesforce/connect",
            json={"setup": {"instance_url": "https://acme.my.salesforce.com/"}},
        )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"]["fields"] == {"setup.instance_url": "must be on *.my.salesforce.com"}
    assert plain_http.json()["error"]["details"]["fields"] == {"setup.instance_url": "must be an https:// address"}
    assert accepted_but_unconfigured.status_code == 422
    assert accepted_but_unconfigured.json()["error"]["code"] == "not_configured"

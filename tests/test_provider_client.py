"""The client layer every adapter shares: refresh, retries, error mapping. Exercised through Linear's fake."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import replace

import pytest
from sqlalchemy import select
from starlette.responses import JSONResponse

from server.app import Companion
from store.models import ConnectionStatus, Event
from tests.fakes.linear import LinearFake
from tests.providers import connected
from tools.errors import ToolError
from tools.manifest import AuthSpec, SetupField
from tools.provider import ProviderApi

pytestmark = pytest.mark.anyio

TEAMS = ("linear_list_teams", {})


@pytest.fixture
async def linear(settings, registry):
    async with connected(settings, registry, LinearFake(), "linear") as harness:
        yield harness


async def test_a_refused_token_is_refreshed_once_and_the_call_goes_through(linear):
    before = await linear.credentials()
    linear.fake.expire_access_tokens()
    await linear.ok(*TEAMS)
    after = await linear.credentials()
    assert linear.fake.refreshes == 1
    assert after["access_token"] != before["access_token"] and after["refresh_token"] != before["refresh_token"]
    statuses = [s.path for s in linear.fake.seen]
    assert statuses == ["/graphql", "/oauth/token", "/graphql"]


async def test_a_token_about_to_expire_is_refreshed_before_the_call(settings, registry):
    fake = LinearFake()
    fake.expires_in = 30  # inside the refresh margin
    async with connected(settings, registry, fake, "linear") as linear:
        await linear.ok(*TEAMS)
        assert [s.path for s in fake.seen] == ["/oauth/token", "/graphql"]


async def test_ten_concurrent_calls_on_an_expired_token_cause_one_refresh(linear):
    linear.fake.expire_access_tokens()
    linear.fake.token_delay = 0.2
    results = await asyncio.gather(*(linear.call(*TEAMS) for _ in range(10)))
    assert all(r.ok for r in results)
    assert linear.fake.refreshes == 1


async def test_two_processes_refresh_one_connection_once(linear):
    """A second server on the same database shares the lease on the connection row."""
    other = Companion.build(linear.companion.settings, registry=linear.companion.registry)
    try:
        linear.fake.expire_access_tokens()
        linear.fake.token_delay = 0.3
        results = await asyncio.gather(
            *(linear.call(*TEAMS) for _ in range(5)),
            *(other.gateway.call(linear.principal, *TEAMS) for _ in range(5)),
        )
        assert all(r.ok for r in results), [r.message for r in results if not r.ok]
        assert linear.fake.refreshes == 1
    finally:
        await other.aclose()


async def test_a_revoked_refresh_token_asks_for_reconnection_and_records_it(linear):
    linear.fake.revoke_refresh_tokens()
    result = await linear.call(*TEAMS)
    assert result.error_code == "needs_reauth" and "Reconnect" in result.message
    row = await linear.row()
    assert row.status is ConnectionStatus.NEEDS_REAUTH
    async with linear.companion.db.session() as session:
        events = (await session.scalars(select(Event))).all()
    assert [(e.type, e.subject_id) for e in events] == [("connection.needs_reauth", linear.connection_id)]
    seen = len(linear.fake.seen)
    again = await linear.call(*TEAMS)
    assert again.error_code == "needs_reauth" and len(linear.fake.seen) == seen


async def test_a_rejected_api_key_asks_for_a_new_one(settings, registry):
    async with connected(settings, registry, LinearFake(), "linear", method="api_key") as linear:
        linear.fake.api_keys.clear()
        result = await linear.call(*TEAMS)
        assert result.error_code == "needs_reauth"
        assert (await linear.row()).status is ConnectionStatus.NEEDS_REAUTH


async def test_429_waits_as_long_as_retry_after_says(linear):
    linear.fake.fail_next(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    await linear.ok(*TEAMS)
    assert time.monotonic() - started >= 0.9
    assert len(linear.fake.api_requests()) == 2


async def test_a_retry_after_longer_than_we_wait_fails_at_once(linear):
    linear.fake.fail_next(429, headers={"Retry-After": "600"})
    result = await linear.call(*TEAMS)
    assert result.error_code == "rate_limited" and "600 s" in result.message
    assert len(linear.fake.api_requests()) == 1


async def test_a_5xx_is_retried_for_a_query(linear):
    linear.fake.fail_next(503, times=2)
    await linear.ok(*TEAMS)
    assert len(linear.fake.api_requests()) == 3


async def test_a_5xx_is_not_retried_for_a_mutation(linear):
    """A 502 after a create may hide a created issue; sending it again could file it twice."""
    linear.fake.fail_next(502, when=lambda seen: b"mutation" in seen.body)
    result = await linear.call("linear_create_issue", {"team": "ENG", "title": "Once"})
    assert result.error_code == "provider_unavailable"
    assert sum(b"mutation" in s.body for s in linear.fake.api_requests()) == 1


async def test_errors_never_carry_a_credential(linear):
    credentials = await linear.credentials()
    linear.fake.revoke_refresh_tokens()
    result = await linear.call(*TEAMS)
    for secret in (credentials["access_token"], credentials["refresh_token"]):
        assert secret not in result.message


async def test_a_refusal_without_an_error_field_still_asks_for_reconnection(linear):
    """HubSpot's older token answer: {"status": "BAD_REFRESH_TOKEN", ...}, with no "error" for OAuth clients to read."""

    async def old_refusal(request):
        return JSONResponse({"status": "BAD_REFRESH_TOKEN", "message": "missing or invalid refresh token"}, 400)

    linear.fake.token = old_refusal  # type: ignore[method-assign]
    linear.fake.expire_access_tokens()
    result = await linear.call(*TEAMS)
    assert result.error_code == "needs_reauth"
    assert (await linear.row()).status is ConnectionStatus.NEEDS_REAUTH


async def test_a_link_to_another_host_gets_no_credentials(linear):
    api = (await linear.context()).api
    assert api.url(f"{linear.fake.origin}/graphql?page=2").endswith("/graphql?page=2")
    assert api.url("https://api.linear.app/graphql").startswith(linear.fake.origin)
    with pytest.raises(ToolError, match="another host"):
        await api.json("GET", "https://attacker.example/steal")
    assert linear.fake.api_requests() == []


async def test_basic_credentials_travel_as_an_authorization_header(linear):
    """No shipped app uses basic auth yet; a manifest that does gets the header RFC 7617 describes."""
    fake = linear.fake
    fake.key_scheme = "Basic"
    fake.api_keys.add(base64.b64encode(b"ada:s3cret").decode())
    context = await linear.context()
    manifest = context.manifest.model_copy(
        update={
            "auth": AuthSpec(
                type="basic",
                fields=[
                    SetupField(name="username", label="User"),
                    SetupField(name="password", label="Password", type="secret"),
                ],
            )
        }
    )
    view = replace(context.connection, auth_method="basic", setup={"username": "ada"})
    api = ProviderApi(manifest, view, context.http, context.keeper, {"method": "basic", "password": "s3cret"})
    data = await api.graphql("query { viewer { id name email } }")
    assert data["viewer"]["name"] == "Alice"
    assert fake.api_requests()[-1].headers["authorization"] == "Basic " + base64.b64encode(b"ada:s3cret").decode()

"""Signing in to the console through a workspace's own identity provider (OpenID Connect), against a fake
provider served on 127.0.0.1 with discovery, a key set and signed ID tokens; and its admin-only setting.

The server reaches the provider under the webhook address policy, which the development setting opens to
loopback for these tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx2
import pytest
from sqlalchemy import select

from server.app import Companion
from server.services.errors import InvalidInput
from server.services.oidc.config import ConfigChange
from store.directory import add_member, create_workspace, member_principal, workspace_by_slug
from store.models import Membership, Role, User, WorkspaceSignIn
from tests.console import csrf_of, form_post, sign_in
from tests.fakes.base import CLIENT_ID, CLIENT_SECRET, serve
from tests.fakes.oidc import OidcFake, rsa_key

pytestmark = [pytest.mark.anyio, pytest.mark.settings(webhooks_allow_private=True)]

BASE = "http://127.0.0.1:8000"
CALLBACK = f"{BASE}/login/oidc/callback"


@pytest.fixture
async def provider() -> AsyncIterator[OidcFake]:
    fake = OidcFake(CALLBACK)
    async with serve(fake):
        yield fake


async def configure(companion: Companion, provider: OidcFake, *, create_users: bool = False, slug: str = "acme"):
    """Set the workspace's identity provider as its admin would."""
    async with companion.db.session() as session:
        workspace = await workspace_by_slug(session, slug)
        admin_id = await session.scalar(
            select(Membership.user_id).where(Membership.workspace_id == workspace.id, Membership.role == Role.ADMIN)
        )
        admin = await member_principal(session, workspace.id, str(admin_id), acting_as="test")
    assert admin is not None
    change = ConfigChange(provider.issuer, CLIENT_ID, CLIENT_SECRET, create_users=create_users, enabled=True)
    await companion.rest_services().company_sign_in.configure(admin, change)


@pytest.fixture
async def browser(app_client: Any) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


async def to_provider(browser: httpx2.AsyncClient, *, workspace: str = "acme", next_path: str = "/inbox"):
    """Ask the login page to sign in through the workspace's provider; the answer sends the browser there."""
    page = await browser.get(f"/login?next={quote(next_path)}")
    return await browser.post(
        "/login/oidc", data={"csrf": csrf_of(page.text), "workspace": workspace, "next": next_path}
    )


async def through_provider(browser: httpx2.AsyncClient, **options: str) -> httpx2.Response:
    """The whole round: the login page, the provider (which signs its person in at once), the callback."""
    sent = await to_provider(browser, **options)
    assert sent.status_code == 303, sent.text
    async with httpx2.AsyncClient() as elsewhere:
        at_provider = await elsewhere.get(sent.headers["location"])
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return await browser.get(f"{back.path}?{back.query}")


async def signed_in_as(browser: httpx2.AsyncClient) -> str | None:
    page = await browser.get("/settings")
    return None if page.status_code != 200 else page.text


async def test_a_member_signs_in_through_the_provider_and_lands_on_next(browser, companion, demo_keys, provider):
    await configure(companion, provider)
    sent = await to_provider(browser, next_path="/rules?tab=mine")
    authorize = urlsplit(sent.headers["location"])
    asked = {name: values[0] for name, values in parse_qs(authorize.query).items()}
    assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == f"{provider.issuer}/authorize"
    assert asked["response_type"] == "code" and asked["code_challenge_method"] == "S256"
    assert asked["client_id"] == CLIENT_ID and asked["redirect_uri"] == CALLBACK
    assert "openid" in asked["scope"].split() and asked["state"] and asked["nonce"] and asked["code_challenge"]

    landed = await through_provider(browser, next_path="/rules?tab=mine")
    assert landed.status_code == 303 and landed.headers["location"] == "/rules?tab=mine"
    settings = await signed_in_as(browser)
    assert settings and "alice@acme.test" in settings
    assert "You signed in through your company's identity provider." in settings
    # The code was exchanged (with the PKCE verifier, which the provider checked) for the one ID token.
    assert provider.codes == {} and len(provider.id_tokens) == 1


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"nonce": "not-the-one-sent"}, "“nonce”"),
        ({"aud": "another-client"}, "“aud”"),
        ({"iss": "https://impostor.example"}, "“iss”"),
        ({"exp": 1_700_000_000, "iat": 1_699_999_000}, "expired"),
        ({"email_verified": False}, "has not verified"),
        ({"email_verified": None}, "has not verified"),
        ({"email_verified": "true"}, "has not verified"),
    ],
    ids=["wrong-nonce", "wrong-aud", "wrong-iss", "expired", "unverified", "no-email-verified", "verified-as-string"],
)
async def test_an_id_token_that_fails_a_check_signs_no_one_in(browser, companion, demo_keys, provider, changes, words):
    await configure(companion, provider)
    provider.changes = changes
    refused = await through_provider(browser)
    assert refused.status_code == 403 and words in refused.text, refused.text
    assert await signed_in_as(browser) is None


@pytest.mark.parametrize(
    ("key", "words"),
    [(rsa_key("unpublished"), "does not publish"), (rsa_key("key-1", copy=1), "signature does not verify")],
    ids=["unknown-key", "forged-key"],
)
async def test_a_token_signed_with_a_key_the_provider_does_not_publish_is_refused(
    browser, companion, demo_keys, provider, key, words
):
    await configure(companion, provider)
    provider.sign_with = key
    refused = await through_provider(browser)
    assert refused.status_code == 403 and words in refused.text, refused.text
    assert await signed_in_as(browser) is None


async def test_keys_the_provider_rotated_in_are_fetched_again(browser, companion, demo_keys, provider):
    await configure(companion, provider)
    assert (await through_provider(browser)).status_code == 303
    await browser.post("/logout", data={"csrf": csrf_of((await browser.get("/settings")).text)})
    provider.published = [rsa_key("key-2")]
    provider.sign_with = provider.published[0]
    landed = await through_provider(browser)
    assert landed.status_code == 303 and await signed_in_as(browser)


async def test_someone_without_an_account_is_refused_unless_the_admin_allowed_creating_one(
    browser, companion, demo_keys, provider
):
    await configure(companion, provider)
    provider.person = {"sub": "idp-new", "email": "Newcomer@Acme.test", "email_verified": True, "name": "New Comer"}
    refused = await through_provider(browser)
    assert refused.status_code == 403
    assert "newcomer@acme.test is not a member of" in refused.text and "Ask an admin" in refused.text
    async with companion.db.session() as session:
        assert await session.scalar(select(User).where(User.email == "newcomer@acme.test")) is None

    await configure(companion, provider, create_users=True)
    landed = await through_provider(browser)
    assert landed.status_code == 303 and landed.headers["location"] == "/inbox"
    async with companion.db.session() as session:
        user = await session.scalar(select(User).where(User.email == "newcomer@acme.test"))
        assert user is not None and user.name == "New Comer" and user.password_hash is None
        role = await session.scalar(select(Membership.role).where(Membership.user_id == user.id))
    assert role is Role.MEMBER


async def test_an_account_of_another_workspace_is_not_added_by_signing_in(browser, companion, demo_keys, provider):
    async with companion.db.transaction() as session:
        other = await create_workspace(session, slug="globex", name="Globex")
        await add_member(session, other, email="carol@globex.test", role=Role.MEMBER)
    await configure(companion, provider, create_users=True)
    provider.person = {"sub": "idp-carol", "email": "carol@globex.test", "email_verified": True}
    refused = await through_provider(browser)
    assert refused.status_code == 403 and "carol@globex.test is not a member of" in refused.text


async def test_someone_in_other_workspaces_too_signs_in_with_their_password(browser, companion, demo_keys, provider):
    """Their personal connections go with them into every workspace: one workspace's provider, which its admins
    may run, must not open a session that reaches them."""
    async with companion.db.transaction() as session:
        other = await create_workspace(session, slug="globex", name="Globex")
        await add_member(session, other, email="alice@acme.test", role=Role.ADMIN)
    await configure(companion, provider)
    refused = await through_provider(browser)
    assert refused.status_code == 403 and "Sign in with your password" in refused.text
    assert (await browser.get("/settings")).status_code in (302, 303), "no session was opened"


@pytest.mark.parametrize("target", ["//evil.example/x", "/\\evil.example", "https://evil.example/", "evil"])
async def test_next_leads_only_to_a_path_on_this_site(browser, companion, demo_keys, provider, target):
    await configure(companion, provider)
    landed = await through_provider(browser, next_path=target)
    assert landed.status_code == 303 and landed.headers["location"] == "/"


async def test_a_callback_is_used_once_and_only_by_the_browser_that_began(
    browser, app_client, companion, demo_keys, provider
):
    await configure(companion, provider)
    sent = await to_provider(browser)
    async with httpx2.AsyncClient() as elsewhere:
        back = urlsplit((await elsewhere.get(sent.headers["location"])).headers["location"])
    callback = f"{back.path}?{back.query}"
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as stranger:
        refused = await stranger.get(callback)
    assert refused.status_code == 400 and "Start again" in refused.text
    assert (await browser.get(callback)).status_code == 303
    await browser.post("/logout", data={"csrf": csrf_of((await browser.get("/settings")).text)})
    again = await browser.get(callback)
    assert again.status_code == 400 and await signed_in_as(browser) is None


async def test_an_answer_naming_another_issuer_is_refused(browser, companion, demo_keys, provider):
    await configure(companion, provider)
    sent = await to_provider(browser)
    async with httpx2.AsyncClient() as elsewhere:
        back = urlsplit((await elsewhere.get(sent.headers["location"])).headers["location"])
    query = {name: values[0] for name, values in parse_qs(back.query).items()}
    forged = {**query, "iss": "https://impostor.example"}
    refused = await browser.get(back.path, params=forged)
    assert refused.status_code == 403 and "another identity provider" in refused.text


async def test_unknown_workspaces_and_those_without_a_provider_are_answered_alike(browser, companion, demo_keys):
    unknown = await to_provider(browser, workspace="no-such-place")
    without = await to_provider(browser, workspace="acme")
    assert unknown.status_code == without.status_code == 404
    assert "is not set up for “no-such-place”" in unknown.text and "is not set up for “acme”" in without.text


@pytest.mark.settings(webhooks_allow_private=False)
async def test_a_provider_on_a_private_address_is_refused(companion, demo_keys, provider):
    with pytest.raises(InvalidInput) as refused:
        await configure(companion, provider)
    assert "resolves to a loopback address" in refused.value.fields["issuer"]
    async with companion.db.session() as session:
        assert await session.scalar(select(WorkspaceSignIn)) is None


async def test_password_sign_in_stays(browser, companion, demo_keys, provider):
    await configure(companion, provider)
    page = await browser.get("/login")
    assert 'name="password"' in page.text and 'action="/login/oidc"' in page.text
    signed = await sign_in(browser, "alice@acme.test")
    assert signed.status_code == 303 and "You signed in with your password." in (await signed_in_as(browser) or "")


# -- the admin's setting -------------------------------------------------------------------------------------------


async def api(app_client: Any, key: str, method: str, body: dict[str, Any] | None = None) -> httpx2.Response:
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as http:
        return await http.request(
            method, "/api/v1/workspace/sign-in", json=body, headers={"Authorization": f"Bearer {key}"}
        )


async def test_only_admins_read_and_set_it_and_the_secret_never_comes_back(app_client, companion, demo_keys, provider):
    admin, member = demo_keys.user_keys["admin@acme.test"], demo_keys.user_keys["alice@acme.test"]
    agent = demo_keys.keys["admin@acme.test"]
    body = {"issuer": provider.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "enabled": True}

    for key in (member, agent):
        for method, sent in (("GET", None), ("PUT", body)):
            refused = await api(app_client, key, method, sent)
            assert refused.status_code == 403 and set(refused.json()["error"]) == {"code", "message", "details"}
    empty = (await api(app_client, admin, "GET")).json()
    assert empty["configured"] is False and empty["redirect_uri"] == CALLBACK

    saved = await api(app_client, admin, "PUT", body)
    assert saved.status_code == 200, saved.text
    read = await api(app_client, admin, "GET")
    for answer in (saved, read):
        assert CLIENT_SECRET not in answer.text and "client_secret" not in answer.json()
        assert answer.json() | {"updated_at": None} == {
            "configured": True,
            "issuer": provider.issuer,
            "client_id": CLIENT_ID,
            "client_secret_set": True,
            "create_users": False,
            "enabled": True,
            "redirect_uri": CALLBACK,
            "updated_at": None,
        }
    async with companion.db.session() as session:
        row = await session.scalar(select(WorkspaceSignIn))
    assert row is not None and CLIENT_SECRET not in row.sealed_client_secret

    # Kept when not sent; required again with another issuer or client id, so none can be sent elsewhere.
    kept = await api(app_client, admin, "PUT", {**body, "client_secret": None, "create_users": True})
    assert kept.status_code == 200 and kept.json()["create_users"] is True
    moved = await api(app_client, admin, "PUT", {**body, "client_secret": None, "client_id": "other-client"})
    assert moved.status_code == 422 and "client_secret" in moved.json()["error"]["details"]["fields"]


async def test_an_issuer_whose_discovery_does_not_answer_is_not_saved_enabled(app_client, demo_keys, provider):
    admin = demo_keys.user_keys["admin@acme.test"]
    body = {"issuer": f"{provider.issuer}/nowhere", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    refused = await api(app_client, admin, "PUT", body)
    assert refused.status_code == 422
    assert "it answered HTTP 401, not 200" in refused.json()["error"]["details"]["fields"]["issuer"]
    assert (await api(app_client, admin, "PUT", {**body, "enabled": False})).status_code == 200


async def test_admins_set_it_on_the_settings_page_and_members_do_not_see_it(
    admin, alice, companion, demo_keys, provider
):
    page = await admin.get("/settings")
    assert 'action="/settings/sign-in"' in page.text and CALLBACK in page.text
    bad = await form_post(admin, "/settings", "/settings/sign-in", {"issuer": "ftp://x", "client_id": CLIENT_ID})
    assert bad.status_code == 400 and "https URL, such as https://login.example.com" in bad.text
    assert "Enter the client secret" in bad.text
    fields = {"issuer": provider.issuer, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "enabled": "on"}
    saved = await form_post(admin, "/settings", "/settings/sign-in", fields)
    assert saved.status_code == 303
    page = await admin.get("/settings")
    assert provider.issuer in page.text and CLIENT_SECRET not in page.text and "A secret is stored" in page.text

    assert 'action="/settings/sign-in"' not in (await alice.get("/settings")).text
    refused = await form_post(alice, "/settings", "/settings/sign-in", fields)
    assert refused.status_code == 403
    unsigned = await alice.post("/settings/sign-in", data=fields)
    assert unsigned.status_code == 403

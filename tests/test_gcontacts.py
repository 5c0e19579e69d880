"""Google Contacts' tools, test and sync against a fake of the People API on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest

from store.models import ConnectionStatus
from tests.fakes.gcontacts import GoogleContactsFake
from tests.providers import Harness, connected
from tools.errors import InvalidArguments, ToolError

pytestmark = pytest.mark.anyio

SEARCH = "/v1/people:searchContacts"


@pytest.fixture
async def google(settings, registry):
    async with connected(settings, registry, GoogleContactsFake(), "gcontacts") as harness:
        yield harness


def fake_of(harness: Harness) -> GoogleContactsFake:
    assert isinstance(harness.fake, GoogleContactsFake)
    return harness.fake


async def push(harness: Harness, external_id: str | None, fields: dict[str, str]) -> str:
    hook = harness.companion.registry.hooks["gcontacts"].push
    assert hook is not None
    return await hook(await harness.context(), external_id, fields)


# -- search ------------------------------------------------------------------------------------


async def test_search_returns_each_match_with_its_emails_phones_company_and_title(google):
    found = await google.ok("gcontacts_search", {"query": "analytical"})
    assert found["contacts"] == [
        {
            "resource_name": found["contacts"][0]["resource_name"],
            "name": "Ada Lovelace",
            "emails": ["ada@engines.test"],
            "phones": ["+44 20 7946 0001"],
            "company": "Analytical Engines",
            "title": "Mathematician",
        }
    ]
    assert found["contacts"][0]["resource_name"].startswith("people/c")


async def test_search_warms_googles_cache_first_so_a_contact_added_a_moment_ago_is_found(google):
    fake_of(google).add_contact("Katherine", "Johnson", email="kj@nasa.test")
    found = await google.ok("gcontacts_search", {"query": "kath"})
    assert [c["name"] for c in found["contacts"]] == ["Katherine Johnson"]
    searches = [s.query for s in google.fake.api_requests() if s.path == SEARCH]
    assert [s["query"] for s in searches] == ["", "kath"]
    assert all(s["readMask"] == "names,emailAddresses,organizations,phoneNumbers" for s in searches)


async def test_search_matches_the_start_of_words_only(google):
    assert [c["name"] for c in (await google.ok("gcontacts_search", {"query": "love"}))["contacts"]] == ["Ada Lovelace"]
    assert (await google.ok("gcontacts_search", {"query": "velace"}))["contacts"] == []


async def test_search_asks_google_for_no_more_than_the_limit(google):
    for n in range(5):
        fake_of(google).add_contact("Tester", f"Number{n}")
    found = await google.ok("gcontacts_search", {"query": "tester", "limit": 3})
    assert len(found["contacts"]) == 3
    assert google.fake.api_requests()[-1].query["pageSize"] == "3"


async def test_search_refuses_a_limit_above_googles_cap_of_30_and_a_blank_query(google):
    too_many = await google.call("gcontacts_search", {"query": "ada", "limit": 31})
    assert too_many.error_code == "invalid_arguments" and "limit" in too_many.message
    blank = await google.call("gcontacts_search", {"query": "   "})
    assert blank.error_code == "invalid_arguments" and "query" in blank.message
    assert google.fake.api_requests() == []


# -- create ------------------------------------------------------------------------------------


async def test_create_contact_sends_a_structured_name_email_phone_and_organization(google):
    contact = await google.ok(
        "gcontacts_create_contact",
        {
            "given_name": "Margaret",
            "family_name": "Hamilton",
            "email": "margaret@mit.test",
            "phone": "+1 617 555 0100",
            "company": "MIT Instrumentation Lab",
            "title": "Director of Software Engineering",
        },
    )
    assert contact["name"] == "Margaret Hamilton" and contact["emails"] == ["margaret@mit.test"]
    assert contact["company"] == "MIT Instrumentation Lab" and contact["title"] == "Director of Software Engineering"
    sent = google.fake.api_requests()[-1]
    assert sent.method == "POST" and sent.path == "/v1/people:createContact"
    assert json.loads(sent.body) == {
        "names": [{"givenName": "Margaret", "familyName": "Hamilton"}],
        "emailAddresses": [{"value": "margaret@mit.test"}],
        "phoneNumbers": [{"value": "+1 617 555 0100"}],
        "organizations": [{"name": "MIT Instrumentation Lab", "title": "Director of Software Engineering"}],
    }
    assert contact["resource_name"] in fake_of(google).contacts


async def test_create_contact_with_a_first_name_only_leaves_the_other_fields_out(google):
    contact = await google.ok("gcontacts_create_contact", {"given_name": "Cher"})
    assert contact == {
        "resource_name": contact["resource_name"],
        "name": "Cher",
        "emails": [],
        "phones": [],
        "company": None,
        "title": None,
    }
    assert json.loads(google.fake.api_requests()[-1].body) == {"names": [{"givenName": "Cher"}]}


async def test_create_contact_refuses_a_bad_email_or_a_missing_first_name_before_calling_google(google):
    bad_email = await google.call("gcontacts_create_contact", {"given_name": "X", "email": "not-an-address"})
    assert bad_email.error_code == "invalid_arguments" and "email" in bad_email.message
    nameless = await google.call("gcontacts_create_contact", {"family_name": "Hopper"})
    assert nameless.error_code == "invalid_arguments" and "given_name" in nameless.message
    assert google.fake.api_requests() == []


async def test_a_google_error_reads_in_googles_own_words(google):
    google.fake.fail_next(
        400,
        body={
            "error": {
                "code": 400,
                "message": "Invalid value at 'person.phone_numbers[0].value'",
                "status": "INVALID_ARGUMENT",
            }
        },
    )
    result = await google.call("gcontacts_create_contact", {"given_name": "Ada", "phone": "###"})
    assert result.error_code == "invalid_request"
    assert result.message == "Google Contacts rejected the request: Invalid value at 'person.phone_numbers[0].value'."


# -- the client layer, with Google's behaviour --------------------------------------------------


async def test_a_refused_token_is_refreshed_and_google_keeps_the_same_refresh_token(google):
    before = await google.credentials()
    google.fake.expire_access_tokens()
    await google.ok("gcontacts_search", {"query": "ada"})
    after = await google.credentials()
    assert google.fake.refreshes == 1
    assert after["access_token"] != before["access_token"] and after["refresh_token"] == before["refresh_token"]


async def test_a_revoked_grant_asks_for_reconnection(google):
    google.fake.revoke_refresh_tokens()
    result = await google.call("gcontacts_search", {"query": "ada"})
    assert result.error_code == "needs_reauth" and "Reconnect" in result.message
    assert (await google.row()).status is ConnectionStatus.NEEDS_REAUTH


async def test_a_429_is_retried_after_the_seconds_google_asks_for(google):
    google.fake.fail_next(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    await google.ok("gcontacts_search", {"query": "ada"})
    assert time.monotonic() - started >= 0.9
    assert len(google.fake.api_requests()) == 3  # refused warm-up, warm-up, search


async def test_a_5xx_is_retried_for_a_search(google):
    google.fake.fail_next(503, times=2, when=lambda seen: seen.query.get("query") == "ada")
    found = await google.ok("gcontacts_search", {"query": "ada"})
    assert [c["name"] for c in found["contacts"]] == ["Ada Lovelace"]


async def test_a_5xx_is_not_retried_for_a_create(google):
    """A 502 after a create may hide a created contact; sending it again could add the person twice."""
    google.fake.fail_next(502, when=lambda seen: seen.method == "POST")
    result = await google.call("gcontacts_create_contact", {"given_name": "Once"})
    assert result.error_code == "provider_unavailable"
    assert sum(s.method == "POST" for s in google.fake.api_requests()) == 1


async def test_test_connection_names_the_google_account(google):
    assert await google.test_connection() == "Signed in to Google Contacts as alice@acme.test"
    assert google.fake.api_requests()[-1].query == {"personFields": "names,emailAddresses"}


# -- sync --------------------------------------------------------------------------------------


async def test_sync_reads_every_page_of_connections_with_the_same_parameters(google):
    for n in range(248):
        fake_of(google).add_contact("Person", f"Number{n}", email=f"p{n}@example.test")
    records = await google.synced()
    assert len(records) == 250 and len({r.external_id for r in records}) == 250
    pages = [s.query for s in google.fake.api_requests()]
    assert len(pages) == 3 and "pageToken" not in pages[0]
    assert all(p["pageSize"] == "100" for p in pages)
    assert {p["personFields"] for p in pages} == {"names,emailAddresses,organizations,phoneNumbers,metadata"}


async def test_sync_records_carry_the_contact_fields_and_etag(google):
    ada = (await google.synced())[0]
    stored = fake_of(google).contact(ada.external_id)
    assert ada.fields == {
        "name": "Ada Lovelace",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "email": "ada@engines.test",
        "phone": "+44 20 7946 0001",
        "company": "Analytical Engines",
        "title": "Mathematician",
        "etag": stored["etag"],
    }
    assert not ada.deleted


async def test_push_without_an_id_creates_the_contact_from_a_free_form_name(google):
    resource_name = await push(google, None, {"name": "Mary Jackson", "email": "mary@nasa.test", "phone": ""})
    stored = fake_of(google).contact(resource_name)
    assert stored["names"][0]["givenName"] == "Mary" and stored["names"][0]["familyName"] == "Jackson"
    assert [e["value"] for e in stored["emailAddresses"]] == ["mary@nasa.test"] and "phoneNumbers" not in stored
    assert json.loads(google.fake.api_requests()[-1].body)["names"] == [{"unstructuredName": "Mary Jackson"}]


async def test_push_updates_only_the_changed_fields_with_the_etag_it_just_read(google):
    fake = fake_of(google)
    ada = fake.add_contact("Ada", "Lovelace", email="ada@engines.test", company="Analytical Engines", title="Analyst")
    fake.contacts[ada]["emailAddresses"].append({"value": "ada@home.test", "metadata": {"primary": False}})
    etag = fake.contact(ada)["etag"]
    assert (
        await push(google, ada, {"name": "Ada Lovelace", "email": "countess@engines.test", "title": "Countess"}) == ada
    )
    read, update = google.fake.api_requests()[-2:]
    assert read.method == "GET" and read.path == f"/v1/{ada}"
    assert update.method == "PATCH" and update.path == f"/v1/{ada}:updateContact"
    assert update.query["updatePersonFields"] == "emailAddresses,organizations"
    assert json.loads(update.body)["etag"] == etag
    stored = fake.contact(ada)
    assert [e["value"] for e in stored["emailAddresses"]] == ["countess@engines.test", "ada@home.test"]
    assert stored["organizations"][0] == {
        **stored["organizations"][0],
        "name": "Analytical Engines",
        "title": "Countess",
    }
    assert stored["etag"] != etag


async def test_push_of_a_new_name_replaces_the_whole_name(google):
    fake = fake_of(google)
    grace = fake.add_contact("Grace", "Hopper")
    await push(google, grace, {"name": "Grace Brewster Hopper"})
    name = fake.contact(grace)["names"][0]
    assert (name["givenName"], name.get("middleName"), name["familyName"]) == ("Grace", "Brewster", "Hopper")


async def test_push_with_nothing_changed_sends_no_update(google):
    grace = fake_of(google).add_contact("Grace", "Hopper", email="grace@navy.test")
    await push(google, grace, {"name": "Grace Hopper", "email": "grace@navy.test", "phone": ""})
    assert [s.method for s in google.fake.api_requests()] == ["GET"]


async def test_push_to_a_contact_deleted_in_google_reports_not_found(google):
    with pytest.raises(ToolError) as raised:
        await push(google, "people/c404", {"name": "Gone"})
    assert raised.value.code == "not_found"


async def test_push_refuses_an_id_that_is_not_a_resource_name_or_an_unknown_field(google):
    with pytest.raises(InvalidArguments) as bad_id:
        await push(google, "../people/me", {"name": "X"})
    assert "external_id" in bad_id.value.fields
    with pytest.raises(InvalidArguments) as bad_field:
        await push(google, None, {"birthday": "1815-12-10"})
    assert "birthday" in bad_field.value.fields
    assert google.fake.api_requests() == []

"""Salesforce's tools against a fake of its REST API on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest

from approvals.rules import Condition, Effect, Rule
from store.models import ConnectionScope, ConnectionStatus
from tests.fakes.salesforce import API, SalesforceFake
from tests.providers import connected
from tools.adapters.salesforce import record_id, soql_problem

pytestmark = pytest.mark.anyio

SETUP = {"instance_url": "https://acme.my.salesforce.com"}
CONTACTS = ("salesforce_query", {"soql": "SELECT Id, LastName FROM Contact"})


@pytest.fixture
async def salesforce(settings, registry):
    fake = SalesforceFake()
    async with connected(
        settings, registry, fake, "salesforce", scope=ConnectionScope.WORKSPACE, setup=SETUP
    ) as harness:
        yield harness


def contact_id(salesforce, last_name: str) -> str:
    return next(r["Id"] for r in salesforce.fake.records["Contact"] if r["LastName"] == last_name)


# -- salesforce_query ------------------------------------------------------------------------------


async def test_a_query_returns_records_with_their_type_instead_of_attributes(salesforce):
    result = await salesforce.ok(
        "salesforce_query",
        {"soql": "SELECT Id, Email, Account.Name FROM Contact WHERE LastName = 'Scully'"},
    )
    assert result["totalSize"] == 1 and result["done"] is True and result["next_cursor"] is None
    assert result["records"] == [
        {
            "sobject_type": "Contact",
            "Id": contact_id(salesforce, "Scully"),
            "Email": "dana@globex.test",
            "Account": {"sobject_type": "Account", "Name": "Globex Corporation"},
        }
    ]
    sent = salesforce.fake.api_requests()[-1]
    assert sent.path == f"{API}/query" and sent.query["q"].startswith("SELECT Id, Email")


async def test_a_large_result_pages_with_the_query_locator_of_next_records_url(salesforce):
    salesforce.fake.batch_size = 3
    first = await salesforce.ok("salesforce_query", {"soql": "SELECT Id FROM Contact ORDER BY LastName"})
    assert len(first["records"]) == 3 and first["totalSize"] == 4 and first["done"] is False
    locator = first["next_cursor"]
    assert locator.endswith("-3")
    rest = await salesforce.ok(
        "salesforce_query", {"soql": "SELECT Id FROM Contact ORDER BY LastName", "cursor": locator}
    )
    assert len(rest["records"]) == 1 and rest["done"] is True and rest["next_cursor"] is None
    assert salesforce.fake.api_requests()[-1].path == f"{API}/query/{locator}"


@pytest.mark.parametrize(
    ("soql", "problem"),
    [
        ("DELETE FROM Contact", "starting with SELECT"),
        ("  update Contact set Title = 'x'", "starting with SELECT"),
        ("SELECT Id FROM Contact; DELETE FROM Contact", "';' is not allowed"),
        ("SELECT Id FROM Contact WHERE LastName = 'a;b'", "';' is not allowed"),
        ("SELECT Id FROM Contact FOR UPDATE", "FOR UPDATE is not allowed"),
        ("SELECT Id FROM Contact FOR\n  VIEW", "FOR VIEW is not allowed"),
        ("SELECT Id FROM Contact FOR REFERENCE", "FOR REFERENCE is not allowed"),
        ("SELECT Title FROM FAQ__kav WHERE PublishStatus = 'Online' UPDATE VIEWSTAT", "UPDATE is not allowed"),
        ("SELECT Id FROM Contact UPDATE TRACKING", "UPDATE is not allowed"),
        ("SELECT Id FROM Contact WHERE Id IN (SELECT Id FROM Lead) UNDELETE", "UNDELETE is not allowed"),
        ("SELECT Id FROM Contact WHERE LastName = 'O\\' DELETE", "never closed"),
        ("SELECTId FROM Contact", "starting with SELECT"),
    ],
)
def test_anything_but_one_read_only_select_is_named_as_the_problem(soql, problem):
    found = soql_problem(soql)
    assert found is not None and problem in found


@pytest.mark.parametrize(
    "soql",
    [
        "SELECT Id FROM Contact",
        "select id from contact limit 5",
        "SELECT Id, IsDeleted, Last_Update__c, Delete_Reason__c FROM Case__c",
        "SELECT Id FROM Task WHERE Subject = 'Please update the deck, then delete the draft'",
        "SELECT Id FROM Contact WHERE LastName = 'O\\'Update' ORDER BY LastName",
        "SELECT Name, (SELECT LastName FROM Contacts) FROM Account WHERE Name = 'For Update Inc'",
        "\n  SELECT Id\nFROM Contact",
    ],
)
def test_words_inside_strings_and_field_names_do_not_count_as_writes(soql):
    assert soql_problem(soql) is None


async def test_a_query_that_writes_is_refused_before_salesforce_hears_of_it(salesforce):
    result = await salesforce.call("salesforce_query", {"soql": "SELECT Id FROM Contact FOR UPDATE"})
    assert result.error_code == "invalid_arguments"
    assert result.message == "Invalid arguments: soql: FOR UPDATE is not allowed; this tool only reads"
    assert salesforce.fake.api_requests() == []


async def test_a_cursor_must_be_a_query_locator(salesforce):
    result = await salesforce.call("salesforce_query", {"soql": CONTACTS[1]["soql"], "cursor": "../../apexrest/x"})
    assert result.error_code == "invalid_arguments" and "cursor" in result.message
    assert salesforce.fake.api_requests() == []


async def test_a_soql_error_reads_as_salesforces_words(salesforce):
    result = await salesforce.call("salesforce_query", {"soql": "SELECT Id, Nickname FROM Contact"})
    assert result.error_code == "invalid_request"
    assert result.message.startswith("Salesforce rejected the request: No such column 'Nickname' on entity 'Contact'.")


# -- salesforce_get_record -------------------------------------------------------------------------


async def test_a_record_is_read_with_the_fields_asked_for_and_its_id(salesforce):
    record_id = contact_id(salesforce, "Scully")
    record = await salesforce.ok(
        "salesforce_get_record", {"object": "Contact", "id": record_id, "fields": ["Email", "Title"]}
    )
    assert record == {"sobject_type": "Contact", "Id": record_id, "Email": "dana@globex.test", "Title": "VP Operations"}
    sent = salesforce.fake.api_requests()[-1]
    assert sent.path == f"{API}/sobjects/contact/{record_id}" and sent.query == {"fields": "Id,Email,Title"}


async def test_without_fields_every_field_comes_back(salesforce):
    record_id = contact_id(salesforce, "Gibbons")
    record = await salesforce.ok("salesforce_get_record", {"object": "Contact", "id": record_id})
    assert record["LastName"] == "Gibbons" and record["Phone"] is None and "CreatedDate" in record


async def test_the_fifteen_character_id_finds_the_same_record(salesforce):
    record_id = contact_id(salesforce, "Mulder")
    record = await salesforce.ok("salesforce_get_record", {"object": "Contact", "id": record_id[:15]})
    assert record["Id"] == record_id


async def test_a_record_that_does_not_exist_is_not_found(salesforce):
    result = await salesforce.call("salesforce_get_record", {"object": "Contact", "id": "003Dn0000000099AAA"})
    assert result.error_code == "not_found"
    assert "Provided external ID field does not exist or is not accessible" in result.message


async def test_object_names_and_ids_are_checked_before_any_call(salesforce):
    bad_object = await salesforce.call("salesforce_get_record", {"object": "Contact/../../limits", "id": "a" * 18})
    assert bad_object.error_code == "invalid_arguments" and "object" in bad_object.message
    bad_id = await salesforce.call("salesforce_get_record", {"object": "Contact", "id": "003Dn00000"})
    assert bad_id.error_code == "invalid_arguments" and "id" in bad_id.message
    bad_field = await salesforce.call(
        "salesforce_get_record", {"object": "Contact", "id": "a" * 18, "fields": ["Email,Title"]}
    )
    assert bad_field.error_code == "invalid_arguments" and "fields" in bad_field.message
    assert salesforce.fake.api_requests() == []


# -- salesforce_update_record ----------------------------------------------------------------------


def test_every_spelling_of_a_record_id_has_one_canonical_form():
    forms = {record_id(spelling) for spelling in ("001A0000006Vm9r", "001A0000006Vm9rIAC", "001a0000006vm9riac")}
    assert forms == {"001A0000006Vm9rIAC"}  # Salesforce's own documented example of the pair
    assert record_id("001A0000006Vm9rIAC") == "001A0000006Vm9rIAC"
    with pytest.raises(ValueError, match="spell no case"):
        record_id("001A0000006Vm9r999")


async def test_a_rule_on_an_object_holds_however_the_agent_spells_its_name(salesforce):
    record = contact_id(salesforce, "Mulder")
    async with salesforce.companion.db.transaction() as session:
        await salesforce.companion.rulebook.create(
            session,
            salesforce.principal,
            Rule(
                effect=Effect.DENY,
                scope="user",
                app="salesforce",
                tool="salesforce_update_record",
                conditions=[Condition(arg="object", op="in", value=["Contact", "Lead"])],
            ),
        )
    # Salesforce reads object names in any case, so each of these would update the Contact.
    for spelling in ("Contact", "contact", "CONTACT", "cOnTaCt"):
        result = await salesforce.call(
            "salesforce_update_record", {"object": spelling, "id": record, "fields": {"Title": "CEO"}}
        )
        assert result.error_code == "denied", spelling
    assert [r for r in salesforce.fake.records["Contact"] if r.get("Title") == "CEO"] == []


async def test_a_rule_on_a_record_holds_however_the_agent_spells_its_id(salesforce):
    record = contact_id(salesforce, "Mulder")
    async with salesforce.companion.db.transaction() as session:
        await salesforce.companion.rulebook.create(
            session,
            salesforce.principal,
            Rule(
                effect=Effect.DENY,
                scope="user",
                app="salesforce",
                tool="salesforce_update_record",
                conditions=[Condition(arg="id", op="eq", value=record[:15])],
            ),
        )
    # An 18-character id names its record in any case; the 15-character one only as it is.
    for spelling in (record, record[:15], record.lower(), record.upper()):
        result = await salesforce.call(
            "salesforce_update_record", {"object": "Contact", "id": spelling, "fields": {"Title": "CEO"}}
        )
        assert result.error_code == "denied", spelling
    assert [r for r in salesforce.fake.records["Contact"] if r.get("Title") == "CEO"] == []


async def test_an_update_patches_the_fields_and_returns_them_as_saved(salesforce):
    record_id = contact_id(salesforce, "Mulder")
    updated = await salesforce.ok(
        "salesforce_update_record",
        {"object": "Contact", "id": record_id, "fields": {"Title": "Special Agent", "Phone": None}},
    )
    assert updated == {"sobject_type": "Contact", "Id": record_id, "Title": "Special Agent", "Phone": None}
    patch, read_back = salesforce.fake.api_requests()[-2:]
    assert (patch.method, patch.path) == ("PATCH", f"{API}/sobjects/contact/{record_id}")
    assert json.loads(patch.body) == {"Title": "Special Agent", "Phone": None}
    assert (read_back.method, read_back.query) == ("GET", {"fields": "Id,Title,Phone"})
    assert salesforce.fake.find("Contact", record_id)["Title"] == "Special Agent"


async def test_an_update_salesforce_refuses_quotes_its_reason_and_changes_nothing(salesforce):
    record_id = contact_id(salesforce, "Scully")
    result = await salesforce.call(
        "salesforce_update_record", {"object": "Contact", "id": record_id, "fields": {"Email": "dana-at-globex"}}
    )
    assert result.error_code == "invalid_request"
    assert result.message == "Salesforce rejected the request: Email: invalid email address: dana-at-globex."
    assert salesforce.fake.find("Contact", record_id)["Email"] == "dana@globex.test"


async def test_an_update_names_at_least_one_field(salesforce):
    result = await salesforce.call(
        "salesforce_update_record", {"object": "Contact", "id": contact_id(salesforce, "Scully"), "fields": {}}
    )
    assert result.error_code == "invalid_arguments" and "fields" in result.message
    assert salesforce.fake.api_requests() == []


# -- the client layer, as Salesforce exercises it --------------------------------------------------


async def test_an_expired_session_is_refreshed_and_the_refresh_token_kept(salesforce):
    before = await salesforce.credentials()
    salesforce.fake.expire_access_tokens()
    await salesforce.ok(*CONTACTS)
    after = await salesforce.credentials()
    assert salesforce.fake.refreshes == 1
    # Salesforce answers a refresh with a new access token only; the refresh token stays the same.
    assert after["access_token"] != before["access_token"] and after["refresh_token"] == before["refresh_token"]
    paths = [s.path for s in salesforce.fake.seen]
    assert paths == [f"{API}/query", "/services/oauth2/token", f"{API}/query"]


async def test_a_revoked_refresh_token_asks_for_reconnection(salesforce):
    salesforce.fake.revoke_refresh_tokens()
    result = await salesforce.call(*CONTACTS)
    assert result.error_code == "needs_reauth" and "Reconnect" in result.message
    assert (await salesforce.row()).status is ConnectionStatus.NEEDS_REAUTH


async def test_429_waits_as_long_as_retry_after_says(salesforce):
    salesforce.fake.fail_next(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    await salesforce.ok(*CONTACTS)
    assert time.monotonic() - started >= 0.9
    assert len(salesforce.fake.api_requests()) == 2


async def test_a_5xx_is_retried_for_a_read(salesforce):
    salesforce.fake.fail_next(503, times=2)
    await salesforce.ok(*CONTACTS)
    assert len(salesforce.fake.api_requests()) == 3


async def test_a_5xx_on_an_update_is_not_retried(salesforce):
    """The save may have happened, and triggers and flows would run again on a second PATCH."""
    salesforce.fake.fail_next(500, when=lambda seen: seen.method == "PATCH")
    record_id = contact_id(salesforce, "Scully")
    result = await salesforce.call(
        "salesforce_update_record", {"object": "Contact", "id": record_id, "fields": {"Title": "Director"}}
    )
    assert result.error_code == "provider_unavailable" and "An unexpected error occurred" in result.message
    assert [s.method for s in salesforce.fake.api_requests()] == ["PATCH"]


async def test_the_daily_api_limit_is_reported_in_salesforces_words_without_retrying(salesforce):
    salesforce.fake.fail_next(403)
    result = await salesforce.call(*CONTACTS)
    assert result.error_code == "forbidden"
    assert result.message.startswith("Salesforce refused the request: TotalRequests Limit exceeded.")
    assert len(salesforce.fake.api_requests()) == 1


async def test_test_connection_names_the_instance(salesforce):
    sentence = await salesforce.test_connection()
    assert sentence == "Connected to Salesforce at acme.my.salesforce.com: 4 objects can be queried"
    assert salesforce.fake.api_requests()[-1].path == f"{API}/sobjects"


# -- sync --------------------------------------------------------------------------------------------


async def test_sync_reads_every_contact_with_its_account_name(salesforce):
    salesforce.fake.batch_size = 2
    for n in range(3):
        salesforce.fake.add("Contact", LastName=f"Person {n}", Email=f"P{n}@Globex.test")
    records = await salesforce.synced()
    assert len(records) == 7
    first, *more = [s.path for s in salesforce.fake.api_requests()]
    assert first == f"{API}/query" and [path.rsplit("-", 1)[-1] for path in more] == ["2", "4", "6"]
    scully = next(r for r in records if r.fields["LastName"] == "Scully")
    assert scully.external_id == contact_id(salesforce, "Scully")
    assert scully.fields == {
        "FirstName": "Dana",
        "LastName": "Scully",
        "Email": "dana@globex.test",
        "Title": "VP Operations",
        "Phone": "+1 415 555 0101",
        "AccountName": "Globex Corporation",
    }
    skinner = next(r for r in records if r.fields["LastName"] == "Skinner")
    assert skinner.fields["AccountName"] is None and skinner.fields["Email"] == "walter.skinner@fbi.test"

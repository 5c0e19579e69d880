"""HubSpot's tools, connection test and contact sync against a fake of its CRM v3 API on 127.0.0.1."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs

import pytest

from store.models import ConnectionStatus
from tests.fakes.hubspot import HubSpotFake
from tests.providers import Harness, connected
from tools.provider import ProviderError

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hubspot(settings, registry):
    async with connected(settings, registry, HubSpotFake(), "hubspot") as harness:
        yield harness


def crm(harness: Harness) -> HubSpotFake:
    assert isinstance(harness.fake, HubSpotFake)
    return harness.fake


def sent_json(harness: Harness, path: str) -> dict:
    """The body of the last request to ``path``."""
    return json.loads([s for s in harness.fake.api_requests() if s.path == path][-1].body)


def people(fake: HubSpotFake) -> dict[str, str]:
    return {
        "ada": fake.add("contacts", firstname="Ada", lastname="Lovelace", email="ada@acme.test", company="Acme"),
        "alan": fake.add("contacts", firstname="Alan", lastname="Turing", email="alan@acme.test", company="Acme"),
        "grace": fake.add("contacts", firstname="Grace", lastname="Hopper", email="grace@navy.test", jobtitle="RADM"),
    }


def deals(fake: HubSpotFake) -> dict[str, str]:
    return {
        "acme": fake.add(
            "deals", dealname="Acme renewal", amount="12000", pipeline="default", dealstage="qualifiedtobuy"
        ),
        "navy": fake.add("deals", dealname="Navy pilot", amount="3000", pipeline="75e28846", dealstage="1001"),
    }


async def test_contacts_are_found_by_words_page_by_page(hubspot):
    ids = people(crm(hubspot))
    first = await hubspot.ok("hubspot_search_contacts", {"query": "acme", "limit": 1})
    assert [c["id"] for c in first["contacts"]] == [ids["ada"]] and first["total"] == 2
    rest = await hubspot.ok("hubspot_search_contacts", {"query": "acme", "limit": 1, "cursor": first["next_cursor"]})
    assert [c["firstname"] for c in rest["contacts"]] == ["Alan"] and rest["next_cursor"] is None
    assert sent_json(hubspot, "/crm/v3/objects/contacts/search")["after"] == first["next_cursor"]


async def test_filter_groups_reach_hubspot_in_its_own_shape(hubspot):
    ids = people(crm(hubspot))
    found = await hubspot.ok(
        "hubspot_search_contacts",
        {
            "filter_groups": [
                {"filters": [{"property": "email", "operator": "CONTAINS_TOKEN", "value": "*@navy.test"}]},
                {"filters": [{"property": "firstname", "operator": "IN", "values": ["ada"]}]},
            ],
            "properties": ["lifecyclestage"],
        },
    )
    assert {c["id"] for c in found["contacts"]} == {ids["ada"], ids["grace"]}
    assert found["contacts"][0]["properties"] == {"lifecyclestage": None}
    body = sent_json(hubspot, "/crm/v3/objects/contacts/search")
    assert body["filterGroups"][1] == {"filters": [{"propertyName": "firstname", "operator": "IN", "values": ["ada"]}]}
    assert body["properties"][-1] == "lifecyclestage" and "jobtitle" in body["properties"]


async def test_a_filter_without_its_operand_is_refused_before_anything_is_sent(hubspot):
    result = await hubspot.call(
        "hubspot_search_contacts",
        {"filter_groups": [{"filters": [{"property": "createdate", "operator": "BETWEEN", "value": "2024-01-01"}]}]},
    )
    assert result.error_code == "invalid_arguments" and "filter_groups[0].filters[0].high_value" in result.message
    assert hubspot.fake.api_requests() == []


async def test_more_than_25_filters_in_all_are_refused_before_anything_is_sent(hubspot):
    group = {"filters": [{"property": "email", "operator": "HAS_PROPERTY"}] * 6}
    result = await hubspot.call("hubspot_search_contacts", {"filter_groups": [group] * 5})
    assert result.error_code == "invalid_arguments" and "at most 25 filters" in result.message
    assert hubspot.fake.api_requests() == []


async def test_arguments_outside_the_schema_are_refused_by_name(hubspot):
    result = await hubspot.call("hubspot_search_contacts", {"limit": 500, "sort": "email"})
    assert result.error_code == "invalid_arguments"
    assert "limit" in result.message and "sort" in result.message


async def test_a_contact_is_read_by_id_or_by_email(hubspot):
    ids = people(crm(hubspot))
    by_id = await hubspot.ok("hubspot_get_contact", {"contact": ids["grace"], "properties": ["hs_lead_status"]})
    assert by_id["jobtitle"] == "RADM" and by_id["properties"] == {"hs_lead_status": None}
    by_email = await hubspot.ok("hubspot_get_contact", {"contact": "Ada@Acme.test"})
    assert by_email["id"] == ids["ada"]
    assert hubspot.fake.api_requests()[-1].query["idProperty"] == "email"


async def test_a_missing_contact_is_not_found_and_a_malformed_one_is_refused(hubspot):
    missing = await hubspot.call("hubspot_get_contact", {"contact": "999999"})
    assert missing.error_code == "not_found" and "999999" in missing.message
    malformed = await hubspot.call("hubspot_get_contact", {"contact": "Ada Lovelace"})
    assert malformed.error_code == "invalid_arguments" and "contact" in malformed.message


async def test_deals_come_with_their_pipeline_and_stage_labels(hubspot):
    ids = deals(crm(hubspot))
    found = await hubspot.ok("hubspot_search_deals", {"query": "pilot"})
    [deal] = found["deals"]
    assert deal["id"] == ids["navy"] and deal["amount"] == "3000"
    assert (deal["pipeline_label"], deal["stage"], deal["stage_label"]) == ("Renewals", "1001", "Up for renewal")


async def test_a_note_is_logged_on_a_contact_through_association_type_202(hubspot):
    ids = people(crm(hubspot))
    note = await hubspot.ok(
        "hubspot_create_note",
        {
            "record_type": "contact",
            "record_id": ids["ada"],
            "body": "<p>Wants a demo</p>",
            "timestamp": "2025-03-14T15:00:00+01:00",
        },
    )
    assert note["body"] == "<p>Wants a demo</p>" and note["timestamp"] == "2025-03-14T14:00:00.000Z"
    assert crm(hubspot).associations[note["id"]] == [("contacts", ids["ada"])]
    association = sent_json(hubspot, "/crm/v3/objects/notes")["associations"][0]
    assert association["types"] == [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}]


async def test_a_note_on_a_deal_uses_association_type_214_and_is_stamped_now(hubspot):
    ids = deals(crm(hubspot))
    note = await hubspot.ok("hubspot_create_note", {"record_type": "deal", "record_id": ids["acme"], "body": "Signed"})
    assert crm(hubspot).associations[note["id"]] == [("deals", ids["acme"])]
    assert note["timestamp"].startswith(time.strftime("%Y-%m-%d", time.gmtime()))


async def test_a_note_time_without_a_time_zone_is_refused(hubspot):
    ids = people(crm(hubspot))
    arguments = {"record_type": "contact", "record_id": ids["ada"], "body": "x", "timestamp": "2025-03-14T15:00:00"}
    result = await hubspot.call("hubspot_create_note", arguments)
    assert result.error_code == "invalid_arguments" and "timestamp" in result.message
    assert hubspot.fake.api_requests() == []


async def test_a_note_on_a_missing_record_quotes_hubspot(hubspot):
    result = await hubspot.call("hubspot_create_note", {"record_type": "contact", "record_id": "424242", "body": "x"})
    assert result.error_code == "invalid_request"
    assert result.message.startswith("HubSpot rejected the request: One or more associations are invalid")
    assert crm(hubspot).records["notes"] == {}


async def test_a_deal_moves_to_a_stage_named_by_its_label(hubspot):
    ids = deals(crm(hubspot))
    deal = await hubspot.ok("hubspot_update_deal_stage", {"deal_id": ids["acme"], "stage": "contract sent"})
    assert (deal["stage"], deal["stage_label"], deal["name"]) == ("contractsent", "Contract Sent", "Acme renewal")
    assert sent_json(hubspot, f"/crm/v3/objects/deals/{ids['acme']}") == {"properties": {"dealstage": "contractsent"}}


async def test_a_stage_outside_the_deals_pipeline_is_refused_with_the_stages_it_has(hubspot):
    ids = deals(crm(hubspot))
    result = await hubspot.call("hubspot_update_deal_stage", {"deal_id": ids["navy"], "stage": "Closed Won"})
    assert result.error_code == "invalid_arguments"
    assert result.message == (
        "Invalid arguments: stage: no stage 'closedwon' in pipeline 'Renewals'; "
        "its stages are: Up for renewal (1001), Renewed (1002)"
    )
    assert not any(s.method == "PATCH" for s in hubspot.fake.api_requests())


async def test_a_missing_deal_is_not_found(hubspot):
    result = await hubspot.call("hubspot_update_deal_stage", {"deal_id": "31337", "stage": "closedwon"})
    assert result.error_code == "not_found" and "31337" in result.message


async def test_a_refused_token_is_refreshed_once_and_hubspot_keeps_the_refresh_token(hubspot):
    before = await hubspot.credentials()
    hubspot.fake.expire_access_tokens()
    await hubspot.ok("hubspot_search_deals", {})
    after = await hubspot.credentials()
    assert hubspot.fake.refreshes == 1
    assert after["access_token"] != before["access_token"] and after["refresh_token"] == before["refresh_token"]
    token_request = next(s for s in hubspot.fake.seen if s.path == "/oauth/v1/token")
    assert parse_qs(token_request.body.decode())["client_secret"] == ["companion-test-client-secret"]
    paths = [s.path for s in hubspot.fake.seen]
    assert paths == ["/crm/v3/objects/deals/search", "/oauth/v1/token", "/crm/v3/objects/deals/search"]


async def test_a_revoked_refresh_token_asks_for_reconnection(hubspot):
    hubspot.fake.revoke_refresh_tokens()
    result = await hubspot.call("hubspot_search_deals", {})
    assert result.error_code == "needs_reauth" and "Reconnect" in result.message
    assert (await hubspot.row()).status is ConnectionStatus.NEEDS_REAUTH


async def test_a_rate_limited_search_waits_out_retry_after_and_succeeds(hubspot):
    hubspot.fake.fail_next(429, headers={"Retry-After": "1"})
    started = time.monotonic()
    await hubspot.ok("hubspot_search_contacts", {"query": "acme"})
    assert time.monotonic() - started >= 0.9
    assert len(hubspot.fake.api_requests()) == 2


async def test_a_5xx_is_retried_for_a_search(hubspot):
    hubspot.fake.fail_next(502, times=2)
    await hubspot.ok("hubspot_search_contacts", {"query": "acme"})
    assert len(hubspot.fake.api_requests()) == 3


async def test_a_5xx_is_not_retried_for_a_note(hubspot):
    """A 502 after a create may hide a created note; sending it again could log it twice."""
    ids = people(crm(hubspot))
    hubspot.fake.fail_next(502, when=lambda seen: seen.path == "/crm/v3/objects/notes")
    result = await hubspot.call("hubspot_create_note", {"record_type": "contact", "record_id": ids["ada"], "body": "x"})
    assert result.error_code == "provider_unavailable"
    assert [s.path for s in hubspot.fake.api_requests()] == ["/crm/v3/objects/notes"]


async def test_a_private_app_token_travels_as_a_bearer_token(settings, registry):
    async with connected(settings, registry, HubSpotFake(), "hubspot", method="api_key") as hubspot:
        await hubspot.ok("hubspot_search_contacts", {})
        key = (await hubspot.credentials())["api_key"]
        assert hubspot.fake.api_requests()[-1].headers["authorization"] == f"Bearer {key}"


async def test_test_connection_names_the_account(hubspot):
    assert await hubspot.test_connection() == "Signed in to HubSpot account 4815162 (app.hubspot.com)"


async def test_sync_reads_every_contact_page(hubspot):
    fake = crm(hubspot)
    for n in range(150):
        fake.add("contacts", firstname=f"Person {n}", email=f"P{n}@Acme.test")
    fake.add("contacts", archived=True, firstname="Gone", email="gone@acme.test")
    records = await hubspot.synced()
    assert len(records) == 150 and not any(r.deleted for r in records)
    assert records[0].fields == {
        "fullname": "Person 0",
        "firstname": "Person 0",
        "lastname": "",
        "email": "p0@acme.test",
        "company": "",
        "jobtitle": "",
        "phone": "",
    }
    pages = [s for s in hubspot.fake.api_requests() if s.path == "/crm/v3/objects/contacts"]
    assert [s.query.get("after") for s in pages] == [None, records[100].external_id]


async def test_push_updates_a_known_contact_and_creates_a_new_one(hubspot):
    ids = people(crm(hubspot))
    push = hubspot.companion.registry.hooks["hubspot"].push
    assert push is not None
    context = await hubspot.context()
    assert await push(context, ids["ada"], {"jobtitle": "Countess", "phone": None}) == ids["ada"]
    assert crm(hubspot).records["contacts"][ids["ada"]]["properties"]["jobtitle"] == "Countess"
    created = await push(context, None, {"firstname": "Edsger", "email": "edsger@tue.test"})
    assert crm(hubspot).records["contacts"][created]["properties"]["firstname"] == "Edsger"


async def test_push_of_a_taken_email_updates_the_contact_that_has_it(hubspot):
    ids = people(crm(hubspot))
    push = hubspot.companion.registry.hooks["hubspot"].push
    assert push is not None
    pushed = await push(await hubspot.context(), None, {"email": "grace@navy.test", "company": "US Navy"})
    assert pushed == ids["grace"] and len(crm(hubspot).records["contacts"]) == 3
    assert crm(hubspot).records["contacts"][ids["grace"]]["properties"]["company"] == "US Navy"


async def test_push_of_an_unknown_property_quotes_hubspot(hubspot):
    push = hubspot.companion.registry.hooks["hubspot"].push
    assert push is not None
    with pytest.raises(ProviderError, match='HubSpot rejected the request: Property "shoe_size" does not exist'):
        await push(await hubspot.context(), None, {"email": "x@y.test", "shoe_size": "44"})

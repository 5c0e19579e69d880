"""Sync end to end: provider records become Harmony contacts and meetings through the mappings; runs are logged."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from server.app import Companion
from server.services.integrations.autosync import AutoSync
from server.services.integrations.lifecycle import IntegrationError
from server.services.integrations.sync import SyncEngine
from store.models import ConnectionScope, Contact, Meeting, MeetingStatus, SyncedRecord
from store.principal import Principal
from tests.fakes.gcal import PRIMARY_ID, GoogleCalendarFake
from tests.fakes.hubspot import HubSpotFake
from tests.fakes.salesforce import SalesforceFake
from tests.providers import Harness, connected

pytestmark = pytest.mark.anyio


@pytest.fixture
async def hubspot(settings, registry) -> AsyncIterator[Harness]:
    async with connected(
        settings, registry, HubSpotFake(), "hubspot", scope=ConnectionScope.WORKSPACE, user="admin@acme.test"
    ) as h:
        async with h.companion.db.transaction() as session:
            row = await session.get(type(await h.row()), h.connection_id)
            assert row is not None
            row.mappings = h.companion.integrations.default_mappings(h.companion.registry.manifests["hubspot"])
        yield h


async def contacts(harness: Harness) -> dict[str, Contact]:
    async with harness.companion.db.session() as session:
        return {c.email: c for c in await session.scalars(select(Contact))}


async def run(harness: Harness) -> dict:
    return await harness.companion.sync.run(harness.principal, harness.connection_id)


async def test_a_full_sync_creates_updates_and_links_contacts(hubspot):
    fake: HubSpotFake = hubspot.fake  # type: ignore[assignment]
    before = await contacts(hubspot)
    fake.add("contacts", firstname="Dana", lastname="Scully", email="Dana@FBI.test", jobtitle="Agent", company="FBI")
    fake.add("contacts", firstname="No", lastname="Mail")
    first = await run(hubspot)
    assert first["status"] == "succeeded"
    assert first["counts"]["fetched"] == 2 and first["counts"]["created"] == 1 and first["counts"]["skipped"] == 1
    dana = (await contacts(hubspot))["dana@fbi.test"]
    assert (dana.name, dana.title, dana.company) == ("Dana Scully", "Agent", "FBI")
    record_id = next(i for i, r in fake.records["contacts"].items() if r["properties"].get("email") == "Dana@FBI.test")
    fake.records["contacts"][record_id]["properties"]["jobtitle"] = "Special Agent"
    second = await run(hubspot)
    assert second["counts"]["updated"] == 1 and second["counts"]["created"] == 0
    assert (await contacts(hubspot))["dana@fbi.test"].title == "Special Agent"
    assert len(await contacts(hubspot)) == len(before) + 1


async def test_changed_mappings_decide_which_field_fills_which(hubspot):
    hubspot.fake.add(
        "contacts", firstname="Fox", lastname="Mulder", email="fox@fbi.test", jobtitle="Agent", phone="555"
    )
    await hubspot.companion.integrations.set_mappings(
        hubspot.principal, hubspot.connection_id, {"fields": {"email": "email", "name": "lastname", "title": "phone"}}
    )
    await run(hubspot)
    fox = (await contacts(hubspot))["fox@fbi.test"]
    assert (fox.name, fox.title, fox.phone) == ("Mulder", "555", "")


async def test_bad_mappings_are_refused_field_by_field(hubspot):
    with pytest.raises(IntegrationError) as refused:
        await hubspot.companion.integrations.set_mappings(
            hubspot.principal, hubspot.connection_id, {"fields": {"email": "mail", "shoe": "email"}}
        )
    assert set(refused.value.fields) == {"fields.email", "fields.shoe"}


async def test_bidirectional_sync_sends_harmony_contacts_the_crm_lacks(hubspot):
    local = await contacts(hubspot)
    assert local, "the demo workspace has contacts"
    result = await run(hubspot)
    assert result["counts"]["pushed"] == len(local)
    emails = {r["properties"].get("email") for r in hubspot.fake.records["contacts"].values()}
    assert set(local) <= emails
    again = await run(hubspot)
    assert again["counts"]["pushed"] == 0  # linked now, so not sent twice


async def test_one_way_sync_sends_nothing_back(hubspot):
    await hubspot.companion.integrations.set_mappings(
        hubspot.principal, hubspot.connection_id, {"direction": "to_harmony"}
    )
    result = await run(hubspot)
    assert result["counts"]["pushed"] == 0 and hubspot.fake.records["contacts"] == {}


async def test_a_failing_provider_fails_the_run_and_says_why(hubspot):
    hubspot.fake.revoke_refresh_tokens()
    result = await run(hubspot)
    assert result["status"] == "failed" and "Reconnect" in result["errors"][0]["error"]
    logs = await hubspot.companion.integrations.sync_logs(hubspot.principal, hubspot.connection_id)
    assert [log["status"] for log in logs] == ["failed"] and logs[0]["finished_at"]


async def test_calendar_events_become_scheduled_meetings_linked_to_known_contacts(settings, registry):
    fake = GoogleCalendarFake()
    async with connected(settings, registry, fake, "gcal") as gcal:
        async with gcal.companion.db.session() as session:
            known = await session.scalar(select(Contact.email).limit(1))
        fake.add_event(
            PRIMARY_ID, "Quarterly review", "2026-11-25T10:00:00Z", "2026-11-25T11:30:00Z", attendees=(known,)
        )
        fake.add_event(PRIMARY_ID, "Cancelled", "2026-11-26T10:00:00Z", "2026-11-26T11:00:00Z", status="cancelled")
        result = await gcal.companion.sync.run(gcal.principal, gcal.connection_id)
        assert result["status"] == "succeeded", result
        async with gcal.companion.db.session() as session:
            meeting = await session.scalar(select(Meeting).where(Meeting.title == "Quarterly review"))
            assert meeting is not None
            await session.refresh(meeting, ["contacts"])
            links = (await session.scalars(select(SyncedRecord))).all()
        assert meeting.status is MeetingStatus.SCHEDULED and meeting.duration == 90 * 60
        assert [c.email for c in meeting.contacts] == [known]
        assert len(links) == 1


async def test_auto_sync_runs_only_where_it_is_switched_on_and_due(hubspot):
    hubspot.fake.add("contacts", firstname="Walter", lastname="Skinner", email="ws@fbi.test")
    autosync = hubspot.companion.autosync
    assert await autosync.run_due() == []  # off by default
    await hubspot.companion.integrations.set_mappings(hubspot.principal, hubspot.connection_id, {"auto_sync": True})
    assert await autosync.run_due() == [hubspot.connection_id]
    assert "ws@fbi.test" in await contacts(hubspot)
    assert await autosync.run_due() == []  # just synced, not due again yet
    logs = await hubspot.companion.integrations.sync_logs(hubspot.principal, hubspot.connection_id)
    assert len(logs) == 1 and logs[0]["status"] == "succeeded"


@dataclass
class Slower(SyncEngine):
    """Another replica's engine: it reaches a connection it found due only once ``after`` is set."""

    after: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, actor: Principal, connection_id: str, *, full: bool = True) -> dict[str, Any]:
        await self.after.wait()
        return await super().run(actor, connection_id, full=full)


async def test_two_replicas_auto_syncing_one_due_connection_sync_it_once(hubspot, registry):
    await hubspot.companion.integrations.set_mappings(hubspot.principal, hubspot.connection_id, {"auto_sync": True})
    here = hubspot.companion.autosync
    elsewhere = Companion.build(hubspot.companion.settings, registry=registry)
    slower = Slower(elsewhere.integrations)
    try:

        async def first_pass() -> list[str]:
            try:
                return await here.run_due()
            finally:
                slower.after.set()

        # Both passes look while the connection is due; the other replica's would sync after this one finished.
        passes = await asyncio.gather(first_pass(), AutoSync(slower, here.every).run_due())
    finally:
        await elsewhere.aclose()
    assert sorted(passes) == [[], [hubspot.connection_id]]
    logs = await hubspot.companion.integrations.sync_logs(hubspot.principal, hubspot.connection_id)
    assert [log["status"] for log in logs] == ["succeeded"]


async def test_two_syncs_started_at_once_run_once(hubspot, monkeypatch):
    hubspot.fake.hold = asyncio.Event()  # the first run stays running, talking to HubSpot
    engine = hubspot.companion.sync
    original, looked, both = engine._run_under_way, [], asyncio.Event()

    async def look_together(*args: Any) -> str | None:
        # Both starts look for a running sync before either records its own, unless the first holds the
        # connection's lock: the second then waits for it, and the first stops waiting here after a moment.
        running = await original(*args)
        looked.append(running)
        if len(looked) == 2:
            both.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(both.wait(), 0.5)
        return running

    monkeypatch.setattr(engine, "_run_under_way", look_together)
    outcomes = await asyncio.gather(
        *(engine.start(hubspot.principal, hubspot.connection_id) for _ in range(2)), return_exceptions=True
    )
    monkeypatch.setattr(engine, "_run_under_way", original)
    hubspot.fake.hold.set()
    await engine.wait()
    started = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, IntegrationError)]
    assert len(started) == 1 and len(refused) == 1, outcomes
    assert refused[0].code == "conflict" and "already running" in str(refused[0])
    logs = await hubspot.companion.integrations.sync_logs(hubspot.principal, hubspot.connection_id)
    assert [log["status"] for log in logs] == ["succeeded"]


async def test_a_failed_auto_sync_is_due_again_at_the_next_pass(hubspot):
    await hubspot.companion.integrations.set_mappings(hubspot.principal, hubspot.connection_id, {"auto_sync": True})
    hubspot.fake.fail_next(400, body={"status": "error", "message": "scripted refusal"})
    autosync = hubspot.companion.autosync
    assert await autosync.run_due() == [hubspot.connection_id]
    assert (await hubspot.row()).last_sync_at is None  # the claim was given back: no sync happened
    assert await autosync.run_due() == [hubspot.connection_id]
    logs = await hubspot.companion.integrations.sync_logs(hubspot.principal, hubspot.connection_id)
    assert [log["status"] for log in logs] == ["succeeded", "failed"]


async def test_the_object_mapping_chooses_what_a_crm_syncs_from(settings, registry):
    """Salesforce: Harmony's contacts come from Contacts by default, or from Leads when a person says so."""
    fake = SalesforceFake()
    fake.add("Lead", FirstName="Monica", LastName="Reyes", Email="Monica@Leads.test", Company="Reyes & Co")
    async with connected(
        settings,
        registry,
        fake,
        "salesforce",
        scope=ConnectionScope.WORKSPACE,
        user="admin@acme.test",
        setup={"instance_url": "https://acme.my.salesforce.com"},
    ) as salesforce:
        integrations = salesforce.companion.integrations
        who, connection = salesforce.principal, salesforce.connection_id
        await integrations.set_mappings(who, connection, {"objects": {"contacts": "Lead"}})
        with pytest.raises(IntegrationError) as refused:
            await integrations.set_mappings(who, connection, {"objects": {"contacts": "Opportunity"}})
        assert refused.value.fields == {"objects.contacts": "'Opportunity' is not one of Contact, Lead"}
        result = await run(salesforce)
        assert result["status"] == "succeeded" and result["counts"]["fetched"] == 1
        monica = (await contacts(salesforce))["monica@leads.test"]
        assert (monica.company, monica.name) == ("Reyes & Co", "Reyes")


async def test_a_sync_cut_short_records_its_end_and_does_not_block_the_next(hubspot):
    fake: HubSpotFake = hubspot.fake  # type: ignore[assignment]
    fake.add("contacts", firstname="Slow", lastname="Poke", email="slow@fbi.test")
    engine = hubspot.companion.sync
    hook = hubspot.companion.registry.hooks["hubspot"]
    gate = asyncio.Event()

    async def stalls(ctx, since):
        await gate.wait()
        yield  # pragma: no cover - never reached

    original = hook.sync
    object.__setattr__(hook, "sync", stalls)
    try:
        running = asyncio.create_task(engine.run(hubspot.principal, hubspot.connection_id))
        await asyncio.sleep(0.2)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    finally:
        object.__setattr__(hook, "sync", original)
    logs = await hubspot.companion.integrations.sync_logs(hubspot.principal, hubspot.connection_id)
    assert logs[0]["status"] == "failed" and "interrupted" in logs[0]["errors"][0]["error"]
    assert (await run(hubspot))["status"] == "succeeded"

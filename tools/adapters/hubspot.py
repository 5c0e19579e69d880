"""HubSpot CRM, through its v3 REST API (https://api.hubapi.com).

Every record is a CRM object, ``{"id", "properties": {...}, "createdAt", "updatedAt", "archived"}``,
whose property values are strings or null. Lists page with ``limit``/``after`` in and
``paging.next.after`` out. Searches (``POST /crm/v3/objects/{type}/search``) take a free-text
``query`` and ``filterGroups``: the groups are ORed, the filters inside one group ANDed. A note is
an engagement, tied to its contact or deal by a HubSpot-defined association type.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field

from manifests import MANIFEST_DIR
from tools.arguments import Arguments
from tools.context import ToolContext
from tools.errors import InvalidArguments, NotFound
from tools.pagination import every_page
from tools.provider import ProviderError
from tools.sync import SyncRecord

#: The manifest this adapter carries out; the entry point in pyproject.toml registers the pair.
MANIFEST = MANIFEST_DIR / "hubspot.yaml"

#: Contact properties every contact result carries; also what sync reads and writes.
CONTACT_PROPERTIES = ("firstname", "lastname", "email", "company", "jobtitle", "phone")
DEAL_PROPERTIES = ("dealname", "amount", "closedate", "pipeline", "dealstage")

#: The HUBSPOT_DEFINED association types from a note to the record it is about.
NOTE_ASSOCIATION_TYPES = {"contact": 202, "deal": 214}

#: HubSpot refuses a search with more filters than this across all its groups.
MAX_FILTERS = 25

#: A create that collides on e-mail names the contact that has it: "Contact already exists. Existing ID: 123".
EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")

Operator = Literal[
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
]
Scalar = str | int | float | bool


class Filter(Arguments):
    property: str
    operator: Operator
    value: Scalar | None = None
    high_value: Scalar | None = None
    values: list[Scalar] | None = None


class FilterGroup(Arguments):
    filters: list[Filter]


class Search(Arguments):
    query: str | None = None
    filter_groups: list[FilterGroup] | None = None
    properties: list[str] | None = None
    limit: int = Field(default=20, ge=1, le=200)
    cursor: str | None = None


class SearchContacts(Search):
    pass


class SearchDeals(Search):
    pass


class GetContact(Arguments):
    contact: str
    properties: list[str] | None = None


class CreateNote(Arguments):
    record_type: Literal["contact", "deal"]
    record_id: str
    body: str
    timestamp: datetime | None = None


class UpdateDealStage(Arguments):
    deal_id: str
    stage: str


def deal_stage(value: str) -> str:
    """Canonical stage: lower-case letters and digits only, the form of HubSpot's own stage ids.

    A label then reads as its default pipeline's id ("Closed Won" and "closedwon" are one value), so a rule
    on a stage holds however the assistant spells it. It runs before any rule decides; the adapter matches
    stages in the same form.
    """
    canonical = _stage_key(value)
    if not canonical:
        raise ValueError("names no stage: give a stage label, such as Contract Sent, or a stage id")
    return canonical


def _stage_key(text: str) -> str:
    return "".join(char for char in text.lower() if char.isalnum())


def _text(value: Scalar) -> str:
    """Filter values travel as strings; booleans as HubSpot spells them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _filter(where: str, item: Filter) -> dict[str, Any]:
    """One filter as HubSpot takes it, after checking the operator has the operands it needs."""
    sent: dict[str, Any] = {"propertyName": item.property, "operator": item.operator}
    if item.operator in ("IN", "NOT_IN"):
        if not item.values:
            raise InvalidArguments({f"{where}.values": f"{item.operator} needs a list of values"})
        sent["values"] = [_text(v) for v in item.values]
    elif item.operator in ("HAS_PROPERTY", "NOT_HAS_PROPERTY"):
        if item.value is not None or item.values is not None:
            raise InvalidArguments({f"{where}.value": f"{item.operator} takes no value"})
    else:
        if item.value is None:
            raise InvalidArguments({f"{where}.value": f"{item.operator} needs a value"})
        sent["value"] = _text(item.value)
        if item.operator == "BETWEEN":
            if item.high_value is None:
                raise InvalidArguments({f"{where}.high_value": "BETWEEN needs high_value, the upper bound"})
            sent["highValue"] = _text(item.high_value)
    return sent


def _search_body(arguments: Search, returned: tuple[str, ...]) -> dict[str, Any]:
    groups = arguments.filter_groups or []
    if sum(len(group.filters) for group in groups) > MAX_FILTERS:
        raise InvalidArguments({"filter_groups": f"at most {MAX_FILTERS} filters in all groups together"})
    body: dict[str, Any] = {
        "filterGroups": [
            {"filters": [_filter(f"filter_groups[{g}].filters[{f}]", item) for f, item in enumerate(group.filters)]}
            for g, group in enumerate(groups)
        ],
        # Naming properties replaces HubSpot's default set, so the ones every result shows are named too.
        "properties": list(dict.fromkeys([*returned, *(arguments.properties or [])])),
        "limit": arguments.limit,
    }
    if arguments.query:
        body["query"] = arguments.query
    if arguments.cursor:
        body["after"] = arguments.cursor
    return body


def _next_after(page: dict[str, Any]) -> str | None:
    after = ((page.get("paging") or {}).get("next") or {}).get("after")
    return str(after) if after else None


def _extra(properties: dict[str, Any], shown: tuple[str, ...], asked: list[str] | None) -> dict[str, Any]:
    """The properties asked for beyond the ones a result always shows."""
    return {name: properties.get(name) for name in asked or [] if name not in shown}


def _contact(record: dict[str, Any], asked: list[str] | None = None) -> dict[str, Any]:
    properties = record.get("properties") or {}
    return {
        "id": str(record["id"]),
        **{name: properties.get(name) for name in CONTACT_PROPERTIES},
        "properties": _extra(properties, CONTACT_PROPERTIES, asked),
        "created_at": record.get("createdAt"),
        "updated_at": record.get("updatedAt"),
    }


def _deal(record: dict[str, Any], pipelines: list[dict[str, Any]], asked: list[str] | None = None) -> dict[str, Any]:
    properties = record.get("properties") or {}
    pipeline = next((p for p in pipelines if p["id"] == properties.get("pipeline")), None)
    stages = (pipeline or {}).get("stages") or []
    stage = next((s for s in stages if s["id"] == properties.get("dealstage")), None)
    return {
        "id": str(record["id"]),
        "name": properties.get("dealname"),
        "amount": properties.get("amount"),
        "close_date": properties.get("closedate"),
        "pipeline": properties.get("pipeline"),
        "pipeline_label": pipeline["label"] if pipeline else None,
        "stage": properties.get("dealstage"),
        "stage_label": stage["label"] if stage else None,
        "properties": _extra(properties, DEAL_PROPERTIES, asked),
        "created_at": record.get("createdAt"),
        "updated_at": record.get("updatedAt"),
    }


async def _pipelines(ctx: ToolContext) -> list[dict[str, Any]]:
    """The deal pipelines with their stages: stage ids are what deals carry, labels what people say."""
    data = await ctx.api.json("GET", "/crm/v3/pipelines/deals")
    return list(data.get("results") or [])


async def account(ctx: ToolContext) -> str:
    """Test connection: the HubSpot account (portal) the token belongs to."""
    details = await ctx.api.json("GET", "/account-info/v3/details")
    return f"Signed in to HubSpot account {details['portalId']} ({details.get('uiDomain', 'app.hubspot.com')})"


async def search_contacts(ctx: ToolContext, arguments: SearchContacts) -> dict[str, Any]:
    page = await ctx.api.json(
        "POST",
        "/crm/v3/objects/contacts/search",
        json=_search_body(arguments, CONTACT_PROPERTIES),
        idempotent=True,
    )
    return {
        "contacts": [_contact(record, arguments.properties) for record in page.get("results") or []],
        "total": int(page.get("total") or 0),
        "next_cursor": _next_after(page),
    }


async def get_contact(ctx: ToolContext, arguments: GetContact) -> dict[str, Any]:
    params: dict[str, Any] = {
        "properties": ",".join(dict.fromkeys([*CONTACT_PROPERTIES, *(arguments.properties or [])]))
    }
    if "@" in arguments.contact:
        params["idProperty"] = "email"
    elif not arguments.contact.isdigit():
        raise InvalidArguments({"contact": "a HubSpot contact id (digits only) or an e-mail address"})
    try:
        record = await ctx.api.json(
            "GET", f"/crm/v3/objects/contacts/{quote(arguments.contact, safe='@')}", params=params
        )
    except ProviderError as exc:
        if exc.status == 404:
            raise NotFound(f"No HubSpot contact {arguments.contact}.") from None
        raise
    return _contact(record, arguments.properties)


async def search_deals(ctx: ToolContext, arguments: SearchDeals) -> dict[str, Any]:
    page = await ctx.api.json(
        "POST", "/crm/v3/objects/deals/search", json=_search_body(arguments, DEAL_PROPERTIES), idempotent=True
    )
    results = page.get("results") or []
    pipelines = await _pipelines(ctx) if results else []
    return {
        "deals": [_deal(record, pipelines, arguments.properties) for record in results],
        "total": int(page.get("total") or 0),
        "next_cursor": _next_after(page),
    }


async def create_note(ctx: ToolContext, arguments: CreateNote) -> dict[str, Any]:
    when = arguments.timestamp or datetime.now(UTC)
    if when.tzinfo is None:
        raise InvalidArguments({"timestamp": "give a time zone, such as Z or +02:00"})
    timestamp = when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    note = await ctx.api.json(
        "POST",
        "/crm/v3/objects/notes",
        json={
            "properties": {"hs_note_body": arguments.body, "hs_timestamp": timestamp},
            "associations": [
                {
                    "to": {"id": arguments.record_id},
                    "types": [
                        {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": NOTE_ASSOCIATION_TYPES[arguments.record_type],
                        }
                    ],
                }
            ],
        },
    )
    properties = note.get("properties") or {}
    return {
        "id": str(note["id"]),
        "record_type": arguments.record_type,
        "record_id": arguments.record_id,
        "body": properties.get("hs_note_body") or arguments.body,
        "timestamp": properties.get("hs_timestamp") or timestamp,
    }


async def update_deal_stage(ctx: ToolContext, arguments: UpdateDealStage) -> dict[str, Any]:
    path = f"/crm/v3/objects/deals/{arguments.deal_id}"
    try:
        deal = await ctx.api.json("GET", path, params={"properties": ",".join(DEAL_PROPERTIES)})
    except ProviderError as exc:
        if exc.status == 404:
            raise NotFound(f"No HubSpot deal {arguments.deal_id}.") from None
        raise
    pipelines = await _pipelines(ctx)
    pipeline_id = (deal.get("properties") or {}).get("pipeline")
    pipeline = next((p for p in pipelines if p["id"] == pipeline_id), None)
    if pipeline is None:
        raise NotFound(f"HubSpot deal {arguments.deal_id} is in pipeline {pipeline_id!r}, which no longer exists.")
    # Stages belong to a pipeline: a deal may only move to a stage of its own pipeline.
    stages = sorted(pipeline.get("stages") or [], key=lambda s: s.get("displayOrder", 0))
    matches = [s for s in stages if arguments.stage in (_stage_key(s["id"]), _stage_key(s["label"]))]
    if len(matches) != 1:
        listed = ", ".join(f"{s['label']} ({s['id']})" for s in stages)
        problem = "no stage" if not matches else "more than one stage named"
        raise InvalidArguments(
            {"stage": f"{problem} {arguments.stage!r} in pipeline {pipeline['label']!r}; its stages are: {listed}"}
        )
    found = matches[0]
    # Setting a property to a value is idempotent, so a 5xx may be retried without moving the deal twice.
    updated = await ctx.api.json("PATCH", path, json={"properties": {"dealstage": found["id"]}}, idempotent=True)
    # An update answers with the properties it set; the deal's others are as read above.
    properties = {**(deal.get("properties") or {}), **(updated.get("properties") or {})}
    return _deal({**updated, "properties": properties}, pipelines)


async def list_contacts(ctx: ToolContext, since: str | None) -> AsyncIterator[SyncRecord]:
    """Sync contacts: every contact, page by page.

    HubSpot's list endpoint has no modified-since filter (only search has, capped at 10,000
    results), so every sync reads the whole list and ``since`` is not used.
    """

    async def page(after: str | None) -> tuple[list[dict[str, Any]], str | None]:
        data = await ctx.api.json(
            "GET",
            "/crm/v3/objects/contacts",
            params={"limit": 100, "after": after, "properties": ",".join(CONTACT_PROPERTIES)},
        )
        return list(data.get("results") or []), _next_after(data)

    async for record in every_page(page):
        properties = record.get("properties") or {}
        fields = {name: properties.get(name) or "" for name in CONTACT_PROPERTIES}
        fields["email"] = fields["email"].lower()
        # HubSpot keeps a person's name in two properties; Harmony keeps one.
        fields["fullname"] = " ".join(part for part in (fields["firstname"], fields["lastname"]) if part)
        yield SyncRecord(external_id=str(record["id"]), fields=fields, deleted=bool(record.get("archived")))


async def push_contact(ctx: ToolContext, external_id: str | None, fields: dict[str, Any]) -> str:
    """Sync back: update the contact ``external_id``, or create one; return its id.

    HubSpot keeps one contact per e-mail address. A create whose address is taken is answered
    409 with the id of the contact that has it; that contact is the one to update.
    """
    fields = dict(fields)
    if "fullname" in fields:
        first, _, last = str(fields.pop("fullname") or "").partition(" ")
        fields.setdefault("firstname", first)
        fields.setdefault("lastname", last)
    # HubSpot clears a property given the empty string.
    properties = {name: "" if value is None else str(value) for name, value in fields.items()}
    if external_id:
        record = await ctx.api.json(
            "PATCH", f"/crm/v3/objects/contacts/{external_id}", json={"properties": properties}, idempotent=True
        )
        return str(record["id"])
    try:
        record = await ctx.api.json("POST", "/crm/v3/objects/contacts", json={"properties": properties})
    except ProviderError as exc:
        existing = EXISTING_ID.search(str(exc)) if exc.status == 409 else None
        if existing is None:
            raise
        return await push_contact(ctx, existing.group(1), fields)
    return str(record["id"])

"""Google Contacts, through the People API v1 (https://people.googleapis.com).

A contact is a Person (``resourceName`` like ``people/c123``, an ``etag``) whose
fields are lists: ``names``, ``emailAddresses``, ``phoneNumbers``,
``organizations``, each entry with a ``metadata.primary`` flag. Reads name the
fields they want (``personFields`` or ``readMask``); an update names the fields
it replaces (``updatePersonFields``) and must carry the etag of the version it
was made from. Lists page with ``pageToken`` / ``nextPageToken``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from manifests import MANIFEST_DIR
from tools.adapters import google
from tools.arguments import Arguments
from tools.context import ToolContext
from tools.errors import InvalidArguments
from tools.pagination import every_page
from tools.sync import SyncRecord

#: The manifest this adapter carries out; the entry point in pyproject.toml registers the pair.
MANIFEST = MANIFEST_DIR / "gcontacts.yaml"
#: The shared client reads Google's answers Google's way (its 403 rate limits).
classify = google.classify

CONTACT_FIELDS = "names,emailAddresses,organizations,phoneNumbers"
RESOURCE_NAME = re.compile(r"^people/[0-9A-Za-z]+$")
SYNC_PAGE_SIZE = 100


class SearchContacts(Arguments):
    query: str
    limit: int = 10


class CreateContact(Arguments):
    given_name: str
    family_name: str | None = None
    email: str | None = None
    phone: str | None = None
    company: str | None = None
    title: str | None = None


def _primary(entries: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The entry Google marks primary, else the first; empty if there is none."""
    entries = entries or []
    return next((e for e in entries if (e.get("metadata") or {}).get("primary")), entries[0] if entries else {})


def _values(entries: list[dict[str, Any]] | None) -> list[str]:
    """Each entry's value, the primary one first."""
    first = _primary(entries)
    ordered = [first, *(e for e in entries or [] if e is not first)] if first else []
    return [str(e["value"]) for e in ordered if e.get("value")]


def _display_name(person: dict[str, Any]) -> str:
    name = _primary(person.get("names"))
    return str(name.get("displayName") or name.get("unstructuredName") or "")


def _contact(person: dict[str, Any]) -> dict[str, Any]:
    organization = _primary(person.get("organizations"))
    return {
        "resource_name": person["resourceName"],
        "name": _display_name(person),
        "emails": _values(person.get("emailAddresses")),
        "phones": _values(person.get("phoneNumbers")),
        "company": organization.get("name") or None,
        "title": organization.get("title") or None,
    }


PUSHABLE = {"name", "given_name", "family_name", "email", "phone", "company", "title"}
# Values Google derives from the others; sent back beside a changed value they would contradict it.
DERIVED = {"metadata", "canonicalForm", "formattedType", "displayName", "displayNameLastFirst", "unstructuredName"}


def _changed(entries: list[dict[str, Any]], changes: dict[str, str]) -> list[dict[str, Any]] | None:
    """``entries`` with ``changes`` made to the primary one (added if there is none); None if nothing changes.

    The other entries stay: updateContact replaces the whole list, and a second
    e-mail address in Google should outlive a change to the first.
    """
    entries = [dict(e) for e in entries]
    target = _primary(entries)
    if all(target.get(key) == value for key, value in changes.items()):
        return None
    if not target:
        entries.append(target)
    for key in DERIVED - {"metadata"}:
        target.pop(key, None)
    target.update(changes)
    return entries


def _name(current: dict[str, Any], given: dict[str, str]) -> list[dict[str, Any]] | None:
    """The contact's one name as it should become, or None if it stays.

    Google advises setting either the structured parts or the free-form name, not
    both: both are then stored as sent, and could disagree.
    """
    name = _primary(current.get("names"))
    if "given_name" in given or "family_name" in given:
        parts = {"givenName": given.get("given_name"), "familyName": given.get("family_name")}
        wanted = {k: v for k, v in parts.items() if v}
        if all(name.get(k) == v for k, v in wanted.items()):
            return None
        kept = {k: v for k, v in name.items() if k not in DERIVED}
        return [{**kept, **wanted}]
    if "name" in given and given["name"] != _display_name(current):
        return [{"unstructuredName": given["name"]}]
    return None


def _updates(current: dict[str, Any], fields: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The person fields to replace, each merged into what Google holds now.

    Empty values are left out: a blank in Harmony does not erase what is in Google.
    """
    unknown = sorted(set(fields) - PUSHABLE)
    if unknown:
        raise InvalidArguments(dict.fromkeys(unknown, "not a Google Contacts field"))
    given = {k: str(v) for k, v in fields.items() if v not in (None, "")}
    updates: dict[str, list[dict[str, Any]] | None] = {"names": _name(current, given)}
    if "email" in given:
        updates["emailAddresses"] = _changed(current.get("emailAddresses") or [], {"value": given["email"]})
    if "phone" in given:
        updates["phoneNumbers"] = _changed(current.get("phoneNumbers") or [], {"value": given["phone"]})
    organization = {key: given[field] for key, field in (("name", "company"), ("title", "title")) if field in given}
    if organization:
        updates["organizations"] = _changed(current.get("organizations") or [], organization)
    return {field: entries for field, entries in updates.items() if entries is not None}


async def me(ctx: ToolContext) -> str:
    """Test connection: the Google account the token belongs to."""
    person = await ctx.api.json("GET", "/v1/people/me", params={"personFields": "names,emailAddresses"})
    email = _primary(person.get("emailAddresses")).get("value")
    return f"Signed in to Google Contacts as {email or _display_name(person)}"


async def search_contacts(ctx: ToolContext, arguments: SearchContacts) -> dict[str, Any]:
    # Google answers searchContacts from a per-user cache, and asks for a request with an empty
    # query first to bring it up to date; without it a contact added or changed lately is missed.
    # Google's guide waits a few seconds before searching; a call an assistant waits on does not.
    await ctx.api.json("GET", "/v1/people:searchContacts", params={"query": "", "readMask": CONTACT_FIELDS})
    found = await ctx.api.json(
        "GET",
        "/v1/people:searchContacts",
        params={"query": arguments.query, "readMask": CONTACT_FIELDS, "pageSize": arguments.limit},
    )
    return {"contacts": [_contact(result["person"]) for result in (found or {}).get("results", [])]}


async def create_contact(ctx: ToolContext, arguments: CreateContact) -> dict[str, Any]:
    person = _updates({}, arguments.model_dump(exclude_none=True))
    created = await ctx.api.json(
        "POST", "/v1/people:createContact", params={"personFields": CONTACT_FIELDS}, json=person
    )
    return _contact(created)


async def list_contacts(ctx: ToolContext, since: str | None) -> AsyncIterator[SyncRecord]:
    """Sync contacts: every page of the user's connections.

    ``metadata.deleted`` is set only on incremental (syncToken) listings; in this
    full listing a contact removed in Google is simply absent.
    """

    async def page(token: str | None) -> tuple[list[dict[str, Any]], str | None]:
        data = await ctx.api.json(
            "GET",
            "/v1/people/me/connections",
            params={"personFields": f"{CONTACT_FIELDS},metadata", "pageSize": SYNC_PAGE_SIZE, "pageToken": token},
        )
        return data.get("connections", []), data.get("nextPageToken")

    async for person in every_page(page):
        name = _primary(person.get("names"))
        organization = _primary(person.get("organizations"))
        yield SyncRecord(
            external_id=person["resourceName"],
            fields={
                "name": _display_name(person),
                "given_name": name.get("givenName", ""),
                "family_name": name.get("familyName", ""),
                "email": _primary(person.get("emailAddresses")).get("value", ""),
                "phone": _primary(person.get("phoneNumbers")).get("value", ""),
                "company": organization.get("name", ""),
                "title": organization.get("title", ""),
                "etag": person.get("etag", ""),
            },
            deleted=bool((person.get("metadata") or {}).get("deleted")),
        )


async def push_contact(ctx: ToolContext, external_id: str | None, fields: dict[str, Any]) -> str:
    """Create the contact, or change the fields given on an existing one; return its resourceName."""
    if external_id is None:
        person = _updates({}, fields)
        if not person:
            raise InvalidArguments({"fields": "no value to create a contact from"})
        created = await ctx.api.json(
            "POST", "/v1/people:createContact", params={"personFields": "metadata"}, json=person
        )
        return str(created["resourceName"])
    if not RESOURCE_NAME.match(external_id):
        raise InvalidArguments({"external_id": f"{external_id!r} is not a People API resource name like people/c123"})
    # updateContact replaces whole fields and refuses a stale etag, so start from Google's current version.
    current = await ctx.api.json("GET", f"/v1/{external_id}", params={"personFields": CONTACT_FIELDS})
    updates = _updates(current, fields)
    if updates:
        await ctx.api.json(
            "PATCH",
            f"/v1/{external_id}:updateContact",
            params={"updatePersonFields": ",".join(sorted(updates)), "personFields": "metadata"},
            json={"etag": current["etag"], **updates},
        )
    return external_id

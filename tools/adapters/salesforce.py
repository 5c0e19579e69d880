"""Salesforce, through its REST API (``{instance_url}/services/data/v60.0``).

SOQL runs with ``GET /query?q=``; a result too large for one batch ends with
``done: false`` and a ``nextRecordsUrl`` of ``/services/data/v60.0/query/<locator>``,
read with a GET of that path. Records are ``/sobjects/<object>/<id>``: GET reads
them, PATCH updates them and answers 204 with no body. Every record carries an
``attributes`` object with its type and URL. Errors are a JSON list of
``{"message", "errorCode"}`` objects, which the shared client already reads.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field

from manifests import MANIFEST_DIR
from tools.arguments import Arguments
from tools.context import ToolContext
from tools.errors import InvalidArguments
from tools.pagination import every_page
from tools.sync import SyncRecord

#: The manifest this adapter carries out; the entry point in pyproject.toml registers the pair.
MANIFEST = MANIFEST_DIR / "salesforce.yaml"

NAME = r"^[A-Za-z][A-Za-z0-9_]{0,79}$"
RECORD_ID = r"^[A-Za-z0-9]{15}([A-Za-z0-9]{3})?$"
QUERY_LOCATOR = r"^[A-Za-z0-9]{15,18}-[0-9]+$"

#: The 18-character id's last three characters each spell the case of five characters of the 15-character one.
ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

ApiName = Annotated[str, Field(pattern=NAME)]
RecordId = Annotated[str, Field(pattern=RECORD_ID)]

# What Harmony's contacts are read from: Contacts (with their account) or Leads (with their company).
PEOPLE_SOQL = {
    "Contact": "SELECT Id, FirstName, LastName, Email, Title, Phone, Account.Name FROM Contact",
    "Lead": "SELECT Id, FirstName, LastName, Email, Title, Phone, Company FROM Lead",
}

# Besides DML words, SOQL has clauses that write: UPDATE TRACKING and UPDATE VIEWSTAT
# count article views, FOR VIEW and FOR REFERENCE set LastViewedDate and
# LastReferencedDate, FOR UPDATE locks the rows. A read tool may do none of that.
WRITE_WORD = re.compile(r"\b(INSERT|UPDATE|DELETE|UPSERT|MERGE|UNDELETE)\b", re.IGNORECASE)
FOR_CLAUSE = re.compile(r"\bFOR\s+(UPDATE|VIEW|REFERENCE)\b", re.IGNORECASE)


class Query(Arguments):
    soql: str
    cursor: str | None = Field(default=None, pattern=QUERY_LOCATOR)


class GetRecord(Arguments):
    object: ApiName
    id: RecordId
    fields: list[ApiName] | None = None


class UpdateRecord(Arguments):
    object: ApiName
    id: RecordId
    fields: dict[ApiName, str | int | float | bool | None] = Field(min_length=1)


def object_name(value: str) -> str:
    """Canonical object name: lower case, as Salesforce reads API names in any case (``contact`` is Contact),
    so a rule on ``Contact`` also holds for ``CONTACT``."""
    return value.lower()


def record_id(value: str) -> str:
    """Canonical record id: the 18-character form, with the case its suffix spells.

    Salesforce reads a 15-character id case-sensitively and an 18-character one case-insensitively,
    so ``003Dn00000AbCdE``, ``003Dn00000AbCdEIAV`` and ``003DN00000ABCDEIAV`` are one record: a rule on
    any of them must hold for all. Values that are no id are left for schema validation to report.
    """
    if not re.fullmatch(RECORD_ID, value):
        return value
    if len(value) == 18:
        restored = []
        for chunk, spelled in zip(_chunks(value[:15]), value[15:].upper(), strict=True):
            if spelled not in ID_SUFFIX:
                raise ValueError(f"{value} is not a Salesforce id: its last three characters spell no case")
            bits = ID_SUFFIX.index(spelled)
            restored.append("".join(c.upper() if bits >> i & 1 else c.lower() for i, c in enumerate(chunk)))
        value = "".join(restored)
    suffix = "".join(ID_SUFFIX[sum(1 << i for i, c in enumerate(chunk) if c.isupper())] for chunk in _chunks(value))
    return value + suffix


def _chunks(fifteen: str) -> tuple[str, str, str]:
    return fifteen[:5], fifteen[5:10], fifteen[10:15]


def _outside_strings(soql: str) -> str | None:
    """The statement with the inside of each '...' literal blanked out; None if a literal never closes.

    SOQL strings are single-quoted with backslash escapes (\\' and \\\\), so a quote
    after a backslash does not end one.
    """
    kept: list[str] = []
    inside = escaped = False
    for char in soql:
        if not inside:
            kept.append(char)
            inside = char == "'"
        elif escaped:
            kept.append(" ")
            escaped = False
        elif char == "\\":
            kept.append(" ")
            escaped = True
        elif char == "'":
            kept.append(char)
            inside = False
        else:
            kept.append(" ")
    return None if inside else "".join(kept)


def soql_problem(soql: str) -> str | None:
    """Why ``soql`` is not one read-only SELECT, or None when it is."""
    statement = soql.strip()
    if not re.match(r"SELECT\s", statement, re.IGNORECASE):
        return "must be one SOQL SELECT statement, starting with SELECT"
    if ";" in statement:
        return "must be a single statement; ';' is not allowed"
    code = _outside_strings(statement)
    if code is None:
        return "has a string literal that is never closed"
    if clause := FOR_CLAUSE.search(code):
        return f"{' '.join(clause.group(0).upper().split())} is not allowed; this tool only reads"
    if word := WRITE_WORD.search(code):
        return f"{word.group(1).upper()} is not allowed; this tool only reads"
    return None


def _plain(value: Any) -> Any:
    """A record as an assistant reads it: ``attributes`` dropped, its type kept as ``sobject_type``."""
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if not isinstance(value, dict):
        return value
    plain: dict[str, Any] = {}
    attributes = value.get("attributes")
    if isinstance(attributes, dict) and "type" in attributes:
        plain["sobject_type"] = attributes["type"]
    plain.update({key: _plain(item) for key, item in value.items() if key != "attributes"})
    return plain


async def _query_page(ctx: ToolContext, soql: str, locator: str | None) -> dict[str, Any]:
    """One batch of a query: the first with ``q``, the next ones by the locator of ``nextRecordsUrl``."""
    if locator is None:
        return dict(await ctx.api.json("GET", "query", params={"q": soql}))
    return dict(await ctx.api.json("GET", f"query/{locator}"))


def _locator(result: dict[str, Any]) -> str | None:
    """The query locator ending ``nextRecordsUrl`` (/services/data/v60.0/query/01g...-2000), if more remain."""
    next_url = result.get("nextRecordsUrl")
    if result.get("done", True) or not next_url:
        return None
    return str(next_url).rstrip("/").rsplit("/", 1)[-1]


async def describe_global(ctx: ToolContext) -> str:
    """Test connection: the global describe, which any API user may read."""
    described = await ctx.api.json("GET", "sobjects")
    queryable = sum(1 for sobject in described.get("sobjects", []) if sobject.get("queryable"))
    host = urlsplit(str(ctx.connection.setup.get("instance_url", ""))).hostname
    return f"Connected to Salesforce at {host}: {queryable} objects can be queried"


async def query(ctx: ToolContext, arguments: Query) -> dict[str, Any]:
    if problem := soql_problem(arguments.soql):
        raise InvalidArguments({"soql": problem})
    result = await _query_page(ctx, arguments.soql, arguments.cursor)
    return {
        "records": _plain(result.get("records", [])),
        "totalSize": result.get("totalSize", 0),
        "done": result.get("done", True),
        "next_cursor": _locator(result),
    }


async def get_record(ctx: ToolContext, arguments: GetRecord) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if arguments.fields:
        # Salesforce returns only the fields asked for; the id says which record the answer is.
        asks_id = any(name.lower() == "id" for name in arguments.fields)
        fields = arguments.fields if asks_id else ["Id", *arguments.fields]
        params["fields"] = ",".join(fields)
    record = await ctx.api.json("GET", f"sobjects/{arguments.object}/{arguments.id}", params=params)
    return dict(_plain(record))


async def update_record(ctx: ToolContext, arguments: UpdateRecord) -> dict[str, Any]:
    await ctx.api.send("PATCH", f"sobjects/{arguments.object}/{arguments.id}", json=arguments.fields)
    # The PATCH answers 204 with no body; reading back shows the values as saved, after triggers ran.
    return await get_record(ctx, GetRecord(object=arguments.object, id=arguments.id, fields=list(arguments.fields)))


async def list_contacts(ctx: ToolContext, since: str | None) -> AsyncIterator[SyncRecord]:
    """Sync contacts: every Contact (or Lead, as the object mapping says) with its company, batch by batch.

    Each run reads them all: the sync engine asks from the start (``since`` is None),
    and a full read is what lets it update every linked contact.
    """

    source = (ctx.connection.mappings.get("objects") or {}).get("contacts", "Contact")
    if source not in PEOPLE_SOQL:
        raise InvalidArguments({"objects.contacts": f"{source!r} is not one of {', '.join(PEOPLE_SOQL)}"})

    async def page(locator: str | None) -> tuple[list[dict[str, Any]], str | None]:
        result = await _query_page(ctx, PEOPLE_SOQL[source], locator)
        return list(result.get("records", [])), _locator(result)

    async for contact in every_page(page):
        account = contact.get("Account") or {}
        yield SyncRecord(
            external_id=contact["Id"],
            fields={
                "FirstName": contact.get("FirstName"),
                "LastName": contact.get("LastName"),
                "Email": (contact.get("Email") or "").lower() or None,
                "Title": contact.get("Title"),
                "Phone": contact.get("Phone"),
                "AccountName": account.get("Name") or contact.get("Company"),
            },
        )

"""A fake of Salesforce's REST API (v60.0) and of its OAuth server at login.salesforce.com.

It serves the resources the adapter uses, with their documented shapes:
``GET /sobjects`` (the global describe), ``GET /query?q=`` and
``GET /query/<locator>-<offset>`` (SOQL, in batches joined by ``nextRecordsUrl``),
and ``GET``/``PATCH /sobjects/<object>/<id>`` (PATCH answers 204 with no body).
Records carry ``attributes {type, url}``; ids are 18 characters with the
case-checksum suffix, and the 15-character form finds the same record.

Its SOQL is the subset tests need: a field list with parent fields (Account.Name),
FROM one object, WHERE with ``field = value`` joined by AND, ORDER BY one
field and LIMIT. Errors are lists of ``{"message", "errorCode"}`` (with ``fields``
where Salesforce names them), at the status codes Salesforce uses.

Token responses look like Salesforce's: no ``expires_in`` (the session lasts as
long as the org's timeout), an ``instance_url`` and a signed identity ``id``, and
a refresh that returns no new refresh token, since Salesforce does not rotate them
unless an admin turns rotation on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import CLIENT_ID, CLIENT_SECRET, Failure, ProviderFake

API = "/services/data/v60.0"
INSTANCE_URL = "https://acme.my.salesforce.com"
ORG_ID = "00D5g000004ABCDEAA"
USER_ID = "0055g00000AbCdEAAZ"

FIELDS: dict[str, list[str]] = {
    "Account": ["Id", "IsDeleted", "Name", "Type", "Industry", "Phone", "Website", "CreatedDate", "LastModifiedDate"],
    "Contact": [
        "Id",
        "IsDeleted",
        "AccountId",
        "FirstName",
        "LastName",
        "Email",
        "Title",
        "Phone",
        "CreatedDate",
        "LastModifiedDate",
    ],
    "Lead": ["Id", "IsDeleted", "FirstName", "LastName", "Email", "Title", "Phone", "Company", "Status"],
    "Opportunity": [
        "Id",
        "IsDeleted",
        "AccountId",
        "Name",
        "StageName",
        "Amount",
        "CloseDate",
        "CreatedDate",
        "LastModifiedDate",
    ],
}
KEY_PREFIXES = {"Account": "001", "Contact": "003", "Lead": "00Q", "Opportunity": "006"}
READ_ONLY = {"Id", "IsDeleted", "CreatedDate", "LastModifiedDate"}
REQUIRED = {
    "Account": {"Name"},
    "Contact": {"LastName"},
    "Lead": {"LastName", "Company"},
    "Opportunity": {"Name", "StageName", "CloseDate"},
}
# Parent relationships: relationship name -> (parent object, the lookup field holding its id).
PARENTS = {"Contact": {"Account": ("Account", "AccountId")}, "Opportunity": {"Account": ("Account", "AccountId")}}
# Change-event objects appear in the global describe but cannot be queried.
NOT_QUERYABLE = ["AccountChangeEvent"]

SELECT = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<sobject>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>[\w.]+)(?:\s+(?P<direction>ASC|DESC))?)?"
    r"(?:\s+LIMIT\s+(?P<limit>\d+))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
CONDITION = re.compile(r"^\s*(?P<field>[\w.]+)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'|[\w.+-]+)\s*$", re.DOTALL)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

CUSTOM_FIELD_HINT = (
    "If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. "
    "Please reference your WSDL or the describe call for the appropriate names."
)
DEFAULT_ERRORS = {
    400: ("MALFORMED_QUERY", "unexpected token: 'FROM'"),
    403: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
    404: ("NOT_FOUND", "The requested resource does not exist"),
    429: ("REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."),
    500: ("UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this ErrorId if you contact support."),
    503: ("SERVER_UNAVAILABLE", "Server temporarily unavailable."),
}


def errors(status: int, code: str, message: str, fields: list[str] | None = None) -> JSONResponse:
    """Salesforce's error body: a list of errors, each with its message and code."""
    error: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        error["fields"] = fields
    return JSONResponse([error], status_code=status)


def with_checksum(id15: str) -> str:
    """The 18-character id: one letter per 5 characters, recording which of them are upper case."""
    suffix = ""
    for start in range(0, 15, 5):
        bits = sum(1 << i for i, char in enumerate(id15[start : start + 5]) if "A" <= char <= "Z")
        suffix += CHECKSUM_ALPHABET[bits]
    return id15 + suffix


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def _literal(text: str) -> Any:
    """A SOQL literal as a Python value: 'quoted' strings with backslash escapes, null, true/false, numbers."""
    if text.startswith("'"):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    lowered = text.lower()
    if lowered in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[lowered]
    try:
        return float(text)
    except ValueError:
        return text


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SalesforceFake(ProviderFake):
    def __init__(self) -> None:
        super().__init__(
            [
                Route(f"{API}/sobjects", self.describe_global, methods=["GET"]),
                Route(f"{API}/sobjects/{{sobject}}/{{record_id}}", self.record, methods=["GET", "PATCH"]),
                Route(f"{API}/query", self.query, methods=["GET"]),
                Route(f"{API}/query/{{locator}}", self.query_more, methods=["GET"]),
                Route("/{path:path}", self.no_such_resource, methods=["GET", "POST", "PATCH", "PUT", "DELETE"]),
            ],
            authorize_path="/services/oauth2/authorize",
            token_path="/services/oauth2/token",
        )
        self.batch_size = 2000
        self.records: dict[str, list[dict[str, Any]]] = {name: [] for name in FIELDS}
        self.locators: dict[str, list[dict[str, Any]]] = {}
        self._serial = 0
        globex = self.add("Account", Name="Globex Corporation", Type="Customer - Direct", Industry="Manufacturing")
        initech = self.add("Account", Name="Initech", Type="Prospect", Industry="Technology")
        self.add(
            "Contact",
            FirstName="Dana",
            LastName="Scully",
            Email="dana@globex.test",
            Title="VP Operations",
            Phone="+1 415 555 0101",
            AccountId=globex,
        )
        self.add("Contact", FirstName="Fox", LastName="Mulder", Email="fox@globex.test", AccountId=globex)
        self.add(
            "Contact",
            FirstName="Peter",
            LastName="Gibbons",
            Email="peter@initech.test",
            Title="Engineer",
            AccountId=initech,
        )
        self.add("Contact", FirstName="Walter", LastName="Skinner", Email="Walter.Skinner@fbi.test")
        self.add(
            "Opportunity",
            Name="Globex renewal",
            StageName="Negotiation/Review",
            Amount=120000.0,
            CloseDate="2026-12-15",
            AccountId=globex,
        )

    # -- data ----------------------------------------------------------------------------------

    def add(self, sobject: str, **values: Any) -> str:
        """Store a record as Salesforce would create it; return its 18-character id."""
        self._serial += 1
        record_id = with_checksum(f"{KEY_PREFIXES[sobject]}Dn{self._serial:010d}")
        now = timestamp()
        record = dict.fromkeys(FIELDS[sobject])
        record.update(Id=record_id, IsDeleted=False, CreatedDate=now, LastModifiedDate=now, **values)
        self.records[sobject].append(record)
        return record_id

    def find(self, sobject: str, record_id: str) -> dict[str, Any] | None:
        """A record by its 15- or 18-character id; the first 15 characters are the id proper."""
        if len(record_id) not in (15, 18):
            return None
        return next((r for r in self.records.get(sobject, []) if r["Id"][:15] == record_id[:15]), None)

    # -- the provider's answers ----------------------------------------------------------------

    def unauthorized(self) -> Response:
        return errors(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def failure_response(self, failure: Failure) -> Response:
        if failure.body is not None:
            return JSONResponse(failure.body, status_code=failure.status, headers=failure.headers)
        code, message = DEFAULT_ERRORS.get(failure.status, ("UNKNOWN_EXCEPTION", f"scripted {failure.status}"))
        return JSONResponse(
            [{"message": message, "errorCode": code}], status_code=failure.status, headers=failure.headers
        )

    def _token_body(self, access_token: str, refresh_token: str | None) -> dict[str, Any]:
        identity = f"https://login.salesforce.com/id/{ORG_ID}/{USER_ID}"
        issued_at = str(int(time.time() * 1000))
        signature = hmac.new(CLIENT_SECRET.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
        body = {
            "access_token": access_token,
            "signature": base64.b64encode(signature).decode(),
            "scope": "refresh_token api",
            "instance_url": INSTANCE_URL,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return body

    def issue(self, *, expires_in: int | None = None) -> dict[str, Any]:
        issued = super().issue(expires_in=expires_in)
        return self._token_body(issued["access_token"], issued["refresh_token"])

    async def token(self, request: Request) -> Response:
        """Authorization codes as the base server handles them; refreshes the way Salesforce answers them."""
        form = await request.form()
        if form.get("grant_type") != "refresh_token":
            return await super().token(request)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client", "error_description": "invalid client credentials"}, 400)
        if form.get("refresh_token") not in self.refresh_tokens:
            return JSONResponse({"error": "invalid_grant", "error_description": "expired access/refresh token"}, 400)
        self.refreshes += 1
        access_token = "at-" + secrets.token_urlsafe(12)
        self.access_tokens[access_token] = time.time() + self.expires_in
        return JSONResponse(self._token_body(access_token, None))

    # -- REST resources ------------------------------------------------------------------------

    async def no_such_resource(self, request: Request) -> Response:
        return errors(404, "NOT_FOUND", "The requested resource does not exist")

    async def describe_global(self, request: Request) -> Response:
        described = [
            {
                "name": name,
                "label": name,
                "keyPrefix": KEY_PREFIXES.get(name),
                "queryable": name in FIELDS,
                "updateable": name in FIELDS,
                "urls": {"sobject": f"{API}/sobjects/{name}", "rowTemplate": f"{API}/sobjects/{name}/{{ID}}"},
            }
            for name in [*FIELDS, *NOT_QUERYABLE]
        ]
        return JSONResponse({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": described})

    def _render(self, sobject: str, record: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        """A record as the API shows it: its attributes, then the fields asked for (parents as nested records)."""
        rendered: dict[str, Any] = {"attributes": {"type": sobject, "url": f"{API}/sobjects/{sobject}/{record['Id']}"}}
        for path in fields:
            relationship, _, field = path.partition(".")
            if not field:
                rendered[path] = record[path]
                continue
            parent_type, lookup = PARENTS[sobject][relationship]
            parent = self.find(parent_type, record[lookup] or "")
            if parent is None:
                rendered[relationship] = None
            elif rendered.get(relationship) is None:
                rendered[relationship] = self._render(parent_type, parent, [field])
            else:
                rendered[relationship][field] = parent[field]
        return rendered

    def _field(self, sobject: str, name: str) -> str | None:
        """The field's API name as Salesforce spells it (names are case-insensitive), or None."""
        return next((f for f in FIELDS[sobject] if f.lower() == name.lower()), None)

    def _path(self, sobject: str, path: str) -> str:
        """A field of the object or of a parent (Account.Name), spelled as Salesforce spells it."""
        relationship, _, field = path.partition(".")
        if not field:
            name = self._field(sobject, path)
            if name is None:
                raise SoqlError("INVALID_FIELD", f"No such column '{path}' on entity '{sobject}'. {CUSTOM_FIELD_HINT}")
            return name
        parents = {name.lower(): name for name in PARENTS.get(sobject, {})}
        if relationship.lower() not in parents:
            raise SoqlError(
                "INVALID_FIELD",
                f"Didn't understand relationship '{relationship}' in field path. If you are attempting to use a "
                "custom relationship, be sure to append the '__r' after the custom relationship name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
            )
        canonical = parents[relationship.lower()]
        parent_type = PARENTS[sobject][canonical][0]
        name = self._field(parent_type, field)
        if name is None:
            raise SoqlError("INVALID_FIELD", f"No such column '{field}' on entity '{parent_type}'. {CUSTOM_FIELD_HINT}")
        return f"{canonical}.{name}"

    def _value(self, sobject: str, record: dict[str, Any], path: str) -> Any:
        relationship, _, field = path.partition(".")
        if not field:
            return record[path]
        parent_type, lookup = PARENTS[sobject][relationship]
        parent = self.find(parent_type, record[lookup] or "")
        return parent[field] if parent else None

    def _run(self, soql: str) -> list[dict[str, Any]]:
        parsed = SELECT.match(soql)
        if parsed is None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{soql.split()[-1] if soql.split() else ''}'")
        sobject = next((name for name in FIELDS if name.lower() == parsed["sobject"].lower()), None)
        if sobject is None:
            raise SoqlError(
                "INVALID_TYPE",
                f"sObject type '{parsed['sobject']}' is not supported. If you are attempting to use a custom "
                "object, be sure to append the '__c' after the entity name. "
                "Please reference your WSDL or the describe call for the appropriate names.",
            )
        fields = [self._path(sobject, f.strip()) for f in parsed["fields"].split(",")]
        rows = [r for r in self.records[sobject] if not r["IsDeleted"]]
        conditions = re.split(r"\s+AND\s+", parsed["where"], flags=re.IGNORECASE) if parsed["where"] else []
        for condition in conditions:
            matched = CONDITION.match(condition)
            if matched is None:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{condition.strip()}'")
            path, wanted = self._path(sobject, matched["field"]), _literal(matched["value"])
            rows = [r for r in rows if self._value(sobject, r, path) == wanted]
        if parsed["order"]:
            path = self._path(sobject, parsed["order"])
            rows.sort(
                key=lambda r: (self._value(sobject, r, path) is None, str(self._value(sobject, r, path) or "")),
                reverse=(parsed["direction"] or "").upper() == "DESC",
            )
        if parsed["limit"]:
            rows = rows[: int(parsed["limit"])]
        return [self._render(sobject, r, fields) for r in rows]

    def _batch(self, rows: list[dict[str, Any]], locator: str, start: int) -> JSONResponse:
        end = start + self.batch_size
        result: dict[str, Any] = {"totalSize": len(rows), "done": end >= len(rows), "records": rows[start:end]}
        if not result["done"]:
            result["nextRecordsUrl"] = f"{API}/query/{locator}-{end}"
        return JSONResponse(result)

    async def query(self, request: Request) -> Response:
        soql = request.query_params.get("q", "")
        try:
            rows = self._run(soql)
        except SoqlError as error:
            return errors(400, error.code, error.message)
        locator = with_checksum("01g5g00000" + secrets.token_hex(3)[:5].upper())
        self.locators[locator] = rows
        return self._batch(rows, locator, 0)

    async def query_more(self, request: Request) -> Response:
        locator, _, start = request.path_params["locator"].rpartition("-")
        if locator not in self.locators or not start.isdigit():
            return errors(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._batch(self.locators[locator], locator, int(start))

    async def record(self, request: Request) -> Response:
        # Object names are case-insensitive: /sobjects/contact/<id> is a Contact.
        asked_type, record_id = request.path_params["sobject"], request.path_params["record_id"]
        sobject = next((name for name in FIELDS if name.lower() == asked_type.lower()), None)
        if sobject is None:
            return errors(404, "NOT_FOUND", "The requested resource does not exist")
        record = self.find(sobject, record_id)
        if record is None:
            return errors(
                404, "NOT_FOUND", f"Provided external ID field does not exist or is not accessible: {record_id}"
            )
        if request.method == "PATCH":
            return await self._update(request, sobject, record)
        asked = request.query_params.get("fields")
        names = [name.strip() for name in asked.split(",")] if asked else FIELDS[sobject]
        unknown = [name for name in names if self._field(sobject, name) is None]
        if unknown:
            return errors(400, "INVALID_FIELD", f"No such column '{unknown[0]}' on sobject of type {sobject}")
        return JSONResponse(self._render(sobject, record, [str(self._field(sobject, name)) for name in names]))

    async def _update(self, request: Request, sobject: str, record: dict[str, Any]) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return errors(400, "JSON_PARSER_ERROR", "Unexpected character: was expecting a JSON object")
        changes: dict[str, Any] = {}
        for name, value in body.items():
            field = self._field(sobject, name)
            if field is None:
                return errors(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}")
            if field in READ_ONLY:
                return errors(
                    400,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {field}. Please check the security settings of this field "
                    "and verify that it is read/write for your profile or permission set.",
                    [field],
                )
            if field in REQUIRED[sobject] and value in (None, ""):
                return errors(400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{field}]", [field])
            if field == "Email" and value and not EMAIL.match(str(value)):
                return errors(400, "INVALID_EMAIL_ADDRESS", f"Email: invalid email address: {value}", [field])
            changes[field] = value
        record.update(changes, LastModifiedDate=timestamp())
        return Response(status_code=204)

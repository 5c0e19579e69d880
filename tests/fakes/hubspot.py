"""A fake of HubSpot's CRM v3 REST API: objects, search, notes with associations, deal pipelines.

Records are ``{"id", "properties", "createdAt", "updatedAt", "archived"}`` with string property
values. Lists page with an opaque ``after`` (the next record's id), searches with an offset
``after``; both answer ``paging.next.after`` while more remain. Errors come back as HubSpot sends
them, ``{"status": "error", "message", "correlationId", "category"}``, and its OAuth server keeps
the refresh token across refreshes and answers refusals with both the RFC 6749 ``error`` and
HubSpot's own ``status`` (``BAD_REFRESH_TOKEN``).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.base import Failure, ProviderFake

API = "https://api.hubapi.com"

#: The properties each object type defines.
DEFINED = {
    "contacts": {"firstname", "lastname", "email", "company", "jobtitle", "phone", "lifecyclestage", "hs_lead_status"},
    "deals": {
        "dealname",
        "amount",
        "closedate",
        "pipeline",
        "dealstage",
        "description",
        "dealtype",
        "hubspot_owner_id",
    },
    "notes": {"hs_note_body", "hs_timestamp", "hubspot_owner_id", "hs_attachment_ids"},
}
#: The properties a read returns when none are named.
DEFAULTS = {
    "contacts": ["firstname", "lastname", "email"],
    "deals": ["dealname", "amount", "closedate", "pipeline", "dealstage"],
    "notes": ["hs_note_body", "hs_timestamp"],
}
#: The properties every read carries besides those asked for: when the record was created and last changed.
STAMPS = {
    "contacts": ("createdate", "lastmodifieddate"),
    "deals": ("createdate", "hs_lastmodifieddate"),
    "notes": ("hs_createdate", "hs_lastmodifieddate"),
}
#: What the free-text ``query`` of a search looks in.
SEARCHABLE = {
    "contacts": ["firstname", "lastname", "email", "phone", "company"],
    "deals": ["dealname", "pipeline", "dealstage", "description"],
}
SCOPES = [
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
]
#: Note association types (HUBSPOT_DEFINED) and the object each points to.
NOTE_TO = {202: "contacts", 214: "deals"}
CATEGORIES = {
    400: "VALIDATION_ERROR",
    401: "INVALID_AUTHENTICATION",
    403: "MISSING_SCOPES",
    404: "OBJECT_NOT_FOUND",
    409: "CONFLICT",
    429: "RATE_LIMITS",
}
MAX_GROUPS, MAX_PER_GROUP, MAX_FILTERS, MAX_SEARCH_LIMIT, MAX_SEARCH_RESULTS = 5, 10, 25, 200, 10_000


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    if status in CATEGORIES:
        body["category"] = CATEGORIES[status]
    return JSONResponse({**body, **extra}, status_code=status)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _invalid_properties(problems: list[dict[str, str]]) -> JSONResponse:
    """HubSpot's answer to property values it refuses: the list in the message, and again in ``errors``."""
    return _error(
        400,
        f"Property values were not valid: {json.dumps([{'isValid': False, **p} for p in problems])}",
        errors=[
            {"message": p["message"], "code": p["error"], "context": {"propertyName": [p["name"]]}} for p in problems
        ],
    )


def _asked(request: Request) -> list[str] | None:
    """The ``properties`` a read names, comma-separated."""
    raw = request.query_params.get("properties")
    return [name for name in raw.split(",") if name] if raw else None


def _matches(value: str | None, item: dict[str, Any]) -> bool:
    """One search filter, as HubSpot evaluates it: strings compare without case, numbers as numbers."""
    operator = item["operator"]
    if operator == "HAS_PROPERTY":
        return value not in (None, "")
    if operator == "NOT_HAS_PROPERTY":
        return value in (None, "")
    if operator in ("IN", "NOT_IN"):
        inside = (value or "").lower() in [str(v).lower() for v in item.get("values") or []]
        return inside if operator == "IN" else not inside
    if operator in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        token = str(item.get("value", "")).lower()
        text = (value or "").lower()
        found = text.endswith(token[1:]) if token.startswith("*") else token in text.replace("@", " ").split()
        return found if operator == "CONTAINS_TOKEN" else not found
    if value is None:
        return operator == "NEQ"

    def comparable(raw: Any) -> Any:
        try:
            return float(raw)
        except (TypeError, ValueError):
            return str(raw).lower()

    have, want = comparable(value), comparable(item.get("value"))
    if type(have) is not type(want):
        have, want = str(have), str(want)
    if operator == "EQ":
        return bool(have == want)
    if operator == "NEQ":
        return bool(have != want)
    if operator == "BETWEEN":
        return bool(want <= have <= comparable(item.get("highValue")))
    return bool({"LT": have < want, "LTE": have <= want, "GT": have > want, "GTE": have >= want}[operator])


class HubSpotFake(ProviderFake):
    key_header = "Authorization"
    key_scheme = "Bearer"

    def __init__(self) -> None:
        objects = "/crm/v3/objects/{kind:str}"
        super().__init__(
            [
                Route("/account-info/v3/details", self.account_details, methods=["GET"]),
                Route("/crm/v3/pipelines/deals", self.deal_pipelines, methods=["GET"]),
                Route(objects + "/search", self.search, methods=["POST"]),
                Route(objects, self.list_objects, methods=["GET"]),
                Route(objects, self.create, methods=["POST"]),
                Route(objects + "/{id:str}", self.read, methods=["GET"]),
                Route(objects + "/{id:str}", self.update, methods=["PATCH"]),
            ],
            authorize_path="/oauth/authorize",
            token_path="/oauth/v1/token",
        )
        # HubSpot access tokens live 30 minutes.
        self.expires_in = 1800
        self.portal_id = 4815162
        self.records: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in DEFINED}
        self.associations: dict[str, list[tuple[str, str]]] = {}
        self.next_id = 100
        self.pipelines = [
            {
                "id": "default",
                "label": "Sales Pipeline",
                "displayOrder": 0,
                "stages": [
                    {"id": stage_id, "label": label, "displayOrder": n, "metadata": {"isClosed": str(closed).lower()}}
                    for n, (stage_id, label, closed) in enumerate(
                        [
                            ("appointmentscheduled", "Appointment Scheduled", False),
                            ("qualifiedtobuy", "Qualified To Buy", False),
                            ("presentationscheduled", "Presentation Scheduled", False),
                            ("decisionmakerboughtin", "Decision Maker Bought-In", False),
                            ("contractsent", "Contract Sent", False),
                            ("closedwon", "Closed Won", True),
                            ("closedlost", "Closed Lost", True),
                        ]
                    )
                ],
            },
            {
                "id": "75e28846",
                "label": "Renewals",
                "displayOrder": 1,
                "stages": [
                    {"id": "1001", "label": "Up for renewal", "displayOrder": 0, "metadata": {"isClosed": "false"}},
                    {"id": "1002", "label": "Renewed", "displayOrder": 1, "metadata": {"isClosed": "true"}},
                ],
            },
        ]

    # -- knobs ---------------------------------------------------------------------------------

    def add(self, kind: str, archived: bool = False, **properties: Any) -> str:
        """Store a record directly, as if someone had created it in HubSpot; return its id."""
        record_id = str(self.next_id)
        self.next_id += 1
        now = _now()
        self.records[kind][record_id] = {
            "id": record_id,
            "properties": {name: str(value) for name, value in properties.items() if value not in (None, "")},
            "createdAt": now,
            "updatedAt": now,
            "archived": archived,
        }
        return record_id

    # -- HubSpot's answers -----------------------------------------------------------------------

    def issue(self, *, expires_in: int | None = None) -> dict[str, Any]:
        token = super().issue(expires_in=expires_in)
        del token["scope"]
        return {
            **token,
            "token_type": "bearer",
            "hub_id": self.portal_id,
            "scopes": SCOPES,
        }

    def unauthorized(self) -> Response:
        return _error(
            401,
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
            "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )

    def failure_response(self, failure: Failure) -> Response:
        if failure.body is not None:
            return JSONResponse(failure.body, status_code=failure.status, headers=failure.headers)
        if failure.status == 429:
            response = _error(429, "You have reached your secondly limit.", policyName="SECONDLY")
        else:
            response = _error(failure.status, HTTPStatus(failure.status).phrase)
        response.headers.update(failure.headers)
        return response

    async def token(self, request: Request) -> Response:
        """HubSpot's token endpoint: client credentials in the form only, the refresh token kept."""
        form = await request.form()
        if "client_secret" not in form:
            return JSONResponse(
                {"error": "invalid_client", "status": "BAD_CLIENT_ID", "message": "missing or unknown client id"}, 400
            )
        response = await super().token(request)
        body = json.loads(bytes(response.body))
        if response.status_code != 200:
            description = body.get("error_description") or body["error"]
            status = "BAD_REFRESH_TOKEN" if form.get("grant_type") == "refresh_token" else "BAD_AUTH_CODE"
            if body["error"] == "invalid_client":
                status = "BAD_CLIENT_SECRET"
            return JSONResponse(
                {"error": body["error"], "error_description": description, "status": status, "message": description},
                400,
            )
        if form.get("grant_type") == "refresh_token":
            # HubSpot's refresh tokens do not rotate: the answer carries the same one.
            kept = str(form["refresh_token"])
            self.refresh_tokens.discard(body["refresh_token"])
            self.refresh_tokens.add(kept)
            body["refresh_token"] = kept
        return JSONResponse(body)

    def _render(self, kind: str, record: dict[str, Any], asked: list[str] | None) -> dict[str, Any]:
        """A record with the properties asked for (null when defined but unset), or the defaults."""
        names = [name for name in asked or DEFAULTS[kind] if name in DEFINED[kind]]
        properties = {name: record["properties"].get(name) for name in names}
        created, modified = STAMPS[kind]
        properties.update({"hs_object_id": record["id"], created: record["createdAt"], modified: record["updatedAt"]})
        return {**record, "properties": properties}

    def _check_properties(
        self, kind: str, changes: dict[str, Any], current: dict[str, Any] | None = None
    ) -> JSONResponse | None:
        unknown = sorted(name for name in changes if name not in DEFINED[kind])
        if unknown:
            return _invalid_properties(
                [
                    {"message": f'Property "{n}" does not exist', "error": "PROPERTY_DOESNT_EXIST", "name": n}
                    for n in unknown
                ]
            )
        if kind == "deals" and "dealstage" in changes:
            return self._check_stage({**(current or {}), **changes})
        return None

    def _check_stage(self, properties: dict[str, Any]) -> JSONResponse | None:
        pipeline = next(p for p in self.pipelines if p["id"] == properties.get("pipeline", "default"))
        if any(s["id"] == properties["dealstage"] for s in pipeline["stages"]):
            return None
        return _invalid_properties(
            [
                {
                    "message": f"{properties['dealstage']} was not one of the allowed options for pipeline "
                    f"{pipeline['id']}",
                    "error": "INVALID_OPTION",
                    "name": "dealstage",
                }
            ]
        )

    def _find(self, kind: str, request: Request) -> dict[str, Any] | None:
        key = request.path_params["id"]
        records = self.records[kind].values()
        if request.query_params.get("idProperty") == "email":
            return next((r for r in records if (r["properties"].get("email") or "").lower() == key.lower()), None)
        return self.records[kind].get(key)

    # -- routes ----------------------------------------------------------------------------------

    async def account_details(self, request: Request) -> Response:
        return JSONResponse(
            {
                "portalId": self.portal_id,
                "accountType": "STANDARD",
                "timeZone": "US/Eastern",
                "companyCurrency": "USD",
                "additionalCurrencies": [],
                "utcOffset": "-05:00",
                "utcOffsetMilliseconds": -18000000,
                "uiDomain": "app.hubspot.com",
                "dataHostingLocation": "na1",
            }
        )

    async def deal_pipelines(self, request: Request) -> Response:
        return JSONResponse({"results": self.pipelines})

    async def list_objects(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in DEFINED:
            return _error(404, f"Unable to infer object type from: {kind}")
        limit = int(request.query_params.get("limit", 10))
        if not 1 <= limit <= 100:
            return _error(400, "limit must be between 1 and 100")
        archived = request.query_params.get("archived", "false") == "true"
        records = sorted(
            (r for r in self.records[kind].values() if r["archived"] == archived), key=lambda r: int(r["id"])
        )
        after = request.query_params.get("after")
        if after:
            records = [r for r in records if int(r["id"]) >= int(after)]
        page, rest = records[:limit], records[limit:]
        body: dict[str, Any] = {"results": [self._render(kind, r, _asked(request)) for r in page]}
        if rest:
            nxt = rest[0]["id"]
            body["paging"] = {"next": {"after": nxt, "link": f"{API}/crm/v3/objects/{kind}?after={nxt}"}}
        return JSONResponse(body)

    async def read(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in DEFINED:
            return _error(404, f"Unable to infer object type from: {kind}")
        record = self._find(kind, request)
        if record is None or record["archived"]:
            return _error(404, "resource not found")
        return JSONResponse(self._render(kind, record, _asked(request)))

    async def create(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in DEFINED:
            return _error(404, f"Unable to infer object type from: {kind}")
        body = await request.json()
        properties = body.get("properties") or {}
        if problem := self._check_properties(kind, properties):
            return problem
        email = (properties.get("email") or "").lower()
        if kind == "contacts" and email:
            records = self.records[kind].values()
            taken = next((r for r in records if (r["properties"].get("email") or "").lower() == email), None)
            if taken is not None:
                return _error(409, f"Contact already exists. Existing ID: {taken['id']}")
            properties["email"] = email
        if kind == "notes" and not properties.get("hs_timestamp"):
            return _error(400, "hs_timestamp is required", errors=[{"message": "hs_timestamp is required"}])
        links: list[tuple[str, str]] = []
        for association in body.get("associations") or []:
            target_id = str(association["to"]["id"])
            for kind_of in association["types"]:
                target = NOTE_TO.get(kind_of["associationTypeId"]) if kind == "notes" else None
                if kind_of["associationCategory"] != "HUBSPOT_DEFINED" or target is None:
                    return _error(
                        400,
                        f"{kind_of['associationTypeId']} is not a valid association type",
                        subCategory="crm.associations.INVALID_ASSOCIATION_TYPE",
                    )
                if target_id not in self.records[target]:
                    return _error(400, f"One or more associations are invalid: no {target} object with id {target_id}")
                links.append((target, target_id))
        record_id = self.add(kind, **properties)
        self.associations[record_id] = links
        return JSONResponse(self._render(kind, self.records[kind][record_id], list(properties)), status_code=201)

    async def update(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in DEFINED:
            return _error(404, f"Unable to infer object type from: {kind}")
        record = self.records[kind].get(request.path_params["id"])
        if record is None or record["archived"]:
            return _error(404, "resource not found")
        changes = (await request.json()).get("properties") or {}
        if problem := self._check_properties(kind, changes, record["properties"]):
            return problem
        # An empty string clears a property.
        merged = {**record["properties"], **changes}
        record["properties"] = {name: str(value) for name, value in merged.items() if value != ""}
        record["updatedAt"] = _now()
        return JSONResponse(self._render(kind, record, list(changes)))

    async def search(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in SEARCHABLE:
            return _error(404, f"Unable to infer object type from: {kind}")
        body = await request.json()
        groups = body.get("filterGroups") or []
        if len(groups) > MAX_GROUPS or any(len(g.get("filters") or []) > MAX_PER_GROUP for g in groups):
            return _error(400, f"Too many filters: at most {MAX_GROUPS} filterGroups of {MAX_PER_GROUP} filters each")
        if sum(len(g.get("filters") or []) for g in groups) > MAX_FILTERS:
            return _error(400, f"Too many filters: at most {MAX_FILTERS} in all filterGroups")
        limit = int(body.get("limit", 10))
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            return _error(400, f"limit must be between 1 and {MAX_SEARCH_LIMIT}")
        start = int(body.get("after") or 0)
        if start + limit > MAX_SEARCH_RESULTS:
            return _error(400, f"Search results are limited to {MAX_SEARCH_RESULTS} records")
        hits = []
        for record in sorted(self.records[kind].values(), key=lambda r: int(r["id"])):
            values = record["properties"]
            if record["archived"]:
                continue
            if body.get("query"):
                text = " ".join(str(values.get(name) or "") for name in SEARCHABLE[kind]).lower()
                if not all(term in text for term in body["query"].lower().split()):
                    continue
            if groups and not any(
                all(_matches(values.get(f["propertyName"]), f) for f in g.get("filters") or []) for g in groups
            ):
                continue
            hits.append(record)
        page = hits[start : start + limit]
        answer: dict[str, Any] = {
            "total": len(hits),
            "results": [self._render(kind, r, body.get("properties")) for r in page],
        }
        if start + limit < len(hits):
            answer["paging"] = {"next": {"after": str(start + limit)}}
        return JSONResponse(answer)

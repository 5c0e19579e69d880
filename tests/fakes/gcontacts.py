"""A fake of Google's People API v1 for contacts, on Google's OAuth server (see ``tests/fakes/google.py``).

It serves the methods the adapter uses at their documented paths:
``people.get`` (GET /v1/people/{id}, ``people/me`` being the signed-in account),
``people.connections.list``, ``people.searchContacts``, ``people.createContact``
and ``people.updateContact``. As Google does, it

* returns only the fields a request names in ``personFields`` / ``readMask`` (plus
  ``resourceName`` and ``etag``) and refuses a request without that mask;
* answers searches from a per-user cache that only an empty-query ("warm-up")
  search refreshes, matching prefixes of words, and caps ``pageSize`` at 30;
* pages connections with an opaque ``pageToken`` bound to the first call's parameters;
* replaces each field ``updatePersonFields`` names, and refuses an update whose etag
  is missing or stale.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.google import GoogleFake, google_error

DOCS = "https://developers.google.com/people/api/rest/v1/people/get"
READABLE = {
    "addresses", "ageRanges", "biographies", "birthdays", "calendarUrls", "clientData", "coverPhotos",
    "emailAddresses", "events", "externalIds", "genders", "imClients", "interests", "locales", "locations",
    "memberships", "metadata", "miscKeywords", "names", "nicknames", "occupations", "organizations",
    "phoneNumbers", "photos", "relations", "sipAddresses", "skills", "urls", "userDefined",
}  # fmt: skip
WRITABLE = READABLE - {"ageRanges", "coverPhotos", "metadata", "photos"}
CONTACTS_SCOPE = "https://www.googleapis.com/auth/contacts"


def _etag(prefix: str) -> str:
    return prefix + base64.b64encode(secrets.token_bytes(18)).decode()


def _named(entry: dict[str, Any]) -> dict[str, Any]:
    """A stored name: a free-form name alone is parsed into parts, parts alone are joined."""
    name = dict(entry)
    if name.get("unstructuredName") and not (name.get("givenName") or name.get("familyName")):
        words = name["unstructuredName"].split()
        name["givenName"] = words[0]
        if len(words) > 1:
            name["familyName"] = words[-1]
        if len(words) > 2:
            name["middleName"] = " ".join(words[1:-1])
    parts = [name.get(k) for k in ("honorificPrefix", "givenName", "middleName", "familyName", "honorificSuffix")]
    joined = " ".join(p for p in parts if p)
    name["unstructuredName"] = name.get("unstructuredName") or joined
    name["displayName"] = name["unstructuredName"]
    family, rest = name.get("familyName"), " ".join(p for p in (name.get("givenName"), name.get("middleName")) if p)
    name["displayNameLastFirst"] = f"{family}, {rest}" if family and rest else name["displayName"]
    return name


def _matches(person: dict[str, Any], query: str) -> bool:
    """searchContacts matching: the query is a prefix of a phrase starting at a word of some field."""
    query = query.lower()
    texts = [n.get(k, "") for n in person.get("names", []) for k in ("displayName", "givenName", "familyName")]
    texts += [n.get("value", "") for n in person.get("nicknames", [])]
    texts += [e.get("value", "") for e in person.get("emailAddresses", [])]
    texts += [p.get("value", "") for p in person.get("phoneNumbers", [])]
    texts += [o.get("name", "") for o in person.get("organizations", [])]
    for text in (t.lower() for t in texts if t):
        starts = [0, *(m.end() for m in re.finditer(r"[^0-9a-z]+", text))]
        if any(text.startswith(query, start) for start in starts):
            return True
    return False


class GoogleContactsFake(GoogleFake):
    scope = CONTACTS_SCOPE

    def __init__(self) -> None:
        super().__init__(
            [
                Route("/v1/people:searchContacts", self.search_contacts, methods=["GET"]),
                Route("/v1/people:createContact", self.create_contact, methods=["POST"]),
                Route("/v1/people/me/connections", self.list_connections, methods=["GET"]),
                Route("/v1/people/{person_id}:updateContact", self.update_contact, methods=["PATCH"]),
                Route("/v1/people/{person_id}", self.get_person, methods=["GET"]),
            ]
        )
        self.me = {
            "resourceName": "people/104857600000000000001",
            "etag": _etag("%"),
            "names": [{"displayName": "Alice Martin", "givenName": "Alice", "familyName": "Martin"}],
            "emailAddresses": [
                {
                    "value": "alice@acme.test",
                    "metadata": {"primary": True, "verified": True, "source": {"type": "ACCOUNT"}},
                }
            ],
        }
        self.contacts: dict[str, dict[str, Any]] = {}
        # What searchContacts sees: the contacts as they were at the last warm-up request.
        self.search_cache: list[dict[str, Any]] = []
        self.add_contact("Ada", "Lovelace", email="ada@engines.test", phone="+44 20 7946 0001",
                         company="Analytical Engines", title="Mathematician")  # fmt: skip
        self.add_contact("Grace", "Hopper", email="grace@navy.test", company="US Navy", title="Rear Admiral")

    # -- knobs ---------------------------------------------------------------------------------

    def add_contact(
        self,
        given: str,
        family: str = "",
        *,
        email: str = "",
        phone: str = "",
        company: str = "",
        title: str = "",
    ) -> str:
        """A contact as if the person had added it in Google Contacts; returns its resourceName."""
        person: dict[str, Any] = {"names": [{k: v for k, v in (("givenName", given), ("familyName", family)) if v}]}
        if email:
            person["emailAddresses"] = [{"value": email, "type": "work"}]
        if phone:
            person["phoneNumbers"] = [{"value": phone, "type": "mobile"}]
        if company or title:
            person["organizations"] = [{k: v for k, v in (("name", company), ("title", title)) if v}]
        return str(self._store(person)["resourceName"])

    def contact(self, resource_name: str) -> dict[str, Any]:
        return self.contacts[resource_name]

    # -- storage --------------------------------------------------------------------------------

    def _store(self, body: dict[str, Any], resource_name: str | None = None) -> dict[str, Any]:
        contact_id = resource_name.removeprefix("people/") if resource_name else f"c{secrets.randbelow(10**19)}"
        person: dict[str, Any] = {"resourceName": f"people/{contact_id}", "etag": _etag("%")}
        source = {"type": "CONTACT", "id": contact_id.removeprefix("c")}
        for field in WRITABLE & set(body):
            entries = [_named(e) if field == "names" else dict(e) for e in body[field]]
            for index, entry in enumerate(entries):
                entry.pop("canonicalForm", None)
                if field == "phoneNumbers" and str(entry.get("value", "")).startswith("+"):
                    entry["canonicalForm"] = "+" + re.sub(r"\D", "", entry["value"])
                entry["metadata"] = {**(entry.get("metadata") or {}), "primary": index == 0, "source": source}
            if entries:
                person[field] = entries
        person["metadata"] = {
            "sources": [{"type": "CONTACT", "id": source["id"], "etag": _etag("#")}],
            "objectType": "PERSON",
        }
        self.contacts[person["resourceName"]] = person
        return person

    def _render(self, person: dict[str, Any], fields: set[str]) -> dict[str, Any]:
        shown = {"resourceName": person["resourceName"], "etag": person["etag"]}
        shown.update({f: copy.deepcopy(person[f]) for f in sorted(fields) if f in person})
        return shown

    # -- request checks -------------------------------------------------------------------------

    @staticmethod
    def _mask(request: Request, param: str, *, valid: set[str], required: bool = True) -> set[str] | JSONResponse:
        raw = request.query_params.get(param, "")
        if not raw:
            if required:
                return google_error(
                    400,
                    f"{param} mask is required. Please specify one or more valid paths. "
                    f"Valid paths are documented at {DOCS}.",
                )
            return set(valid)
        paths = {p.strip() for p in raw.split(",")}
        bad = sorted(p for p in paths if p not in valid)
        if bad:
            return google_error(400, f'Invalid {param} mask path: "{bad[0]}". Valid paths are documented at {DOCS}.')
        return paths

    @staticmethod
    def _page_size(request: Request, default: int, most: int, *, cap: bool) -> int | JSONResponse:
        raw = request.query_params.get("pageSize", "0")
        if not raw.lstrip("-").isdigit():
            return google_error(400, f"Invalid value at 'page_size' (TYPE_INT32), \"{raw}\"")
        size = int(raw)
        if size < 0 or (size > most and not cap):
            return google_error(400, f"pageSize must be between 1 and {most}, inclusive.")
        return min(size, most) if size else default

    @staticmethod
    async def _person_body(request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return google_error(400, "Invalid JSON payload received. Unexpected token.")
        if not isinstance(body, dict):
            return google_error(400, "Invalid JSON payload received. Expected an object for 'person'.")
        for key, value in body.items():
            if key not in WRITABLE | {"resourceName", "etag", "metadata"}:
                return google_error(
                    400, f"Invalid JSON payload received. Unknown name \"{key}\" at 'person': Cannot find field."
                )
            if key in WRITABLE and not isinstance(value, list):
                return google_error(400, f"Invalid value at 'person.{key}', expected a list.")
        if len(body.get("names") or []) > 1:
            return google_error(400, "Only one name is allowed on a contact; names is a singleton field.")
        return body

    # -- the API --------------------------------------------------------------------------------

    async def get_person(self, request: Request) -> Response:
        fields = self._mask(request, "personFields", valid=READABLE)
        if isinstance(fields, JSONResponse):
            return fields
        person_id = request.path_params["person_id"]
        person = self.me if person_id == "me" else self.contacts.get(f"people/{person_id}")
        if person is None:
            return google_error(404, "Requested entity was not found.")
        return JSONResponse(self._render(person, fields))

    async def list_connections(self, request: Request) -> Response:
        fields = self._mask(request, "personFields", valid=READABLE)
        if isinstance(fields, JSONResponse):
            return fields
        size = self._page_size(request, 100, 1000, cap=False)
        if isinstance(size, JSONResponse):
            return size
        binding = {"personFields": request.query_params["personFields"], "pageSize": size}
        start = 0
        if token := request.query_params.get("pageToken"):
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
            except ValueError:
                return google_error(400, "The page token is not valid.")
            if state.get("binding") != binding:
                return google_error(400, "The parameters of a paged request must match those of the first page.")
            start = int(state["offset"])
        people = list(self.contacts.values())
        page = people[start : start + size]
        body: dict[str, Any] = {"totalPeople": len(people), "totalItems": len(people)}
        if page:
            body["connections"] = [self._render(p, fields) for p in page]
        if start + size < len(people):
            state = {"offset": start + size, "binding": binding}
            body["nextPageToken"] = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
        return JSONResponse(body)

    async def search_contacts(self, request: Request) -> Response:
        fields = self._mask(request, "readMask", valid=READABLE)
        if isinstance(fields, JSONResponse):
            return fields
        size = self._page_size(request, 10, 30, cap=True)
        if isinstance(size, JSONResponse):
            return size
        query = request.query_params.get("query", "")
        if not query:
            self.search_cache = copy.deepcopy(list(self.contacts.values()))
            return JSONResponse({})
        hits = [p for p in self.search_cache if _matches(p, query)][:size]
        return JSONResponse({"results": [{"person": self._render(p, fields)} for p in hits]} if hits else {})

    async def create_contact(self, request: Request) -> Response:
        fields = self._mask(request, "personFields", valid=READABLE, required=False)
        if isinstance(fields, JSONResponse):
            return fields
        body = await self._person_body(request)
        if isinstance(body, JSONResponse):
            return body
        return JSONResponse(self._render(self._store(body), fields))

    async def update_contact(self, request: Request) -> Response:
        changing = self._mask(request, "updatePersonFields", valid=WRITABLE)
        if isinstance(changing, JSONResponse):
            return changing
        fields = self._mask(request, "personFields", valid=READABLE, required=False)
        if isinstance(fields, JSONResponse):
            return fields
        body = await self._person_body(request)
        if isinstance(body, JSONResponse):
            return body
        resource_name = f"people/{request.path_params['person_id']}"
        current = self.contacts.get(resource_name)
        if current is None:
            return google_error(404, "Requested entity was not found.")
        sources = (body.get("metadata") or {}).get("sources") or []
        etag = body.get("etag") or next((s.get("etag") for s in sources if s.get("type") == "CONTACT"), None)
        if not etag:
            return google_error(
                400,
                "Request must set person.etag or person.metadata.sources.etag for the source that is being updated.",
            )
        if etag not in (current["etag"], current["metadata"]["sources"][0]["etag"]):
            return google_error(
                400,
                "Request person.etag is different than the current person.etag. "
                "Clear local cache and get the latest person.",
                "failedPrecondition",
                status_name="FAILED_PRECONDITION",
            )
        merged = {f: v for f, v in current.items() if f in WRITABLE - changing}
        merged.update({f: body[f] for f in changing if f in body})
        return JSONResponse(self._render(self._store(merged, resource_name), fields))

"""API operations declared once, with their pydantic models: the routes and the OpenAPI document both come from here.

An endpoint is declared with the models of its query, body and answer::

    api = ApiRouter("Meetings")

    @api.get("/meetings", query=MeetingFilters, response=Page[MeetingOut], summary="List meetings")
    async def list_meetings(request: Request, query: MeetingFilters) -> Page[MeetingOut]: ...

The router parses and checks the query and body (a 422 names each bad field),
calls the endpoint with them, and serialises what it returns through the
response model, so the document cannot drift from the code. A use case's
refusal (``server.services.errors``) becomes the API's error answer here.

``caller`` names who may call (``person_of``: a person's user key): it runs
before anything of the request is read, and the endpoint gets its principal as
``actor``. An endpoint that answers another status on some paths (202 for an
OAuth start beside 201 for a key) declares it in ``also`` and returns a ``Reply``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.api.auth import principal_of
from server.api.errors import ApiError, body_of, from_service, from_validation
from server.services.errors import ServiceError
from store.principal import Principal

Endpoint = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    endpoint: Endpoint
    summary: str
    tag: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()
    multipart: dict[str, Any] | None = None
    description: str = ""
    public: bool = False
    #: Whether an agent key may call it although it is not a GET (none does today: see ``refuse_agent_writes``).
    agent_may_write: bool = False
    #: Who may call, checked before the request is read; its principal is passed to the endpoint as ``actor``.
    caller: Callable[[Request], Principal] | None = None
    #: Other success statuses and their answers' models (None: no body), returned as a ``Reply``.
    also: dict[int, Any] = field(default_factory=dict)
    #: Redirects it answers (a browser's way through OAuth), each with what it leads to.
    redirects: dict[int, str] = field(default_factory=dict)
    #: Whether a browser that accepts HTML gets the success answer as a page instead of JSON.
    html: bool = False
    #: Whether the body may carry an escaped lone surrogate to the endpoint, which names the field (``body_of``).
    lone_surrogates: bool = False

    @property
    def writes(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Reply:
    """An answer with another of the operation's declared statuses (``also``) than its usual one."""

    status: int
    body: BaseModel | None = None


AGENT_WRITE_REFUSED = (
    "An agent key can read over the REST API but cannot change anything: uploads, data, integrations, "
    "webhooks, keys and rules take a person's user key (or the console). An assistant acts through its "
    "tools over MCP, where a sensitive call waits for a person's approval; an assistant signed in with OAuth "
    "may upload only if the person gave it api:write."
)


def refuse_agent_writes(principal: Principal) -> Principal:
    """The caller, if it may change something over REST: a person (user key or session), or an assistant's
    token the person gave ``api:write`` at consent; never an agent key.

    Whoever holds an agent key may be a prompt-injected assistant (SECURITY.md); what it may do is what its
    tools allow, with approvals, so every REST write path is closed to it, not only the decisions.
    """
    if not principal.may_write_api:
        raise ApiError(403, AGENT_WRITE_REFUSED)
    return principal


def query_of(request: Request, model: type[M]) -> M:
    """The query string as ``model``: repeated parameters become lists where the model wants one."""
    values: dict[str, Any] = {}
    for name in request.query_params:
        many = request.query_params.getlist(name)
        annotation = str(model.model_fields[name].annotation) if name in model.model_fields else ""
        values[name] = many if "list" in annotation else many[-1]
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise from_validation(exc) from None


@dataclass
class ApiRouter:
    tag: str
    operations: list[Operation] = field(default_factory=list)

    def add(self, method: str, path: str, **spec: Any) -> Callable[[Endpoint], Endpoint]:
        def register(endpoint: Endpoint) -> Endpoint:
            summary = spec.pop("summary", "") or (inspect.getdoc(endpoint) or "").split("\n")[0]
            description = inspect.getdoc(endpoint) or ""
            if method != "GET" and not spec.get("agent_may_write") and not spec.get("public"):
                # Agent keys are refused here (403): the document says so for every write.
                spec["errors"] = tuple(sorted({*spec.get("errors", ()), 403}))
            self.operations.append(
                Operation(method, path, endpoint, summary, self.tag, description=description, **spec)
            )
            return endpoint

        return register

    def get(self, path: str, **spec: Any) -> Callable[[Endpoint], Endpoint]:
        return self.add("GET", path, **spec)

    def post(self, path: str, **spec: Any) -> Callable[[Endpoint], Endpoint]:
        return self.add("POST", path, **spec)

    def put(self, path: str, **spec: Any) -> Callable[[Endpoint], Endpoint]:
        return self.add("PUT", path, **spec)

    def patch(self, path: str, **spec: Any) -> Callable[[Endpoint], Endpoint]:
        return self.add("PATCH", path, **spec)

    def delete(self, path: str, **spec: Any) -> Callable[[Endpoint], Endpoint]:
        return self.add("DELETE", path, **spec)

    def routes(self) -> list[Route]:
        return [Route(op.path, _handler(op), methods=[op.method]) for op in self.operations]


def _handler(operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        arguments: dict[str, Any] = {}
        principal: Principal | None = None
        # Who is asking comes before what they sent: a stranger learns nothing from validation errors,
        # and an agent key's upload is refused before a byte of it is read.
        if operation.caller is not None:
            principal = arguments["actor"] = operation.caller(request)
        elif not operation.public:
            principal = principal_of(request)
        # A declared caller is the operation's whole check (person_of, decider_of); the rest refuse agents' writes.
        if operation.caller is None and principal is not None and operation.writes and not operation.agent_may_write:
            refuse_agent_writes(principal)
        if operation.query is not None:
            arguments["query"] = query_of(request, operation.query)
        if operation.body is not None:
            arguments["body"] = await body_of(request, operation.body, lone_surrogates=operation.lone_surrogates)
        try:
            result = await operation.endpoint(request, **arguments)
        except ServiceError as exc:
            raise from_service(exc) from None
        if isinstance(result, Response):
            return result
        status, model = operation.status, operation.response
        if isinstance(result, Reply):
            if result.status not in operation.also:
                raise AssertionError(f"{operation.endpoint.__name__} answered an undeclared {result.status}")
            status, model, result = result.status, operation.also[result.status], result.body
        if result is None:
            return Response(status_code=204 if status == 200 else status)
        if isinstance(model, type) and issubclass(model, BaseModel) and not isinstance(result, model):
            # What leaves is what the document promises: an answer outside its model is a bug here, not data.
            result = model.model_validate(result)
        payload = result.model_dump(mode="json", by_alias=True) if isinstance(result, BaseModel) else result
        return JSONResponse(payload, status_code=status)

    handle.__name__ = operation.endpoint.__name__
    return handle

"""API operations declared once, with their pydantic models: the routes and the OpenAPI document both come from here.

An endpoint is declared with the models of its query, body and answer::

    api = ApiRouter("Meetings")

    @api.get("/meetings", query=MeetingFilters, response=Page[MeetingOut], summary="List meetings")
    async def list_meetings(request: Request, query: MeetingFilters) -> Page[MeetingOut]: ...

The router parses and checks the query and body (a 422 names each bad field),
calls the endpoint with them, and serialises what it returns through the
response model, so the document cannot drift from the code.
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
from server.api.errors import ApiError, body_of, from_validation
from store.models import KeyKind
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

    @property
    def writes(self) -> bool:
        return self.method not in ("GET", "HEAD", "OPTIONS")


M = TypeVar("M", bound=BaseModel)

AGENT_WRITE_REFUSED = (
    "An agent key can read over the REST API but cannot change anything: uploads, data, integrations, "
    "webhooks, keys and rules take a person's user key (or the console). An assistant acts through its "
    "tools over MCP, where a sensitive call waits for a person's approval."
)


def refuse_agent_writes(principal: Principal) -> Principal:
    """The caller, if it may change something over REST: a person (user key or session), never an agent key.

    Whoever holds an agent key may be a prompt-injected assistant (SECURITY.md); what it may do is what its
    tools allow, with approvals, so every REST write path is closed to it, not only the decisions.
    """
    if principal.key_kind is not KeyKind.USER:
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

    def patch(self, path: str, **spec: Any) -> Callable[[Endpoint], Endpoint]:
        return self.add("PATCH", path, **spec)

    def delete(self, path: str, **spec: Any) -> Callable[[Endpoint], Endpoint]:
        return self.add("DELETE", path, **spec)

    def routes(self) -> list[Route]:
        return [Route(op.path, _handler(op), methods=[op.method]) for op in self.operations]


def _handler(operation: Operation) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        if not operation.public:
            # Who is asking comes before what they sent: a stranger learns nothing from validation errors,
            # and an agent key's upload is refused before a byte of it is read.
            principal = principal_of(request)
            if operation.writes and not operation.agent_may_write:
                refuse_agent_writes(principal)
        arguments: dict[str, Any] = {}
        if operation.query is not None:
            arguments["query"] = query_of(request, operation.query)
        if operation.body is not None:
            arguments["body"] = await body_of(request, operation.body)
        result = await operation.endpoint(request, **arguments)
        if isinstance(result, Response):
            return result
        if result is None:
            return Response(status_code=204 if operation.status == 200 else operation.status)
        model = operation.response
        if isinstance(model, type) and issubclass(model, BaseModel) and not isinstance(result, model):
            # What leaves is what the document promises: an answer outside its model is a bug here, not data.
            result = model.model_validate(result)
        payload = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
        return JSONResponse(payload, status_code=operation.status)

    handle.__name__ = operation.endpoint.__name__
    return handle

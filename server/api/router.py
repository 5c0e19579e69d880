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
from server.api.errors import body_of, from_validation

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


M = TypeVar("M", bound=BaseModel)


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
            # Who is asking comes before what they sent: a stranger learns nothing from validation errors.
            principal_of(request)
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

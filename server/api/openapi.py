"""The OpenAPI 3.1 document, built from the declared operations and their pydantic models.

Nothing here is written by hand about an endpoint: parameters come from the
query model's fields, bodies and answers from their models' JSON Schemas, so a
change to a model changes the document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from server.api.router import Operation

REF = "#/components/schemas/{model}"
ERROR_STATUSES = {
    400: "The request is malformed.",
    401: "No valid API key was sent.",
    403: "The key may not do this.",
    404: "There is no such object that this key can see.",
    409: "The object is not in a state that allows this.",
    413: "The upload is larger than the limit.",
    415: "The upload's content type is not accepted.",
    422: "A field is invalid; details.fields names each one.",
    429: "Too many requests; wait for Retry-After seconds.",
    502: "The app's provider failed to answer; the message says how, in Companion's words.",
}


class ErrorDetail(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["Meeting not found"])
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """Every error the API answers has this shape."""

    error: ErrorDetail


RATE_HEADERS = {
    "X-RateLimit-Limit": {"description": "Requests allowed per minute for this key", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Requests left in this minute", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {"description": "When the minute ends (Unix seconds)", "schema": {"type": "integer"}},
}


#: Which JSON Schema of a model: what a body must be (validation), or what an answer is (serialization).
Mode = Literal["validation", "serialization"]
#: The component schema of each (model, mode), as ``models_json_schema`` keys them.
Keyed = Mapping[tuple[Any, Mode], dict[str, Any]]


def _parameters(operation: Operation, schemas: Keyed) -> list[dict[str, Any]]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)(?::\w+)?}", operation.path)
    ]
    if operation.query is not None:
        schema = operation.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if "description" in prop:
                parameter["description"] = prop["description"]
            parameters.append(parameter)
    return parameters


def _success(
    status: int, model: Any, keyed: Keyed, mode: Mapping[type[BaseModel], Mode], *, html: bool
) -> dict[str, Any]:
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return {"description": "No content" if status == 204 else "OK", "headers": RATE_HEADERS}
    content: dict[str, Any] = {"application/json": {"schema": keyed[(model, mode[model])]}}
    if html:
        content["text/html"] = {"schema": {"type": "string"}}
    return {"description": "OK", "headers": RATE_HEADERS, "content": content}


def openapi_document(operations: list[Operation], *, title: str, version: str, server_url: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for operation in operations:
        for model in (operation.body, operation.response, *operation.also.values()):
            if isinstance(model, type) and issubclass(model, BaseModel):
                models.add(model)
    mode: dict[type[BaseModel], Mode] = {m: "serialization" for m in models}
    for operation in operations:
        if operation.body is not None:
            mode[operation.body] = "validation"
    keyed, document = models_json_schema(
        [(m, mode[m]) for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    components = document.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        path = re.sub(r"{(\w+):\w+}", r"{\1}", operation.path)
        entry: dict[str, Any] = {
            "operationId": operation.endpoint.__name__,
            "summary": operation.summary,
            "tags": [operation.tag],
            "parameters": _parameters(operation, keyed),
            "responses": {},
        }
        if operation.description and operation.description != operation.summary:
            entry["description"] = operation.description
        if operation.public:
            entry["security"] = []
        if operation.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": keyed[(operation.body, "validation")]}},
            }
        if operation.multipart is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": {"schema": operation.multipart}},
            }
        answers = {operation.status: operation.response, **operation.also}
        for status, model in answers.items():
            entry["responses"][str(status)] = _success(status, model, keyed, mode, html=operation.html)
        for status, where in operation.redirects.items():
            entry["responses"][str(status)] = {
                "description": where,
                "headers": {"Location": {"description": "Where the browser goes next", "schema": {"type": "string"}}},
            }
        statuses = {400, 401, 429, *operation.errors} | ({403} if not operation.public else set())
        if operation.query is not None or operation.body is not None:
            statuses.add(422)
        for status in sorted(statuses):
            entry["responses"][str(status)] = {
                "description": ERROR_STATUSES.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorBody")}}},
            }
        paths.setdefault(path, {})[operation.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key (hck_…)"}},
        },
        "security": [{"bearer": []}],
    }

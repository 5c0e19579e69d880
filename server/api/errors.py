"""The API's error format, and the exceptions that produce it."""

from __future__ import annotations

import json
import logging
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from server.http_status import status_of
from server.services.errors import (
    InvalidArguments,
    InvalidInput,
    ServiceError,
    fields_of,
)

log = logging.getLogger(__name__)

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "server_error",
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES.get(status, "error")
        self.message = message
        self.details = details or {}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="companion"'} if status == 401 else None
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details or {}}}, status_code=status, headers=headers
    )


def invalid(fields: dict[str, str]) -> ApiError:
    """A 422 whose details name each bad field."""
    listed = "; ".join(f"{name}: {problem}" for name, problem in fields.items())
    return ApiError(422, f"Invalid request: {listed}", details={"fields": fields})


def from_validation(exc: ValidationError, *, prefix: str = "") -> ApiError:
    return invalid(fields_of(exc, prefix=prefix))


def from_service(exc: ServiceError) -> ApiError:
    """A use case's refusal as the API answers it: the status by its kind, with its code, message and details."""
    if isinstance(exc, InvalidArguments):
        # The call described could not be made at all: refused as the gateway refuses it, before any rule.
        return ApiError(400, f"Invalid arguments: {exc.message}", code=exc.code, details=exc.details)
    if isinstance(exc, InvalidInput):
        return invalid(exc.fields)
    return ApiError(status_of(exc), exc.message, code=exc.code, details=exc.details)


M = TypeVar("M", bound=BaseModel)


async def body_of(request: Request, model: type[M], *, lone_surrogates: bool = False) -> M:
    """The request's JSON body as ``model`` (an empty body is ``{}``); a 422 naming each bad field otherwise.

    The JSON parser refuses an escaped lone surrogate (``\\ud800``) as invalid JSON, so no such text
    reaches a store. ``lone_surrogates`` lets one through to a use case that names the field holding it
    instead, as a tool's argument checks do; malformed JSON is then a 400.
    """
    raw = await request.body()
    if b"\\u0000" in raw:
        # PostgreSQL text cannot hold NUL; refused here rather than failing deep in a query.
        raise ApiError(400, "The request body holds a NUL character.", code="bad_request")
    try:
        if not lone_surrogates:
            return model.model_validate_json(raw or b"{}")
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise ApiError(400, "The body must be JSON") from None
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation(exc) from None


async def api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    response = error_response(exc.status_code, STATUS_CODES.get(exc.status_code, "error"), str(exc.detail))
    # A 405 names the methods that are allowed (RFC 9110); Starlette puts them in the exception's headers.
    response.headers.update(exc.headers or {})
    return response


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "server_error", "Something went wrong on our side.")

"""The one place requests are made: authentication, retries, rate-limit headers and error answers.

The sync and async clients share everything here but the waiting and the
sending, so they cannot disagree on what is retried or which error is raised.

What is retried, and why:

- 429 on any method, after ``Retry-After`` seconds (or 1, 2, 4 ... without
  one): the server refused the request before doing anything, so sending it
  again is safe, a POST too.
- 5xx on GET only. A POST or DELETE may have taken effect before the error
  (a key created, a key revoked), and repeating it would create a second key
  or turn a success into a 404.
- At most ``max_retries`` times, and never when the server asks for a wait
  longer than ``MAX_WAIT``: then the error is raised, and the caller decides.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from time import sleep, time
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from anyio import sleep as asleep
from pydantic import BaseModel

from harmony_client.errors import (
    Forbidden,
    HarmonyError,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)
from harmony_client.models import RateLimit

VERSION = "0.1.0"
DEFAULT_BASE_URL = "http://127.0.0.1:8000/api/v1"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 3
#: The longest wait before one retry; a server asking for more gets its error raised instead of a silent hang.
MAX_WAIT = 60.0
#: Methods retried after a 5xx: only those that cannot have changed anything.
RETRY_5XX_METHODS = frozenset({"GET"})

ERRORS: dict[int, type[HarmonyError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    422: InvalidRequest,
}
DEFAULT_CODES = {401: "unauthorized", 403: "forbidden", 404: "not_found", 422: "invalid_request", 429: "rate_limited"}

M = TypeVar("M", bound=BaseModel)
Files = Callable[[ExitStack], Mapping[str, Any]]


@dataclass(frozen=True)
class Call:
    """One API request. ``files`` builds the multipart parts afresh for each attempt, so a retry sends them whole."""

    method: str
    path: str
    params: Mapping[str, str | int] | None = None
    json: Any = None
    data: Mapping[str, str] | None = None
    files: Files | None = None

    def arguments(self, opened: ExitStack) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.path,
            "params": self.params,
            "json": self.json,
            "data": self.data,
            "files": self.files(opened) if self.files else None,
        }


def segment(value: str) -> str:
    """An id as one path segment: an id holding ``/`` or ``?`` cannot reach another endpoint."""
    return quote(value, safe="")


def query(**values: str | int | date | Enum | None) -> dict[str, str | int]:
    """Query parameters as the API reads them: unset ones left out, dates as YYYY-MM-DD, enums by value."""
    params: dict[str, str | int] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, Enum):
            params[name] = str(value.value)
        elif isinstance(value, date):
            params[name] = value.isoformat()
        else:
            params[name] = value
    return params


def retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds, given as seconds or as an HTTP date; None when absent or unreadable."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time())


def backoff(attempt: int) -> float:
    """The wait before retry ``attempt`` (from 0) when the server names none: 1, 2, 4 ... seconds."""
    return min(2.0**attempt, MAX_WAIT)


def retry_delay(method: str, response: httpx.Response, attempt: int, max_retries: int) -> float | None:
    """Seconds to wait before sending the call again, or None to keep this answer."""
    status = response.status_code
    retryable = status == 429 or (status >= 500 and method in RETRY_5XX_METHODS)
    if not retryable or attempt >= max_retries:
        return None
    wait = retry_after(response.headers)
    if wait is None:
        return backoff(attempt)
    return wait if wait <= MAX_WAIT else None


def rate_limit_of(response: httpx.Response) -> RateLimit | None:
    headers = response.headers
    try:
        return RateLimit(
            limit=int(headers["X-RateLimit-Limit"]),
            remaining=int(headers["X-RateLimit-Remaining"]),
            reset=datetime.fromtimestamp(int(headers["X-RateLimit-Reset"]), UTC),
        )
    except (KeyError, ValueError):
        return None


def error_from(response: httpx.Response) -> HarmonyError:
    """The typed error for an error answer, from its ``{"error": {...}}`` body when it has one.

    A proxy's HTML 502 has no such body; its status and reason phrase still make a ``ServerError``.
    """
    status = response.status_code
    code = DEFAULT_CODES.get(status, "server_error" if status >= 500 else "error")
    message = response.reason_phrase or f"HTTP {status}"
    details: dict[str, Any] = {}
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        details = error["details"] if isinstance(error.get("details"), dict) else {}
    if status == 429:
        wait = retry_after(response.headers)
        if wait is None and isinstance(details.get("retry_after"), int | float):
            wait = float(details["retry_after"])
        return RateLimited(status, code, message, details, retry_after=wait)
    if status >= 500:
        return ServerError(status, code, message, details)
    return ERRORS.get(status, HarmonyError)(status, code, message, details)


class Connection:
    """What both clients hold: the key, the API's address, the retry budget, and the last rate-limit headers."""

    def __init__(self, api_key: str | None, base_url: str | None, timeout: float, max_retries: int) -> None:
        key = api_key or os.environ.get("HARMONY_API_KEY")
        if not key:
            raise ValueError("No API key: pass api_key= or set HARMONY_API_KEY.")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.max_retries = max_retries
        self.rate_limit: RateLimit | None = None
        self.options: dict[str, Any] = {
            "base_url": base_url or os.environ.get("HARMONY_BASE_URL") or DEFAULT_BASE_URL,
            "headers": {
                "Authorization": f"Bearer {key}",
                "Accept": "application/json",
                "User-Agent": f"harmony-client-python/{VERSION}",
            },
            "timeout": timeout,
        }

    def settle(self, call: Call, response: httpx.Response, attempt: int) -> float | None:
        """Note the answer's rate-limit headers; return the wait before a retry, or None when this answer stands."""
        self.rate_limit = rate_limit_of(response) or self.rate_limit
        return retry_delay(call.method, response, attempt, self.max_retries)


def checked(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise error_from(response)
    return response


class SyncHttp(Connection):
    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        transport: httpx.BaseTransport | None,
    ) -> None:
        super().__init__(api_key, base_url, timeout, max_retries)
        self.client = httpx.Client(transport=transport, **self.options)

    def send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            with ExitStack() as opened:
                response = self.client.request(**call.arguments(opened))
            wait = self.settle(call, response, attempt)
            if wait is None:
                return checked(response)
            sleep(wait)
            attempt += 1

    def get(self, path: str, model: type[M], params: Mapping[str, str | int] | None = None) -> M:
        return model.model_validate_json(self.send(Call("GET", path, params=params)).content)

    def request(self, call: Call, model: type[M]) -> M:
        return model.model_validate_json(self.send(call).content)


class AsyncHttp(Connection):
    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        super().__init__(api_key, base_url, timeout, max_retries)
        self.client = httpx.AsyncClient(transport=transport, **self.options)

    async def send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            with ExitStack() as opened:
                response = await self.client.request(**call.arguments(opened))
            wait = self.settle(call, response, attempt)
            if wait is None:
                return checked(response)
            await asleep(wait)
            attempt += 1

    async def get(self, path: str, model: type[M], params: Mapping[str, str | int] | None = None) -> M:
        return model.model_validate_json((await self.send(Call("GET", path, params=params))).content)

    async def request(self, call: Call, model: type[M]) -> M:
        return model.model_validate_json((await self.send(call)).content)

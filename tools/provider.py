"""The one client every adapter calls its provider through.

It does, once for all apps, what each adapter would otherwise get subtly
wrong: the auth header for the connection's method, refreshing a token before
it expires and once on a 401, retrying a 429 or 5xx with backoff (honouring
``Retry-After``), and turning a provider's error into a message a person can
act on. No message it raises carries a credential.

It knows HTTP, not providers. Where a provider says something its status code
does not (a 403 that means "slow down", a 200 that means "token expired"), the
app's ``classify`` hook reads the answer and the client acts on the ``Reading``.

Only requests that are safe to repeat are retried after a 5xx or a timeout: a
POST that sends an e-mail may have been done even though the answer was an
error. A 429 or a refused connection is always retried, since the provider did
nothing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from store.connections import ConnectionView
from tools.errors import ToolError
from tools.manifest import Manifest

# Re-exported: an app's classify hook returns tools.provider.Reading (README, Apps).
from tools.reading import Classify as Classify
from tools.reading import Reading as Reading
from tools.tokens import ProviderPolicy, TokenKeeper, is_fresh

log = logging.getLogger(__name__)

IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "PUT", "DELETE"}
BACKOFF_BASE = 0.25


class ProviderError(ToolError):
    """The provider answered with an error; ``status`` is its HTTP status, ``retry_after`` its advice."""

    def __init__(self, message: str, *, code: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, code=code)
        self.status = status
        self.retry_after = retry_after


def provider_message(body: Any) -> str:
    """The human part of an error body, in the shapes providers use."""
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return "; ".join(str(item.get("message", "")) for item in body if item.get("message"))
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("status") or "")
    if isinstance(body.get("errors"), list):
        return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in body["errors"])
    for key in ("message", "error_description", "error"):
        if isinstance(body.get(key), str) and body[key]:
            return str(body[key])
    return ""


def json_body(response: httpx.Response) -> Any:
    """The answer's JSON, or None when it has none; for hooks that read error bodies."""
    try:
        return response.json()
    except ValueError:
        return None


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


@dataclass
class ProviderApi:
    """One connection's door to its provider, for the length of one call."""

    manifest: Manifest
    connection: ConnectionView
    http: httpx.AsyncClient
    keeper: TokenKeeper
    credentials: dict[str, Any]

    @property
    def classify(self) -> Classify | None:
        # Bound by the registry when it loads the app, so every ProviderApi of the app reads answers its way.
        return self.manifest.classify

    @property
    def policy(self) -> ProviderPolicy:
        return self.keeper.policy

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def provider_base_url(self) -> str:
        """The API's address as the provider names it, setup values filled in, before any origin rewrite."""
        if self.manifest.api is None or self.manifest.api.base_url is None:
            raise ToolError(f"{self.name} has no API address in its manifest.", code="server_error")
        return self.manifest.api.base_url.format(**{k: str(v).rstrip("/") for k, v in self.connection.setup.items()})

    @property
    def base_url(self) -> str:
        return self.policy.rewrite(self.manifest.id, self.provider_base_url)

    def url(self, path: str) -> str:
        """The address of ``path`` on the provider's API.

        An absolute URL (a page link the provider returned) must stay on the API's
        own host, because the request carries the connection's credentials.
        """
        if path.startswith(("http://", "https://")):
            own = {urlsplit(url)[:2] for url in (self.provider_base_url, self.base_url)}
            if urlsplit(path)[:2] not in own:
                raise ToolError(
                    f"{self.name} pointed to another host; Companion sends no credentials there.",
                    code="provider_error",
                )
            return self.policy.rewrite(self.manifest.id, path)
        return self.base_url.rstrip("/") + "/" + path.lstrip("/") if path else self.base_url

    def _auth_headers(self) -> dict[str, str]:
        method = self.credentials.get("method", self.connection.auth_method)
        if method == "oauth2":
            return {"Authorization": f"Bearer {self.credentials['access_token']}"}
        if method == "api_key":
            spec = self.manifest.auth.api_key
            header, scheme = (spec.header, spec.scheme) if spec else ("Authorization", "Bearer")
            key = str(self.credentials.get("api_key", ""))
            return {header: f"{scheme} {key}" if scheme else key}
        if method == "basic":
            username = self.credentials.get("username", self.connection.setup.get("username", ""))
            pair = f"{username}:{self.credentials.get('password', '')}"
            return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}
        return {}

    async def _ensure_fresh(self, *, force: bool = False, refused: dict[str, Any] | None = None) -> bool:
        """Refresh an OAuth token that is about to expire, or that the provider refused; False if it cannot be.

        ``refused`` is the credentials a refused request carried: when a request
        beside it (the same call fetching in parallel) refreshed meanwhile, the
        new token is used as it is instead of being refreshed again.
        """
        if self.credentials.get("method") != "oauth2":
            return False
        if refused is not None and self.credentials is not refused:
            return True
        if not force and is_fresh(self.credentials):
            return True
        self.credentials = await self.keeper.refreshed(
            self.manifest, self.connection, refused or self.credentials, force=force
        )
        return True

    async def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one request, with auth, refresh and retries; return the successful response or raise ToolError."""
        method = method.upper()
        repeatable = method in IDEMPOTENT if idempotent is None else idempotent
        await self._ensure_fresh()
        refreshed_on_401 = False
        attempt = 0
        while True:
            sent_with = self.credentials
            try:
                response = await self.http.request(
                    method,
                    self.url(path),
                    params={k: v for k, v in (params or {}).items() if v is not None} or None,
                    json=json,
                    data=data,
                    headers={**self._default_headers, **(headers or {}), **self._auth_headers()},
                    timeout=self.policy.timeout,
                )
            except (httpx.ConnectError, httpx.ConnectTimeout):
                wait = self._backoff(attempt)
            except httpx.TimeoutException:
                if not repeatable:
                    raise ToolError(
                        f"{self.name} did not answer in time; the request may or may not have been carried out.",
                        code="provider_timeout",
                    ) from None
                wait = self._backoff(attempt)
            except httpx.HTTPError as exc:
                raise ToolError(
                    f"Could not reach {self.name}: {type(exc).__name__}.", code="provider_unavailable"
                ) from None
            else:
                reading = self._read(response)
                if reading is None and response.is_success:
                    return response
                if _refused(response, reading) and not refreshed_on_401:
                    refreshed_on_401 = True
                    if await self._ensure_fresh(force=True, refused=sent_with):
                        continue
                if _refused(response, reading):
                    said = "401" if response.status_code == 401 else f"{response.status_code}, {reading}"
                    await self.keeper.mark_needs_reauth(
                        self.connection, f"{self.name} refused the credentials ({said})."
                    )
                    raise self._error(response, reading)
                retry_after = retry_after_seconds(response)
                if _limited(response, reading) or (reading is None and response.status_code >= 500 and repeatable):
                    wait = retry_after if retry_after is not None else self._backoff(attempt)
                else:
                    raise self._error(response, reading)
                if wait > self.policy.max_wait or attempt >= self.policy.retries:
                    raise self._error(response, reading)
            if attempt >= self.policy.retries:
                raise ToolError(f"Could not reach {self.name}.", code="provider_unavailable")
            attempt += 1
            log.info("%s: retrying %s %s in %.2fs (attempt %d)", self.manifest.id, method, path, wait, attempt)
            await asyncio.sleep(wait)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and return its JSON body (None for an empty answer)."""
        response = await self.send(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ToolError(f"{self.name} answered with something other than JSON.", code="provider_error") from None

    async def graphql(self, query: str, variables: dict[str, Any] | None = None, *, path: str = "") -> dict[str, Any]:
        """Run a GraphQL operation; errors in the body become ToolErrors like HTTP errors do."""
        is_query = query.lstrip().startswith(("query", "{"))
        body = await self.json("POST", path, json={"query": query, "variables": variables or {}}, idempotent=is_query)
        if not isinstance(body, dict):
            raise ToolError(f"{self.name} answered with an unexpected body.", code="provider_error")
        if body.get("errors") and not body.get("data"):
            # What a code in the errors' extensions means is the provider's own vocabulary: its classify
            # hook has read this answer already, so what is left is a request the provider refused.
            message = f"{self.name} rejected the request: {provider_message(body).rstrip('.')}."
            raise ProviderError(message, code="invalid_request")
        return dict(body.get("data") or {})

    def _backoff(self, attempt: int) -> float:
        return BACKOFF_BASE * (2.0**attempt) * (1 + random.random() / 2)

    @property
    def _default_headers(self) -> dict[str, str]:
        return dict(self.manifest.api.headers) if self.manifest.api else {}

    def _read(self, response: httpx.Response) -> Reading | None:
        classify = self.classify
        return classify(response) if classify is not None else None

    def _error(self, response: httpx.Response, reading: Reading | None = None) -> ProviderError:
        detail = provider_message(json_body(response)).rstrip(".")
        status = 404 if reading is Reading.NOT_FOUND else response.status_code
        said = f": {detail}" if detail else ""
        if _refused(response, reading):
            return ProviderError(
                f"{self.name} no longer accepts this connection's credentials{said}. "
                "Reconnect it (Marketplace > Installed > Re-authenticate) and try again.",
                code="needs_reauth",
                status=status,
            )
        if status == 403 and not _limited(response, reading):
            return ProviderError(f"{self.name} refused the request{said}.", code="forbidden", status=status)
        if status == 404:
            return ProviderError(f"{self.name} found nothing there{said}.", code="not_found", status=status)
        if _limited(response, reading):
            retry_after = retry_after_seconds(response)
            when = f" Try again in {retry_after:.0f} s." if retry_after is not None else ""
            return ProviderError(
                f"{self.name} is rate limiting requests.{when}",
                code="rate_limited",
                status=status,
                retry_after=retry_after,
            )
        if status >= 500:
            return ProviderError(
                f"{self.name} is having trouble ({status}){said}.", code="provider_unavailable", status=status
            )
        return ProviderError(
            f"{self.name} rejected the request: {detail}." if detail else f"{self.name} rejected the request.",
            code="invalid_request",
            status=status,
        )


def _refused(response: httpx.Response, reading: Reading | None) -> bool:
    return reading is Reading.REFUSED_TOKEN or (reading is None and response.status_code == 401)


def _limited(response: httpx.Response, reading: Reading | None) -> bool:
    return reading is Reading.RATE_LIMITED or (reading is None and response.status_code == 429)

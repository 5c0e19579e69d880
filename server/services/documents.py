"""Fetching a small JSON document that someone else names: a client's metadata document, an identity provider's
discovery document or keys.

Whoever names the URL (an assistant registering itself, an admin typing an issuer) makes the server call it from
inside the deployment's network, so the fetch follows the webhook address policy (``addresses``): every address
the host resolves to must be public unless the deployment allows private ones, and the request goes to an
address that was checked. Redirects are not followed, and the body is read only up to a cap.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from server.services import addresses

FETCH_SECONDS = 5.0


class DocumentError(Exception):
    """A document that could not be fetched or is not a JSON object; the message says why, in words."""


@dataclass(frozen=True)
class DocumentFetcher:
    http: httpx.AsyncClient
    https_only: bool
    allow_private: bool
    resolver: addresses.Resolver = addresses.system_resolve

    async def json_object(self, url: str, *, max_bytes: int) -> dict[str, Any]:
        """The JSON object at ``url``; DocumentError if the address is refused, the answer is not 200, or the
        body is larger than ``max_bytes`` or not a JSON object."""
        try:
            target, resolved = await addresses.resolve(
                url,
                https_only=self.https_only,
                allow_private=self.allow_private,
                resolver=self.resolver,
                only="Companion fetches documents from public addresses only",
            )
        except addresses.UnsafeUrl as exc:
            raise DocumentError(f"the URL {exc}") from None
        headers = {"Host": target.host_header, "Accept": "application/json", "Accept-Encoding": "identity"}
        tls = {"sni_hostname": target.host} if target.parts.scheme.lower() == "https" else {}
        failure = "no address answered"
        try:
            async with asyncio.timeout(FETCH_SECONDS):
                for address in resolved:
                    request = self.http.build_request("GET", target.pinned(address), headers=headers, extensions=tls)
                    try:
                        return await self._read(request, max_bytes)
                    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                        failure = f"could not connect ({type(exc).__name__})"
        except TimeoutError:
            raise DocumentError(f"no answer within {FETCH_SECONDS:g} s") from None
        except httpx.HTTPError as exc:
            raise DocumentError(f"the request failed ({type(exc).__name__})") from None
        raise DocumentError(failure)

    async def _read(self, request: httpx.Request, max_bytes: int) -> dict[str, Any]:
        response = await self.http.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise DocumentError(f"it answered HTTP {response.status_code}, not 200 (redirects are not followed)")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > max_bytes:
                    raise DocumentError(f"it is larger than {max_bytes} bytes")
        finally:
            await response.aclose()
        try:
            document = json.loads(bytes(body))
        except ValueError:
            raise DocumentError("it is not JSON") from None
        if not isinstance(document, dict):
            raise DocumentError("it is not a JSON object")
        return document

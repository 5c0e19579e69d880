"""Delivery of the outbox: claim due rows with a lease, POST them signed, record the answer, back off on failure.

Several processes may run the dispatcher against one database. A delivery is
claimed by one conditional UPDATE that sets ``locked_until`` and counts the
attempt; the attempt number it returns is the claim's token, and the outcome
is written only if the row still carries it. A process that dies mid-attempt
leaves a lease that runs out, and the delivery is attempted again: delivery is
at least once, and receivers tell repeats apart by ``X-Harmony-Delivery``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import or_, select, update

from server.services import addresses
from server.services.webhooks import signing
from server.services.webhooks.endpoints import open_secret
from server.services.webhooks.outbox import TEST_EVENT
from server.settings import Settings
from store.crypto import DecryptionError, SecretBox
from store.db import Database
from store.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE = timedelta(seconds=60)
TIMEOUT_SECONDS = 10.0
POLL_SECONDS = 1.0
BATCH = 20
EXCERPT_BYTES = 200


def default_backoff(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th failure: 10 s, 30 s, 1.5 min, 4.5 min ... at most an hour."""
    return min(10.0 * 3.0 ** (attempt - 1), 3600.0)


def attempts_allowed(event: str, max_attempts: int) -> int:
    """A test event is tried once, while the person who sent it waits; real events get the whole schedule."""
    return 1 if event == TEST_EVENT else max_attempts


def webhook_client() -> httpx.AsyncClient:
    """The client deliveries go out through.

    Never follows redirects (a redirect could lead to an address nobody
    checked), ignores proxy variables (the connection must reach the
    checked address), and keeps no idle connections, so a TLS connection
    made for one host name is never reused for another on the same address.
    """
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(TIMEOUT_SECONDS),
        limits=httpx.Limits(max_keepalive_connections=0),
    )


@dataclass(frozen=True)
class Attempt:
    """What one delivery attempt came to: delivered, or the status and error to record and retry on."""

    delivered: bool
    status_code: int | None = None
    error: str | None = None


@dataclass
class Dispatcher:
    db: Database
    box: SecretBox
    http: httpx.AsyncClient
    https_only: bool
    allow_private: bool
    backoff: Callable[[int], float] = default_backoff
    max_attempts: int = MAX_ATTEMPTS
    lease: timedelta = LEASE
    timeout: float = TIMEOUT_SECONDS
    batch: int = BATCH
    resolver: addresses.Resolver = field(default=addresses.system_resolve)

    @classmethod
    def of(
        cls, settings: Settings, db: Database, box: SecretBox, http: httpx.AsyncClient, **options: Any
    ) -> Dispatcher:
        """A dispatcher with the server's URL rules; ``options`` override fields (tests shorten the backoff)."""
        rules = {"https_only": addresses.require_https(settings), "allow_private": addresses.allow_private(settings)}
        return cls(db, box, http, **(rules | options))

    async def run_once(self) -> int:
        """Attempt every delivery due now (up to ``batch``); returns how many were attempted."""
        claimed = await self._claim()
        results = await asyncio.gather(*(self._attempt(i, token) for i, token in claimed), return_exceptions=True)
        for (delivery_id, _), result in zip(claimed, results, strict=True):
            if isinstance(result, BaseException):
                log.error("webhook delivery %s: attempt crashed", delivery_id, exc_info=result)
        return len(claimed)

    def hold(self, delivery: WebhookDelivery) -> int:
        """Claim a delivery as it is written, for an attempt its writer makes at once; returns the claim's token.

        The row commits already leased, so no worker takes it in the meantime.
        """
        delivery.attempts = 1
        delivery.locked_until = utcnow() + self.lease
        return delivery.attempts

    async def attempt(self, delivery_id: str, token: int) -> WebhookDelivery | None:
        """Send a delivery held with ``token`` once, record the outcome, and return the delivery as it then stands."""
        await self._attempt(delivery_id, token)
        async with self.db.session() as session:
            return await session.get(WebhookDelivery, delivery_id)

    async def forever(self, poll: float = POLL_SECONDS) -> None:
        """Deliver until cancelled; a failing round (the database away, say) is logged and retried, never fatal."""
        failures = 0
        while True:
            try:
                attempted = await self.run_once()
            except Exception:
                failures += 1
                log.exception("webhook dispatcher: a round failed")
                await asyncio.sleep(min(poll * 2**failures, 60.0))
                continue
            failures = 0
            if attempted < self.batch:
                await asyncio.sleep(poll)

    async def _claim(self) -> list[tuple[str, int]]:
        """Lease due deliveries in one conditional UPDATE; each comes back with its attempt number as the token."""
        now = utcnow()
        free = (
            (WebhookDelivery.status == DeliveryStatus.PENDING)
            & (WebhookDelivery.next_attempt_at <= now)
            & or_(WebhookDelivery.locked_until.is_(None), WebhookDelivery.locked_until < now)
        )
        # On PostgreSQL, rows another process is claiming right now are skipped rather than waited for
        # (SQLite has one writer at a time and no row locks; the clause is left out there).
        due = (
            select(WebhookDelivery.id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(free, WebhookEndpoint.active.is_(True))
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(self.batch)
            .with_for_update(skip_locked=True, of=WebhookDelivery)
        )
        async with self.db.transaction() as session:
            claimed = await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(due.scalar_subquery()), free)
                .values(locked_until=now + self.lease, attempts=WebhookDelivery.attempts + 1)
                .returning(WebhookDelivery.id, WebhookDelivery.attempts)
                .execution_options(synchronize_session=False)
            )
            return [(row[0], row[1]) for row in claimed]

    async def _attempt(self, delivery_id: str, token: int) -> None:
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(WebhookDelivery, WebhookEndpoint)
                    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                    .where(WebhookDelivery.id == delivery_id)
                )
            ).one_or_none()
        if row is None:
            return  # the endpoint was deleted meanwhile, and its deliveries with it
        delivery, endpoint = row
        outcome = await self._send(delivery, endpoint)
        if not outcome.delivered:
            log.info("webhook delivery %s to %s, attempt %d: %s", delivery.id, endpoint.id, token, outcome.error)
        await self._record(delivery, token, outcome)

    async def _send(self, delivery: WebhookDelivery, endpoint: WebhookEndpoint) -> Attempt:
        try:
            secret = open_secret(self.box, endpoint)
        except DecryptionError:
            return Attempt(False, error="the signing secret cannot be opened with this server's keys")
        try:
            target, resolved = await addresses.resolve(
                endpoint.url, https_only=self.https_only, allow_private=self.allow_private, resolver=self.resolver
            )
        except addresses.UnsafeUrl as exc:
            return Attempt(False, error=f"refused: the URL {exc}")
        headers = signing.headers(
            secret, delivery_id=delivery.id, event=delivery.event, timestamp=int(time.time()), body=delivery.body
        )
        headers |= {"Host": target.host_header, "Accept-Encoding": "identity"}
        tls = {"sni_hostname": target.host} if target.parts.scheme.lower() == "https" else {}
        unreachable = ""
        try:
            async with asyncio.timeout(self.timeout):
                for address in resolved:
                    request = self.http.build_request(
                        "POST", target.pinned(address), headers=headers, content=delivery.body.encode(), extensions=tls
                    )
                    try:
                        return await self._post(request)
                    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                        unreachable = _describe(exc)
        except TimeoutError:
            return Attempt(False, error=f"no answer within {self.timeout:g} s")
        except httpx.HTTPError as exc:
            return Attempt(False, error=_describe(exc))
        return Attempt(False, error=f"could not connect: {unreachable}")

    async def _post(self, request: httpx.Request) -> Attempt:
        response = await self.http.send(request, stream=True)
        try:
            status = response.status_code
            if 200 <= status < 300:
                return Attempt(True, status)
            if 300 <= status < 400:
                return Attempt(False, status, f"HTTP {status}: redirects are not followed; use the final URL")
            excerpt = await _excerpt(response)
            return Attempt(False, status, f"HTTP {status}" + (f": {excerpt}" if excerpt else ""))
        finally:
            await response.aclose()

    async def _record(self, delivery: WebhookDelivery, token: int, outcome: Attempt) -> None:
        """Write the outcome if this claim still holds the row (its attempt count is still ``token``)."""
        now = utcnow()
        values: dict[str, Any] = {"locked_until": None, "last_status_code": outcome.status_code}
        if outcome.delivered:
            values |= {"status": DeliveryStatus.DELIVERED, "delivered_at": now, "last_error": None}
        elif token >= attempts_allowed(delivery.event, self.max_attempts):
            values |= {"status": DeliveryStatus.FAILED, "last_error": outcome.error}
        else:
            values |= {"next_attempt_at": now + timedelta(seconds=self.backoff(token)), "last_error": outcome.error}
        async with self.db.transaction() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery.id,
                    WebhookDelivery.attempts == token,
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )


def _describe(exc: httpx.HTTPError) -> str:
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}"[:300] if detail else type(exc).__name__


async def _excerpt(response: httpx.Response) -> str:
    """The start of an error answer, for the deliveries list; never decompressed, never more than a few bytes."""
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return ""
    raw = b""
    async for chunk in response.aiter_raw():
        raw += chunk
        if len(raw) >= EXCERPT_BYTES:
            break
    text = raw[:EXCERPT_BYTES].decode("utf-8", errors="replace")
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


async def worker(settings: Settings, db: Database, box: SecretBox) -> None:
    """The background task the server runs: deliver the outbox until the server stops."""
    async with webhook_client() as http:
        await Dispatcher.of(settings, db, box, http).forever()

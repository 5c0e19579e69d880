"""Prometheus metrics of one Companion, served at ``GET /metrics``.

Each Companion keeps its metrics on a registry of its own rather than the
process-wide default, so that several Companions in one process (the tests,
the CLI beside a server) never share or clash over a series.

Counters and histograms count what this replica did. The gauges read from
the shared database (pending approvals, the webhook backlog) are the same on
every replica: aggregate them with ``max``, not ``sum``.

Each phase is also an OpenTelemetry span, through the API: unless an exporter
is configured (``tracing.py``, by the ``OTEL_*`` variables) the spans cost next
to nothing and go nowhere.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Literal

from opentelemetry import trace
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from store.db import Database
from store.models import Approval, ApprovalStatus, DeliveryStatus, WebhookDelivery, utcnow

log = logging.getLogger(__name__)
tracer = trace.get_tracer("harmony-companion")

Phase = Literal["auth", "resolve", "decision", "approval_wait", "adapter", "audit"]
PHASES: tuple[Phase, ...] = ("auth", "resolve", "decision", "approval_wait", "adapter", "audit")
# From a cached rule lookup (a millisecond) to a person deciding in the chat or a slow provider (minutes).
PHASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# From a loop with headroom (under a millisecond) through a full garbage collection (tens of ms) to a stuck one.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class PhaseTimer:
    """The time of one phase, less what a nested phase took that is measured on its own."""

    def __init__(self) -> None:
        self.excluded = 0.0

    def exclude(self, seconds: float) -> None:
        self.excluded += seconds


class DatabaseGauges:
    """Gauges read from the database at scrape time; the endpoint refreshes them just before each scrape.

    The query is async and a collector's ``collect`` is not, so the endpoint
    reads and this only reports. A failed read leaves the gauges out of that
    scrape rather than repeating a stale number as if it were current.
    """

    def __init__(self) -> None:
        self.pending_approvals: int | None = None
        self.webhook_backlog: int | None = None

    async def refresh(self, db: Database) -> None:
        try:
            async with db.session() as session:
                pending = await session.scalar(
                    select(func.count())
                    .select_from(Approval)
                    .where(Approval.status == ApprovalStatus.PENDING, Approval.expires_at > utcnow())
                )
                # Due now or waiting for a retry: every event a subscriber has not received yet.
                backlog = await session.scalar(
                    select(func.count())
                    .select_from(WebhookDelivery)
                    .where(WebhookDelivery.status == DeliveryStatus.PENDING)
                )
        except (SQLAlchemyError, OSError):
            log.warning("metrics: could not read the pending approvals and webhook backlog", exc_info=True)
            self.pending_approvals = self.webhook_backlog = None
            return
        self.pending_approvals, self.webhook_backlog = int(pending or 0), int(backlog or 0)

    def collect(self) -> Iterable[Metric]:
        if self.pending_approvals is not None:
            yield GaugeMetricFamily(
                "companion_pending_approvals",
                "Approvals waiting for a person's decision and not yet expired (all replicas: the same number).",
                value=self.pending_approvals,
            )
        if self.webhook_backlog is not None:
            yield GaugeMetricFamily(
                "companion_webhook_backlog",
                "Webhook deliveries not yet delivered, due now or waiting for a retry (all replicas: the same).",
                value=self.webhook_backlog,
            )


class Metrics:
    """One Companion's metrics and the hooks the call path reports through."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tool_calls = Counter(
            "companion_tool_calls",
            "Tool calls answered, by app, tool, the rules' decision (none: not reached) and outcome.",
            ["app", "tool", "decision", "outcome"],
            registry=self.registry,
        )
        self.phase_seconds = Histogram(
            "companion_call_phase_seconds",
            "Time a tool call spent in each phase; a phase a call did not go through is not observed.",
            ["phase"],
            buckets=PHASE_BUCKETS,
            registry=self.registry,
        )
        self.token_refresh_failures = Counter(
            "companion_token_refresh_failures",
            "OAuth token refreshes that failed, a revoked grant included, by app.",
            ["app"],
            registry=self.registry,
        )
        self.loop_lag = Histogram(
            "companion_event_loop_lag_seconds",
            "How late this worker's event loop woke a task that asked to wake on time (server/observability/loop.py).",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.database = DatabaseGauges()
        self.registry.register(self.database)
        ProcessCollector(registry=self.registry)
        # A full collection pauses the loop; how often they run explains many a lag.
        GCCollector(registry=self.registry)
        # Every phase shows from the start, at zero, so a dashboard need not wait for the first call of each.
        for phase in PHASES:
            self.phase_seconds.labels(phase)

    def call_answered(self, app: str, tool: str, decision: str, outcome: str) -> None:
        self.tool_calls.labels(app, tool, decision, outcome).inc()

    @contextmanager
    def phase(self, name: Phase) -> Iterator[PhaseTimer]:
        """Time the block as the phase ``name``, and trace it as a span nested in the SDK's ``tools/call`` one."""
        timer = PhaseTimer()
        with tracer.start_as_current_span(f"companion.{name}"):
            started = time.perf_counter()
            try:
                yield timer
            finally:
                self.phase_seconds.labels(name).observe(max(0.0, time.perf_counter() - started - timer.excluded))

    def token_refresh_failed(self, app: str) -> None:
        self.token_refresh_failures.labels(app).inc()

    async def exposition(self, db: Database) -> bytes:
        await self.database.refresh(db)
        return generate_latest(self.registry)


def metrics_routes(metrics: Metrics, db: Database, token: SecretStr | None) -> list[Route]:
    """``GET /metrics``: off (404) unless ``COMPANION_METRICS_TOKEN`` (``token``) is set, then for its bearer only.

    ``metrics`` are the server's: the gateway and the token keeper report into that one object.
    """

    async def endpoint(request: Request) -> Response:
        expected = token.get_secret_value().strip() if token else ""
        if not expected:
            # Off looks exactly like a path that does not exist.
            raise HTTPException(status_code=404)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            raise HTTPException(
                status_code=401, detail="A valid metrics token is required.", headers={"WWW-Authenticate": "Bearer"}
            )
        body = await metrics.exposition(db)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [Route("/metrics", endpoint, methods=["GET"], name="metrics")]

"""Sending the phases' spans somewhere: an OpenTelemetry exporter chosen by the standard ``OTEL_*`` variables.

Off by default. Unless ``OTEL_TRACES_EXPORTER`` names an exporter, no SDK is
loaded and the spans of ``metrics.py`` (auth, decision, approval wait, adapter,
audit) cost next to nothing and go nowhere. When it does (``console``,
``otlp_proto_http`` from the ``otel`` extra, or any exporter a package
registers under the SDK's entry points, such as ``otlp`` for gRPC), the
OpenTelemetry SDK is set up as its own auto-configuration would: the resource
from ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``, batching from
``OTEL_BSP_*``, the exporter's endpoint and headers from its own
``OTEL_EXPORTER_*`` variables. ``OTEL_SDK_DISABLED=true`` turns it off again.
Under ``opentelemetry-instrument``, which sets a provider first, this leaves
that provider alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.metadata import entry_points

from opentelemetry import trace

from server.settings import SettingsError

SERVICE_NAME = "harmony-companion"
EXPORTERS = "opentelemetry_traces_exporter"  # the entry-point group the SDK looks exporters up in


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = (name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(","))
    return [name for name in names if name and name != "none"]


def configure_tracing(environ: Mapping[str, str] = os.environ) -> bool:
    """Install a tracer provider exporting to what ``OTEL_TRACES_EXPORTER`` names; False when it names none."""
    names = exporter_names(environ)
    if not names or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise SettingsError(
            "OTEL_TRACES_EXPORTER: exporting spans needs the OpenTelemetry SDK: pip install 'harmony-companion[otel]'"
        ) from None
    exporters = []
    for name in names:
        found = entry_points(group=EXPORTERS, name=name)
        if not found:
            raise SettingsError(
                f"OTEL_TRACES_EXPORTER: no exporter {name!r} is installed (console is built in; otlp_proto_http "
                "comes with the otel extra)"
            )
        exporters.append(next(iter(found)).load()())
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True

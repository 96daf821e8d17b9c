"""OpenTelemetry and JSON logs for a service, configured by the standard OTEL_* variables.

OTEL_TRACES_EXPORTER picks the exporter: `otlp` (default, e.g. Jaeger), `zipkin` (the local stack), `console`, `none`.
Endpoints come from OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_ZIPKIN_ENDPOINT as the SDK reads them.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from pythonjsonlogger.json import JsonFormatter

_configured = False


def _exporter(name: str) -> SpanExporter | None:
    match name:
        case "none" | "":
            return None
        case "console":
            return ConsoleSpanExporter()
        case "zipkin":
            from opentelemetry.exporter.zipkin.json import ZipkinExporter

            return ZipkinExporter()
        case "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            return OTLPSpanExporter()
        case _:
            raise ValueError(f"OTEL_TRACES_EXPORTER={name!r}: use otlp, zipkin, console or none")


def setup_tracing(service: str, *, extra_processors: list[SpanProcessor] | None = None) -> TracerProvider:
    """Install the process's tracer provider once (later calls return it)."""
    global _configured
    provider = trace.get_tracer_provider()
    if _configured and isinstance(provider, TracerProvider):
        return provider
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)
    exporter = _exporter(os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")[0].strip())
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    for processor in extra_processors or []:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _configured = True
    return provider


class _TraceIds(logging.Filter):
    """Stamp every record with the current trace and span ids so logs and traces join up."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else ""
        record.span_id = format(context.span_id, "016x") if context.is_valid else ""
        return True


def setup_logging(service: str, level: str | None = None) -> None:
    """JSON lines on stderr. Log ids and codes, never a child's or a person's details."""
    handler = logging.StreamHandler(sys.stderr)
    fields: dict[str, Any] = {"service": service}
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields=fields,
        )
    )
    handler.addFilter(_TraceIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level or os.environ.get("LOG_LEVEL", "INFO"))
    # aiokafka reports every reconnect attempt at ERROR; keep it for warnings and worse.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL if root.level > logging.WARNING else logging.WARNING)

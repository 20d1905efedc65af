"""OpenTelemetry spans per request and per stage; off unless an OTLP endpoint is configured.

The ingress owns a private ``TracerProvider`` (it does not replace a global one Ray or the host
may have set). Stage spans are children of the request span through the context asyncio copies
into each task the walker starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = ["Tracer"]


class Tracer:
    """Spans for one workbook's ingress: real ones with a processor, no-op spans without."""

    def __init__(self, workbook: str, *, otlp_endpoint: str | None = None,
                 processor: SpanProcessor | None = None) -> None:
        self.provider: TracerProvider | None = None
        if processor is None and otlp_endpoint:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint))
        if processor is not None:
            self.provider = TracerProvider(resource=Resource.create(
                {"service.name": "nux", "nux.workbook": workbook}))
            self.provider.add_span_processor(processor)
            self._tracer: trace.Tracer = self.provider.get_tracer("nux_runtime.serve")
        else:
            self._tracer = trace.NoOpTracer()

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[trace.Span]:
        with self._tracer.start_as_current_span(f"nux {name}", attributes=dict(attributes or {})
                                                ) as span:
            yield span

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()

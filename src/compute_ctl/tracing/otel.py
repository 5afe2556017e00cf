"""The OpenTelemetry side of `compute_ctl.tracing`: the SDK's tracer provider with a batch
processor and the OTLP/HTTP (protobuf) exporter, all configured from the standard `OTEL_*`
variables, and W3C trace-context propagation, as upstream sets them up.

Imported only by `tracing.load()` when an exporter is configured (`docs/deploying.md`,
"Traces"). Spans are exported from the batch processor's thread: a slow or unreachable
collector never blocks the compute; the exit waits for it at most `tracing.FLUSH_TIMEOUT`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from compute_ctl.tracing.types import AttrValue, Span

log = logging.getLogger("compute_ctl.tracing")

SERVICE = "compute_ctl"
DEFAULT_ENDPOINT = "http://localhost:4318"


class OtelBackend:
    def __init__(self, environ: Mapping[str, str]) -> None:
        protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        )
        if protocol and protocol != "http/protobuf":
            log.warning("OTLP protocol %r is not supported: using http/protobuf", protocol)
        exporter = OTLPSpanExporter()  # endpoint, headers, timeout… from OTEL_EXPORTER_OTLP_*
        # The resource also takes OTEL_RESOURCE_ATTRIBUTES; the service is compute_ctl.
        self.provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: SERVICE}), shutdown_on_exit=False
        )
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("compute_ctl")
        self.propagator = TraceContextTextMapPropagator()
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
            environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/") + "/v1/traces"
        )
        log.info("tracing: exporting spans over OTLP/HTTP to %s", endpoint)

    def start(
        self, name: str, attrs: dict[str, AttrValue], parent: object | None, server: bool
    ) -> contextlib.AbstractContextManager[Span]:
        context = parent if isinstance(parent, otel_context.Context) else None
        return self.tracer.start_as_current_span(
            name,
            context=context,
            kind=trace.SpanKind.SERVER if server else trace.SpanKind.INTERNAL,
            attributes=attrs,
        )

    def extract(self, carrier: Mapping[str, str]) -> object | None:
        return self.propagator.extract(dict(carrier))

    def current(self) -> object:
        return otel_context.get_current()

    def ids(self) -> tuple[str, str] | None:
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"

    def flush(self, timeout: float) -> bool:
        """Shut the provider down (exports what is queued) in a thread; False when it did not
        finish within `timeout` seconds (the thread is a daemon: the exit goes on)."""
        done = threading.Event()

        def shut_down() -> None:
            with contextlib.suppress(Exception):
                self.provider.shutdown()
            done.set()

        threading.Thread(target=shut_down, name="otel-shutdown", daemon=True).start()
        return done.wait(timeout)

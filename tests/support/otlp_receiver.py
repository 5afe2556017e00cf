"""A small OTLP/HTTP trace receiver for the tests: what a collector (Jaeger's port 4318, the
OpenTelemetry Collector) receives from compute_ctl, decoded with opentelemetry-proto.

It listens on a free port of 127.0.0.1, accepts `POST /v1/traces` (protobuf, gzip or not) and
keeps every span, so tests can look at names, parents and attributes of a real export.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str  # '' for a root span
    kind: str  # SERVER, INTERNAL, ...
    attributes: dict[str, Any]
    service: str
    start_ns: int
    status_code: int


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


@dataclass
class Receiver:
    url: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received = ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        kind=SpanProto.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        service=str(resource.get("service.name", "")),
                        start_ns=span.start_time_unix_nano,
                        status_code=span.status.code,
                    )
                    with self.lock:
                        self.spans.append(received)

    def named(self, name: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.name == name]

    def one(self, name: str) -> ReceivedSpan:
        found = self.named(name)
        assert len(found) == 1, f"{len(found)} spans named {name!r}: {self.tree()}"
        return found[0]

    def wait_for(self, name: str, timeout: float = 30.0) -> ReceivedSpan:
        deadline = time.monotonic() + timeout
        while not self.named(name):
            if time.monotonic() > deadline:
                raise AssertionError(f"no span {name!r} received: {self.tree()}")
            time.sleep(0.02)
        return self.named(name)[0]

    def children(self, parent: ReceivedSpan) -> list[ReceivedSpan]:
        with self.lock:
            found = [s for s in self.spans if s.parent_id == parent.span_id]
        return sorted(found, key=lambda s: s.start_ns)

    def tree(self, root: ReceivedSpan | None = None, depth: int = 0) -> str:
        """The spans as an indented tree (a root's parent outside the export is not shown)."""
        if root is None:
            with self.lock:
                ids = {s.span_id for s in self.spans}
                roots = sorted(
                    (s for s in self.spans if s.parent_id not in ids), key=lambda s: s.start_ns
                )
            return "\n".join(self.tree(r) for r in roots)
        lines = ["  " * depth + root.name]
        lines += [self.tree(child, depth + 1) for child in self.children(root)]
        return "\n".join(lines)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.end_headers()
                return
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            receiver.add(request)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            del format, args

    return Handler


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(Receiver("")))
    receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_collector() -> Iterator[str]:
    """A collector that accepts connections and never answers (a hung or overloaded one)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def closed_port_url() -> str:
    """A URL nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

"""Spans around the work of a compute, exported over OTLP/HTTP only when an exporter is named.

Everything else in compute_ctl calls this one small API: `span("name", **attrs)` as a context
manager, `parent_from_environ()`/`parent_from_headers()` for W3C trace contexts, and
`hand_over`/`take_over` to let a request's span parent work done elsewhere (the start-up a
`/configure` asked for). Until `load()` runs, and for good when no exporter is configured,
a span only names itself in the log line prefix (`docs/deploying.md`, "Traces"): nothing of
OpenTelemetry is imported, so `/status` answers as early as without tracing. The OpenTelemetry
side lives in `tracing/otel.py`, imported by `load()` in a worker thread after the listeners
serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
from collections.abc import Iterator, Mapping

from compute_ctl.tracing.types import AttrValue, Backend, Span

log = logging.getLogger(__name__)

FLUSH_TIMEOUT = 2.0
"""Seconds the exit waits for the last spans to reach the collector (as upstream's 2 s)."""

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class _NoSpan:
    __slots__ = ()

    def set_attribute(self, key: str, value: AttrValue) -> None:
        del key, value


NO_SPAN: Span = _NoSpan()

_backend: Backend | None = None
_names: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "compute_ctl_span_names", default=()
)
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "compute_ctl_request_id", default=None
)
"""The `x-request-id` of the HTTP request being served (for JSON log lines)."""
_handed_over: dict[str, object] = {}


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for trace export: an OTLP endpoint or
    `OTEL_TRACES_EXPORTER=otlp`, unless `OTEL_SDK_DISABLED=true`."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if any(environ.get(name) for name in ENDPOINT_VARS):
        return True
    exporters = environ.get("OTEL_TRACES_EXPORTER", "")
    return "otlp" in {part.strip().lower() for part in exporters.split(",")}


def active() -> bool:
    return _backend is not None


async def load(environ: Mapping[str, str] = os.environ) -> bool:
    """Start exporting when the environment asks for it (imports in a worker thread, so HTTP
    keeps being served). A setup failure is logged and leaves tracing off."""
    global _backend  # noqa: PLW0603 - one exporter per process
    if _backend is not None or not wanted(environ):
        return _backend is not None
    try:
        _backend = await asyncio.to_thread(_make_backend, dict(environ))
    except Exception as exc:
        log.error("tracing disabled: could not set up the OTLP exporter: %s", exc)
        return False
    return True


def _make_backend(environ: dict[str, str]) -> Backend:
    from compute_ctl.tracing.otel import OtelBackend  # noqa: PLC0415 - only when configured

    return OtelBackend(environ)


def flush(timeout: float = FLUSH_TIMEOUT) -> None:
    """Send what is left, waiting at most `timeout` seconds; never raises."""
    if _backend is None:
        return
    log.info("shutting down tracing")
    if not _backend.flush(timeout):
        log.error("timed out while shutting down tracing, exiting anyway")


def _render(name: str, attrs: Mapping[str, AttrValue]) -> str:
    if not attrs:
        return name
    return name + "{" + " ".join(f"{key}={value}" for key, value in attrs.items()) + "}"


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: object | None = None,
    server: bool = False,
    prefix: bool = True,
    **attrs: AttrValue,
) -> Iterator[Span]:
    """A span around the block; unless `prefix` is false, its name and `attrs` also prefix the
    block's log lines, as upstream's `name{field=value}:` (`docs/compatibility.md`, "Log
    lines"). `parent` (from `parent_from_*` or `take_over`) replaces the current span as the
    parent; `server` marks the span of an HTTP request."""
    names = _names.get()
    token = _names.set((*names, _render(name, attrs)) if prefix else names)
    try:
        if _backend is None:
            yield NO_SPAN
        else:
            with _backend.start(name, attrs, parent, server) as current:
                yield current
    finally:
        _names.reset(token)


@contextlib.contextmanager
def log_scope(rendered: str) -> Iterator[None]:
    """Prefix the block's log lines with `rendered` (a span's `name{field=value}` that is not
    exported, such as upstream's `request{…}` span of an HTTP request)."""
    token = _names.set((*_names.get(), rendered))
    try:
        yield
    finally:
        _names.reset(token)


def span_prefix() -> str:
    """`outer:inner{k=v}` of the spans the caller runs in ('' outside any)."""
    return ":".join(_names.get())


def ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, when exporting."""
    return _backend.ids() if _backend is not None else None


def parent_from_headers(carrier: Mapping[str, str]) -> object | None:
    """The W3C trace context of `traceparent`/`tracestate` in `carrier` (None: no export)."""
    return _backend.extract(carrier) if _backend is not None else None


def parent_from_environ(environ: Mapping[str, str] = os.environ) -> object | None:
    """`TRACEPARENT`/`TRACESTATE` of the environment, as upstream reads them for the start."""
    carrier = {
        key: environ[var]
        for key, var in (("traceparent", "TRACEPARENT"), ("tracestate", "TRACESTATE"))
        if var in environ
    }
    if not carrier or _backend is None:
        return None
    log.info("got startup tracing context from env variables")
    return _backend.extract(carrier)


def hand_over(key: str) -> None:
    """Remember the current span as the parent of the next `take_over(key)` (a /configure
    request hands its span to the start-up or re-configure it causes)."""
    if _backend is not None:
        _handed_over[key] = _backend.current()


def take_over(key: str) -> object | None:
    return _handed_over.pop(key, None)


def detached() -> contextvars.Context:
    """A copy of the current context outside every span: long-running background tasks
    started during the start-up neither prefix their logs with it nor parent spans on it."""
    context = contextvars.copy_context()
    context.run(_names.set, ())
    if _backend is not None:
        context.run(_detach_otel)
    return context


def _detach_otel() -> None:
    from opentelemetry import context as otel_context  # noqa: PLC0415 - loaded by now

    otel_context.attach(otel_context.Context())

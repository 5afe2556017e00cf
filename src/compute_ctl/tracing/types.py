"""The shapes shared by the tracing API and its OpenTelemetry implementation."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Protocol

AttrValue = str | int | float | bool


class Span(Protocol):
    def set_attribute(self, key: str, value: AttrValue) -> None: ...


class Backend(Protocol):
    """What `tracing/otel.py` provides once loaded."""

    def start(
        self, name: str, attrs: dict[str, AttrValue], parent: object | None, server: bool
    ) -> contextlib.AbstractContextManager[Span]: ...

    def extract(self, carrier: Mapping[str, str]) -> object | None: ...

    def current(self) -> object: ...

    def ids(self) -> tuple[str, str] | None: ...

    def flush(self, timeout: float) -> bool: ...

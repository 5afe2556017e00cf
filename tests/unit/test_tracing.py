"""When compute_ctl exports traces, and what a span costs without an exporter."""

from __future__ import annotations

import pytest

from compute_ctl import tracing


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "false"}, True),
        ({"OTEL_SERVICE_NAME": "x"}, False),
    ],
)
def test_export_only_when_an_exporter_is_configured(environ: dict[str, str], wanted: bool) -> None:
    assert tracing.wanted(environ) is wanted


def test_without_an_exporter_spans_only_name_the_log_prefix() -> None:
    assert not tracing.active()
    assert tracing.span_prefix() == ""
    with tracing.span("start_compute") as outer:
        outer.set_attribute("ignored", 1)
        with tracing.span("get_basebackup", lsn="0/1", protocol="libpq"):
            assert tracing.span_prefix() == "start_compute:get_basebackup{lsn=0/1 protocol=libpq}"
        with tracing.span("GET /status", prefix=False):
            assert tracing.span_prefix() == "start_compute"
        assert tracing.ids() is None
        assert tracing.detached().run(tracing.span_prefix) == ""
    assert tracing.span_prefix() == ""
    assert tracing.parent_from_environ({"TRACEPARENT": "00-" + "1" * 32 + "-" + "2" * 16}) is None
    tracing.hand_over("configure")
    assert tracing.take_over("configure") is None

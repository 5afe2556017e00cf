"""`/metrics` text as upstream prints it: integer values without `.0`, upstream's HELP texts."""

from __future__ import annotations

from compute_ctl.metrics import PromMetrics


def test_integer_values_are_printed_as_integers_and_fractions_kept() -> None:
    prom = PromMetrics(build_tag="t")
    prom.cplane_requests.labels(rpc="GetConfig", http_status="200").inc(3)
    prom.pg_current_downtime_ms.set(12.5)
    prom.installed_extensions.labels("odd 1.0", "1.0", "true").set(2)
    prom.audit_log_dir_size.set(-4)
    lines = prom.render().decode().splitlines()
    assert 'compute_ctl_up{build_tag="t",status="empty"} 1' in lines
    assert 'compute_ctl_cplane_requests_total{http_status="200",rpc="GetConfig"} 3' in lines
    assert "compute_pg_current_downtime_ms 12.5" in lines
    assert (
        'compute_installed_extensions{extension_name="odd 1.0",owned_by_superuser="true",'
        'version="1.0"} 2'
    ) in lines
    assert "compute_audit_log_dir_size -4" in lines
    assert "pg_cctl_pagestream_request_errors_total 0" in lines


def test_help_texts_are_upstreams() -> None:
    text = PromMetrics().render().decode()
    for line in (
        "# HELP compute_ctl_up Whether compute_ctl is running",
        "# HELP compute_ctl_lfc_prewarms_total Total number of LFC prewarms requested by "
        "compute_ctl or autoprewarm option",
        "# HELP compute_ctl_lfc_offloads_total Total number of LFC offloads requested by "
        "compute_ctl or lfc_offload_period_seconds option",
        "# HELP pg_cctl_pagestream_request_errors_total Number of PageStream request errors "
        "reported by the postgres process",
    ):
        assert line in text.splitlines()

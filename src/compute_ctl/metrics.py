"""Prometheus metrics served at `GET /metrics`, with upstream's names and labels.

Each compute owns its registry (tests run several in one process). Unlabelled counters are
exposed at 0 from the start, and no `_created` series are emitted, so scrapers comparing exact
values see what upstream shows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

from compute_ctl.state import ComputeStatus

disable_created_metrics()  # type: ignore[no-untyped-call]

_INTEGER_VALUE = re.compile(rb"^([^#\n].* -?[0-9]+)\.0$", re.MULTILINE)
"""A sample line whose value is an integer written as a float: the value is its last word."""

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
BUILD_TAG = os.environ.get("BUILD_TAG", "latest")


class PromMetrics:
    def __init__(self, build_tag: str = BUILD_TAG) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.build_tag = build_tag
        r = self.registry
        self.up = Gauge(
            "compute_ctl_up", "Whether compute_ctl is running", ["build_tag", "status"], registry=r
        )
        self.installed_extensions = Gauge(
            "compute_installed_extensions",
            "Number of databases where the version of extension is installed",
            ["extension_name", "version", "owned_by_superuser"],
            registry=r,
        )
        self.cplane_requests = Counter(
            "compute_ctl_cplane_requests",
            "Total number of control plane requests made by compute_ctl by status",
            ["rpc", "http_status"],
            registry=r,
        )
        self.remote_ext_requests = Counter(
            "compute_ctl_remote_ext_requests",
            "Total number of requests made by compute_ctl to download extensions from S3 proxy "
            "by status",
            ["http_status", "filename"],
            registry=r,
        )
        self.db_migration_failed = Counter(
            "compute_ctl_db_migration_failed",
            "Total number of failed database migrations",
            ["migration_id"],
            registry=r,
        )
        self.audit_log_dir_size = Gauge(
            "compute_audit_log_dir_size", "Size of audit log directory in bytes", registry=r
        )
        self.pg_current_downtime_ms = Gauge(
            "compute_pg_current_downtime_ms",
            "Non-cumulative duration of Postgres downtime in ms; resets after successful check",
            registry=r,
        )
        self.pg_downtime_ms_total = Counter(
            "compute_pg_downtime_ms",
            "Cumulative duration of Postgres downtime in ms",
            registry=r,
        )
        self.lfc_prewarms = Counter(
            "compute_ctl_lfc_prewarms",
            "Total number of LFC prewarms requested by compute_ctl or autoprewarm option",
            registry=r,
        )
        self.lfc_prewarm_errors = Counter(
            "compute_ctl_lfc_prewarm_errors", "Total number of LFC prewarm errors", registry=r
        )
        self.lfc_offloads = Counter(
            "compute_ctl_lfc_offloads",
            "Total number of LFC offloads requested by compute_ctl or lfc_offload_period_seconds "
            "option",
            registry=r,
        )
        self.lfc_offload_errors = Counter(
            "compute_ctl_lfc_offload_errors", "Total number of LFC offload errors", registry=r
        )
        self.pagestream_request_errors = Counter(
            "pg_cctl_pagestream_request_errors",
            "Number of PageStream request errors reported by the postgres process",
            registry=r,
        )
        self.configure_statement_timeout_errors = Counter(
            "pg_cctl_configure_statement_timeout_errors",
            "Number of compute configuration errors due to Postgres statement timeouts.",
            registry=r,
        )
        self.attached = Gauge(
            "pg_cctl_attached",
            "Compute node attached status (1 if attached)",
            ["pg_compute_id", "pg_instance_id", "tenant_id", "timeline_id"],
            registry=r,
        )
        self.set_status(ComputeStatus.EMPTY)

    def set_status(self, status: ComputeStatus) -> None:
        """Exactly one `compute_ctl_up` sample, labelled with the current status."""
        self.up.clear()
        self.up.labels(build_tag=self.build_tag, status=str(status)).set(1)

    def set_attached(
        self, compute_id: str, instance_id: str, tenant_id: str, timeline_id: str
    ) -> None:
        """Exactly one `pg_cctl_attached` sample, for the spec now in force (lakebase)."""
        self.attached.clear()
        self.attached.labels(compute_id, instance_id, tenant_id, timeline_id).set(1)

    def render(self) -> bytes:
        """The exposition text; families without samples are left out and integer values have
        no `.0`, as upstream prints them (`1`, not prometheus_client's `1.0`)."""
        return _INTEGER_VALUE.sub(rb"\1", generate_latest(_NonEmpty(self.registry)))


class _NonEmpty:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        return (family for family in self._registry.collect() if family.samples)

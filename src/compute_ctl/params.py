"""The validated command line of compute_ctl, as every layer below the entry point sees it.

`cli` builds one `Params` from the flags and the environment; nothing else reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from compute_ctl.failpoints import Failpoints

AUTOSCALING_ENV = "AUTOSCALING"
CGEXEC_PREFIX = ("cgexec", "-g", "memory:neon-postgres")


@dataclass(frozen=True)
class Params:
    """Everything the command line says, validated."""

    pgbin: str
    pgdata: Path
    connstr: str
    compute_id: str | None
    config_path: Path | None
    spec_path: Path | None
    control_plane_uri: str | None
    external_http_port: int
    internal_http_port: int
    remote_ext_base_url: str | None
    privileged_role_name: str
    cgroup: str
    filecache_connstr: str
    vm_monitor_addr: str
    resize_swap_on_bind: bool
    set_disk_quota_for_fs: str | None
    installed_extensions_collection_interval: int
    dev: bool
    pg_init_timeout: float | None
    lakebase_mode: bool
    autoscaling: bool = False
    """`AUTOSCALING` is set: a NeonVM, where Postgres runs in the `neon-postgres` memory cgroup
    and the vm-monitor serves the autoscaler-agent. Read once, when the flags are parsed."""
    instance_id: str | None = None
    """`INSTANCE_ID`: the lakebase instance (Databricks' endpoint id for Postgres, a label of
    `pg_cctl_attached`)."""
    failpoints: Failpoints = field(default_factory=Failpoints, compare=False)
    """The testing builds' failpoints, off unless `COMPUTE_CTL_TESTING` is set
    (`compute_ctl/failpoints.py`)."""

    @property
    def pg_bindir(self) -> Path:
        """Where `initdb`, `pg_ctl`, `pg_config`… live: next to `postgres`."""
        return Path(self.pgbin).parent

    @property
    def cgroup_prefix(self) -> tuple[str, ...]:
        """The argv prefix that starts a child in the vm-monitor's cgroup (in a VM only)."""
        return CGEXEC_PREFIX if self.autoscaling else ()

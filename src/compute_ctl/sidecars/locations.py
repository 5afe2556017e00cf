"""Where pgbouncer and local_proxy live, and how compute_ctl reaches pgbouncer's admin console.

The defaults are upstream's fixed paths, which Neon's images are built around. Tests and
non-standard installations move them with environment variables, all read once when the
compute starts (an empty value counts as unset):

- `COMPUTE_CTL_PGBOUNCER_INI`: the pgbouncer.ini compute_ctl rewrites (default
  `/etc/pgbouncer.ini` when `AUTOSCALING` is set, i.e. in a VM, else
  `/var/db/postgres/pgbouncer/pgbouncer.ini`, the volume a pod shares with pgbouncer);
- `COMPUTE_CTL_PGBOUNCER_PID_FILE`: pgbouncer's pid file (default `/tmp/pgbouncer.pid`);
- `COMPUTE_CTL_PGBOUNCER_ADMIN`: a libpq connection string for the admin console (default
  `host=/tmp port=6432 dbname=pgbouncer user=pgbouncer` in a VM, else
  `host=localhost port=6432 dbname=pgbouncer user=postgres sslmode=disable`);
- `COMPUTE_CTL_LOCAL_PROXY_DIR`: the directory holding local_proxy's `config.json` and `pid`
  (default `/etc/local_proxy`).

`PGBOUNCER_PASSWORD`, as upstream, is the admin console's password outside VMs. It is passed to
the driver separately and never appears in a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

INI_ENV = "COMPUTE_CTL_PGBOUNCER_INI"
PID_FILE_ENV = "COMPUTE_CTL_PGBOUNCER_PID_FILE"
ADMIN_ENV = "COMPUTE_CTL_PGBOUNCER_ADMIN"
LOCAL_PROXY_DIR_ENV = "COMPUTE_CTL_LOCAL_PROXY_DIR"
PASSWORD_ENV = "PGBOUNCER_PASSWORD"  # noqa: S105 - the variable's name

VM_INI = Path("/etc/pgbouncer.ini")
POD_INI = Path("/var/db/postgres/pgbouncer/pgbouncer.ini")
PGBOUNCER_PID_FILE = Path("/tmp/pgbouncer.pid")  # noqa: S108 - upstream's fixed path
VM_ADMIN = "host=/tmp port=6432 dbname=pgbouncer user=pgbouncer"
POD_ADMIN = "host=localhost port=6432 dbname=pgbouncer user=postgres sslmode=disable"
LOCAL_PROXY_DIR = Path("/etc/local_proxy")


@dataclass(frozen=True)
class SidecarLocations:
    pgbouncer_ini: Path
    pgbouncer_pid_file: Path
    pgbouncer_admin: str
    local_proxy_dir: Path
    pgbouncer_password: str | None = field(default=None, repr=False)

    @property
    def local_proxy_config(self) -> Path:
        return self.local_proxy_dir / "config.json"

    @property
    def local_proxy_pid_file(self) -> Path:
        return self.local_proxy_dir / "pid"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], *, vm: bool) -> SidecarLocations:
        """The locations the environment names, else the defaults of a VM (`vm`: the
        `AUTOSCALING` flag compute_ctl read at start) or of a pod."""

        def get(name: str) -> str | None:
            return environ.get(name) or None

        ini = get(INI_ENV)
        pid_file = get(PID_FILE_ENV)
        proxy_dir = get(LOCAL_PROXY_DIR_ENV)
        return cls(
            pgbouncer_ini=Path(ini) if ini else (VM_INI if vm else POD_INI),
            pgbouncer_pid_file=Path(pid_file) if pid_file else PGBOUNCER_PID_FILE,
            pgbouncer_admin=get(ADMIN_ENV) or (VM_ADMIN if vm else POD_ADMIN),
            local_proxy_dir=Path(proxy_dir) if proxy_dir else LOCAL_PROXY_DIR,
            # In a VM the console is reached over a unix socket as pgbouncer's own user,
            # without a password (upstream ignores PGBOUNCER_PASSWORD there).
            pgbouncer_password=None if vm else environ.get(PASSWORD_ENV),
        )

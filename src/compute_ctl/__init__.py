"""compute_ctl: the supervisor of a PostgreSQL compute node in a separated storage/compute
architecture. It turns a compute spec into a running, reconciled Postgres and serves the HTTP API
the control plane talks to."""

from __future__ import annotations

__version__ = "0.1.0"

"""pgbouncer and local_proxy: the two programs Neon runs beside Postgres.

compute_ctl does not start them; it only keeps them in step with the spec (pgbouncer's settings,
local_proxy's JWKS configuration) and stops them when the compute terminates, so that no client
is left talking to a pooler whose Postgres is gone. Everything here is best effort in the same
places as upstream: a compute without pgbouncer or local_proxy runs normally, with one log line.
"""

from __future__ import annotations

from compute_ctl.sidecars.locations import SidecarLocations
from compute_ctl.sidecars.service import Sidecars

__all__ = ["SidecarLocations", "Sidecars"]

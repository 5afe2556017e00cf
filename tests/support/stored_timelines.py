"""A timeline stored for the pageserver stand-ins without running initdb.

The storage tests need a data directory whose gzip stream spans many chunks, not a startable
cluster: a few files of incompressible relation data make it, in milliseconds.
"""

from __future__ import annotations

import json
import random

from compute_ctl.spec.types import Lsn, TenantId, TimelineId
from compute_dev.standins.timelines import Timeline, TimelineStore


def store_noise_timeline(
    store: TimelineStore,
    lsn: Lsn,
    *,
    relation_bytes: int,
    seed: int,
    extra_files: dict[str, str] | None = None,
) -> Timeline:
    """A new timeline in `store` at `lsn`: PG_VERSION, pg_control and one relation file of
    `relation_bytes` random bytes (from `seed`), a WAL segment, and `extra_files` (name → text)."""
    tenant, timeline_id = TenantId.generate(), TimelineId.generate()
    directory = store.root / "tenants" / tenant / "timelines" / timeline_id
    pgdata = directory / "pgdata"
    noise = random.Random(seed)
    for sub in ("global", "base/1", "pg_wal/archive_status"):
        (pgdata / sub).mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("15\n")
    for name, text in (extra_files or {}).items():
        (pgdata / name).write_text(text)
    (pgdata / "global" / "pg_control").write_bytes(noise.randbytes(8192))
    (pgdata / "base" / "1" / "1259").write_bytes(noise.randbytes(relation_bytes))
    (pgdata / "pg_wal" / "000000010000000000000001").write_bytes(bytes(64 * 1024))
    record = {"tenant_id": tenant, "timeline_id": timeline_id, "lsn": str(lsn)}
    (directory / "timeline.json").write_text(json.dumps(record))
    found = store.get(tenant, timeline_id)
    assert found is not None
    return found

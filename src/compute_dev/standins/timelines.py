"""A development-only timeline store: what the pageserver stand-ins serve basebackups from.

A real pageserver reconstructs a data directory from WAL and layer files. The stand-ins do not
need that: a timeline here is simply a PostgreSQL data directory made by `initdb`, stored under
`ROOT/tenants/<tenant>/timelines/<timeline>/pgdata/`, plus a `timeline.json` that records the ids
and the LSN (the latest checkpoint location at creation). Because the stored directory is
complete (catalogs and relation files included, unlike a normal Neon basebackup), stock
PostgreSQL can start from the tarball it produces, which lets tests check the whole
fetch-and-unpack path end to end without Neon's Postgres.

The tarball imitates the pageserver's: GNU headers, mode 0600
files and 0755 directories, the same mtime ("now") on every entry, no `postgresql.conf`,
`neon.signal` and `zenith.signal` just before `global/pg_control`, which comes last but for the
WAL, and an explicit end-of-archive marker. It is generated on the fly in fixed-size chunks, so
serving a data directory of any size takes a bounded amount of memory.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from compute_ctl.spec.types import Lsn, TenantId, TimelineId
from compute_dev.pgbin import RunAs, find_pg_bin, server_user

DEFAULT_CHUNK_SIZE = 256 * 1024
"""The gRPC page_api's chunk size; the libpq stand-in may ask for smaller chunks."""

SUPERUSER = "cloud_admin"
"""The superuser Neon's initdb creates; compute_ctl connects as it."""

EXCLUDED_FILES = frozenset({"postgresql.conf", "postmaster.pid", "postmaster.opts"})
"""Top-level files never sent: compute_ctl writes its own postgresql.conf before unpacking, and
the postmaster files describe a server that is not running on the compute."""

SIGNAL_FILES = ("neon.signal", "zenith.signal")
"""Generated for every tarball (identical contents), so any stored copies are skipped."""

PG_CONTROL = PurePosixPath("global/pg_control")
WAL_DIR = "pg_wal"

_BLOCK = tarfile.BLOCKSIZE
_READ_SIZE = 1024 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip member (header + deflate + trailer)


class TimelineError(RuntimeError):
    """A timeline could not be created or read; says which and why."""


@dataclass(frozen=True)
class Timeline:
    """One stored timeline: its ids, the LSN a basebackup is taken at, and its data directory."""

    tenant_id: TenantId
    timeline_id: TimelineId
    lsn: Lsn
    datadir: Path

    def signal_text(self) -> bytes:
        """The contents of `neon.signal` / `zenith.signal`.

        The store does not track the record before `lsn`, so the previous LSN is unknown, which
        the pageserver writes as `invalid`.
        """
        return b"PREV LSN: invalid"

    def tar_chunks(self, *, gzip: bool, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
        """Stream the basebackup tarball in chunks of exactly `chunk_size` bytes (the last one
        may be shorter; none is empty).

        With `gzip` the whole stream is one gzip member at the fastest level, as the pageserver
        sends it. Nothing is read until the iterator is advanced, and at most about one chunk
        plus one read buffer is held at a time.
        """
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, not {chunk_size}")
        if gzip and self.prepared_path.is_file():
            yield from _file_chunks(self.prepared_path, chunk_size)
            return
        pending = bytearray()
        compressor = zlib.compressobj(1, zlib.DEFLATED, _GZIP_WBITS) if gzip else None
        for piece in self._tar_pieces():
            pending += compressor.compress(piece) if compressor is not None else piece
            while len(pending) >= chunk_size:
                yield bytes(pending[:chunk_size])
                del pending[:chunk_size]
        if compressor is not None:
            pending += compressor.flush()
        while pending:
            yield bytes(pending[:chunk_size])
            del pending[:chunk_size]

    @property
    def prepared_path(self) -> Path:
        """Where `prepare_gzip` keeps a ready-made gzip basebackup."""
        return self.datadir.parent / "basebackup.tar.gz"

    def prepare_gzip(self) -> Path:
        """Compress the basebackup once and serve that file from then on.

        On-the-fly gzip costs about 20 s per GiB of data here, which would make the stand-in,
        not the client, the bottleneck of a throughput benchmark. The stored data directory
        never changes, so the prepared file stays valid; delete it to compress on the fly again.
        """
        partial = self.prepared_path.with_suffix(".partial")
        with partial.open("wb") as out:
            for chunk in self.tar_chunks(gzip=True):
                out.write(chunk)
        partial.replace(self.prepared_path)
        return self.prepared_path

    def _tar_pieces(self) -> Iterator[bytes]:
        """The uncompressed tar stream, as headers and file-sized-or-smaller pieces."""
        mtime = _now()
        directories, files = self._entries()
        for rel in directories:
            yield _header(rel, tarfile.DIRTYPE, 0, mtime)
        late = [rel for rel in files if rel == PG_CONTROL or rel.parts[0] == WAL_DIR]
        early = [rel for rel in files if rel not in late]
        for rel in early:
            yield from self._file_entry(rel, mtime)
        signal = self.signal_text()
        for name in SIGNAL_FILES:
            yield _header(PurePosixPath(name), tarfile.REGTYPE, len(signal), mtime)
            yield signal + _padding(len(signal))
        # pg_control goes last but for the WAL, so a cut-off tarball cannot start.
        for rel in sorted(late, key=lambda r: (r != PG_CONTROL, r)):
            yield from self._file_entry(rel, mtime)
        yield bytes(2 * _BLOCK)

    def _entries(self) -> tuple[list[PurePosixPath], list[PurePosixPath]]:
        """Directories and regular files to send, relative to the data directory, sorted.

        Anything else (sockets, symlinks) is left out: a stored initdb directory has none.
        """
        if not self.datadir.is_dir():
            raise TimelineError(f"timeline {self.timeline_id}: no data directory {self.datadir}")
        directories: list[PurePosixPath] = []
        files: list[PurePosixPath] = []
        for root, dirnames, filenames in os.walk(self.datadir):
            dirnames.sort()
            base = PurePosixPath(Path(root).relative_to(self.datadir).as_posix())
            for name in dirnames:
                if (Path(root) / name).is_symlink():
                    continue
                directories.append(base / name)
            for name in sorted(filenames):
                rel = base / name
                if len(rel.parts) == 1 and (name in EXCLUDED_FILES or name in SIGNAL_FILES):
                    continue
                if stat.S_ISREG((Path(root) / name).lstat().st_mode):
                    files.append(rel)
        return directories, files

    def _file_entry(self, rel: PurePosixPath, mtime: int) -> Iterator[bytes]:
        path = self.datadir / rel
        with path.open("rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            yield _header(rel, tarfile.REGTYPE, size, mtime)
            left = size
            while left:
                data = handle.read(min(left, _READ_SIZE))
                if not data:
                    raise TimelineError(f"{path} shrank while it was being sent")
                left -= len(data)
                yield data
        yield _padding(size)


def _now() -> int:
    """The mtime of every entry of one tarball (a hook tests replace to compare bytes)."""
    return int(time.time())


def _header(rel: PurePosixPath, kind: bytes, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(str(rel))
    info.type = kind
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o600
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _file_chunks(path: Path, chunk_size: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def _padding(size: int) -> bytes:
    return bytes(-size % _BLOCK)


class TimelineStore:
    """Timelines on disk under one root directory; the same store can be shared by several
    stand-in listeners (libpq and gRPC), since every read goes to the files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, tenant_id: TenantId, timeline_id: TimelineId) -> Path:
        return self.root / "tenants" / str(tenant_id) / "timelines" / str(timeline_id)

    def create(
        self,
        *,
        tenant_id: TenantId | None = None,
        timeline_id: TimelineId | None = None,
        pg_bin: Path | None = None,
    ) -> Timeline:
        """Run initdb for a new timeline (random ids unless given) and record its LSN.

        As root, initdb runs as the unprivileged server user and the timeline directory is
        given to that user. `timeline.json` is written last, so a half-made timeline is never
        listed.
        """
        tenant = tenant_id if tenant_id is not None else TenantId.generate()
        timeline = timeline_id if timeline_id is not None else TimelineId.generate()
        bindir = find_pg_bin(pg_bin)
        user = server_user(announce=True)
        directory = self._dir(tenant, timeline)
        if directory.exists():
            raise TimelineError(f"timeline {tenant}/{timeline} already exists in {self.root}")
        # Every level must be traversable by the server user, who is not the creator as root.
        # The levels made here (all new, down to pgdata) are given to that user.
        made: list[Path] = []
        for level in (*reversed(directory.parents[:4]), directory):
            if not level.exists():
                level.mkdir(mode=0o755, parents=True)
                made.append(level)
        datadir = directory / "pgdata"
        datadir.mkdir(mode=0o700)
        user.chown(made[0])
        try:
            env = user.env({**os.environ, "LC_ALL": "C", "LANG": "C"})
            _run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(datadir),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                    "--no-sync",
                ],
                user,
                env,
                "initdb",
            )
            control = _run(
                [str(bindir / "pg_controldata"), "-D", str(datadir)],
                user,
                env,
                "pg_controldata",
            )
            lsn = _checkpoint_lsn(control)
            record = {"tenant_id": str(tenant), "timeline_id": str(timeline), "lsn": str(lsn)}
            partial = directory / "timeline.json.tmp"
            partial.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            user.chown(partial)
            partial.replace(directory / "timeline.json")
        except BaseException:
            # Leave no half-made timeline behind: the same ids must be usable again.
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return Timeline(tenant, timeline, lsn, datadir)

    def get(self, tenant_id: TenantId, timeline_id: TimelineId) -> Timeline | None:
        """The timeline, or None if the store has no (complete) timeline with these ids."""
        directory = self._dir(tenant_id, timeline_id)
        try:
            text = (directory / "timeline.json").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return _load(directory, text)

    def list(self) -> list[Timeline]:
        """Every complete timeline, ordered by tenant then timeline id."""
        found: list[Timeline] = []
        for record in sorted((self.root / "tenants").glob("*/timelines/*/timeline.json")):
            found.append(_load(record.parent, record.read_text(encoding="utf-8")))
        return found


def _load(directory: Path, text: str) -> Timeline:
    where = directory / "timeline.json"
    try:
        record: Any = json.loads(text)
        timeline = Timeline(
            TenantId(record["tenant_id"]),
            TimelineId(record["timeline_id"]),
            Lsn.parse(record["lsn"]),
            directory / "pgdata",
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise TimelineError(f"{where} is not a timeline record: {exc}") from exc
    if directory.name != timeline.timeline_id or directory.parent.parent.name != timeline.tenant_id:
        raise TimelineError(f"{where} names another timeline")
    return timeline


def _run(argv: list[str], user: RunAs, env: dict[str, str], what: str) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env, check=False, **user.popen_args()
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise TimelineError(f"{what} failed with exit status {result.returncode}: {detail}")
    return result.stdout


def _checkpoint_lsn(controldata: str) -> Lsn:
    for line in controldata.splitlines():
        label, _, value = line.partition(":")
        if label.strip() == "Latest checkpoint location":
            return Lsn.parse(value)
    raise TimelineError("pg_controldata printed no 'Latest checkpoint location'")

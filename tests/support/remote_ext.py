"""Test helpers for remote extensions: tar.zst archives built in memory, a private PostgreSQL
installation with writable share and library directories, and the extension-gateway stand-in
run inside the test process with requests counted and, on demand, held.

PostgreSQL (`pg_config` and `postgres` alike) computes its share and library directories
relative to its own executable, after resolving symbolic links. A tree holding *copies* of
those two programs, symbolic links to everything else, and real `share/.../extension` and
`lib` directories (filled with links to the system's files) is therefore a complete
installation whose extension directories the test owns.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from compute_ctl.remote_ext.index import go_arch
from compute_dev.pgbin import find_pg_bin
from compute_dev.standins.extension_gateway import base_url, serve

COPIED_PROGRAMS = ("pg_config", "postgres")


def tar_bytes(files: dict[str, bytes], *, links: dict[str, str] | None = None) -> bytes:
    """An uncompressed tar archive of regular files (and symbolic links, for refusals)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for name, data in files.items():
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in dirs:
                    dirs.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def tar_zst(
    files: dict[str, bytes], *, frames: int = 1, links: dict[str, str] | None = None
) -> bytes:
    """`files` as a zstd-compressed tar archive, split into `frames` zstd frames."""
    raw = tar_bytes(files, links=links)
    compressor = zstandard.ZstdCompressor()
    step = -(-len(raw) // frames)
    return b"".join(compressor.compress(raw[i : i + step]) for i in range(0, len(raw), step))


def pg_config_value(pg_bin: Path, flag: str) -> Path:
    out = subprocess.run(
        [str(pg_bin / "pg_config"), flag], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


@dataclass(frozen=True)
class PrivateInstall:
    bindir: Path
    sharedir: Path
    pkglibdir: Path
    pg_major: str

    @property
    def extension_dir(self) -> Path:
        return self.sharedir / "extension"

    @property
    def root(self) -> Path:
        return self.bindir.parent


def _link_entries(source: Path, target: Path, *, real: frozenset[str] = frozenset()) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if entry.name in real:
            continue
        (target / entry.name).symlink_to(entry)


def private_install(root: Path, pg_bin: Path | None = None) -> PrivateInstall:
    """A relocated copy of the system installation under `root` (see the module docstring)."""
    pg_bin = pg_bin or find_pg_bin()
    sharedir = pg_config_value(pg_bin, "--sharedir")
    pkglibdir = pg_config_value(pg_bin, "--pkglibdir")
    real_bindir = pg_bin.resolve()
    bindir = root / real_bindir.relative_to("/")
    bindir.mkdir(parents=True)
    for program in real_bindir.iterdir():
        if program.name in COPIED_PROGRAMS:
            shutil.copy2(program, bindir / program.name)
        else:
            (bindir / program.name).symlink_to(program)
    new_share = root / sharedir.relative_to("/")
    _link_entries(sharedir, new_share, real=frozenset({"extension"}))
    _link_entries(sharedir / "extension", new_share / "extension")
    new_lib = root / pkglibdir.relative_to("/")
    _link_entries(pkglibdir, new_lib)
    # What the copied pg_config says must be the private tree, or the test would write into
    # the system's directories.
    assert pg_config_value(bindir, "--sharedir") == new_share
    assert pg_config_value(bindir, "--pkglibdir") == new_lib
    version = subprocess.run(
        [str(bindir / "pg_config"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    major = version.split()[1].split(".")[0]
    return PrivateInstall(bindir, new_share, new_lib, f"v{int(major)}")


def archive_relpath(extension: str, pg_major: str, build_tag: str = "latest") -> str:
    return f"{build_tag}/{go_arch()}/{pg_major}/extensions/{extension}.tar.zst"


@dataclass
class Gateway:
    """The extension-gateway stand-in serving `root`, in a thread of the test process."""

    root: Path
    pg_major: str
    url: str = ""
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    _seen: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.release.set()

    def path(self, extension: str) -> Path:
        return self.root / archive_relpath(extension, self.pg_major)

    def put(self, extension: str, data: bytes) -> None:
        target = self.path(extension)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def fail(self, extension: str, status: int | None) -> None:
        marker = self.path(extension).with_name(f"{extension}.tar.zst.status")
        if status is None:
            marker.unlink(missing_ok=True)
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(status))

    def on_request(self, path: str) -> None:
        with self._seen:
            self.requests.append(path)
            self._seen.notify_all()
        self.release.wait(60)

    def wait_requests(self, count: int, timeout: float = 30) -> None:
        with self._seen:
            if not self._seen.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"the gateway saw {self.requests}, expected {count}")


@contextmanager
def running_gateway(root: Path, pg_major: str) -> Iterator[Gateway]:
    gateway = Gateway(root, pg_major)
    server = serve(root, "127.0.0.1", 0, gateway.on_request)
    gateway.url = base_url("127.0.0.1", server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield gateway
    finally:
        gateway.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def tree_files(root: Path) -> set[str]:
    """Every path under `root`, relative, for before/after comparisons."""
    return {
        str(Path(top, name).relative_to(root)) for top, _, names in os.walk(root) for name in names
    }

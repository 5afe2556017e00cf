"""Where extension files go, and putting them there.

The directories are the ones the Postgres being run uses: `pg_config --sharedir` (control and
SQL files under `extension/`) and `pg_config --pkglibdir` (libraries), asked of the `pg_config`
next to `--pgbin`. PostgreSQL computes both relative to its own location, so a relocated
installation reports its own directories.

Writes never follow a symbolic link planted under a destination name: control files are
created with `O_CREAT | O_EXCL | O_NOFOLLOW` relative to the opened directory, and unpacked
archives are moved in with `rename`, which replaces a name rather than writing through it.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from compute_ctl.errors import ComputeError
from compute_ctl.remote_ext.index import control_files_allowed, pg_major_tag
from compute_ctl.spec.models import RemoteExtSpec
from compute_ctl.subprocesses import PIPE, run_bounded

log = logging.getLogger(__name__)

PG_CONFIG_TIMEOUT = 30.0
DOWNLOAD_DIR = "download_extensions"
SHARE_MODE = 0o644
LIB_MODE = 0o755
DIR_MODE = 0o755
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class InstallError(ComputeError):
    """Extension files could not be put in place."""


@dataclass(frozen=True)
class PgInstall:
    """The PostgreSQL installation extensions are added to."""

    sharedir: Path
    pkglibdir: Path
    pg_major: str  # `v15`
    root: Path  # the directory holding `bin/`

    @property
    def extension_dir(self) -> Path:
        return self.sharedir / "extension"

    @property
    def download_dir(self) -> Path:
        """Where archives are unpacked before their files are moved into place."""
        return self.root / DOWNLOAD_DIR


async def query_pg_install(pg_bindir: Path) -> PgInstall:
    """Ask `<pg_bindir>/pg_config` for the share and library directories and the version."""
    program = pg_bindir / "pg_config"
    argv = [str(program), "--sharedir", "--pkglibdir", "--version"]
    try:
        done = await run_bounded(argv, PG_CONFIG_TIMEOUT, stdout=PIPE, stderr=PIPE)
    except TimeoutError:
        raise InstallError(f"{program} did not answer within {PG_CONFIG_TIMEOUT:g} s") from None
    except OSError as exc:
        raise InstallError(f"cannot run {program}: {exc.strerror}") from exc
    lines = done.stdout.decode(errors="replace").splitlines()
    if done.returncode != 0 or len(lines) != 3:
        detail = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise InstallError(f"{program} failed: {detail}")
    sharedir, pkglibdir, version = (line.strip() for line in lines)
    return PgInstall(Path(sharedir), Path(pkglibdir), pg_major_tag(version), pg_bindir.parent)


def _plain_file_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\0" not in name


def write_control_files(remote: RemoteExtSpec, extension_dir: Path) -> int:
    """Write the control files of the allowed extensions that are not there yet; returns how
    many were written. A file that exists (even as a symlink) is kept, as upstream does."""
    try:
        dir_fd = os.open(extension_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise InstallError(
            f"cannot open the extension directory {extension_dir}: {exc.strerror}"
        ) from exc
    written = 0
    try:
        for extension, data in remote.extension_data.items():
            if not control_files_allowed(remote, extension):
                continue
            for name, content in data.control_data.items():
                if not _plain_file_name(name):
                    log.error(
                        "remote extension %s: control file name %r is not a plain file name; "
                        "skipped",
                        extension,
                        name,
                    )
                    continue
                try:
                    fd = os.open(name, _CREATE, SHARE_MODE, dir_fd=dir_fd)
                except FileExistsError:
                    log.warning(
                        "control file %s exists both locally and remotely; the local one is kept",
                        extension_dir / name,
                    )
                    continue
                except OSError as exc:
                    raise InstallError(
                        f"cannot create {extension_dir / name}: {exc.strerror}"
                    ) from exc
                try:
                    with os.fdopen(fd, "wb") as out:
                        out.write(content.encode())
                except OSError as exc:
                    raise InstallError(
                        f"cannot write {extension_dir / name}: {exc.strerror}"
                    ) from exc
                written += 1
                log.info("wrote control file %s", extension_dir / name)
    finally:
        os.close(dir_fd)
    return written


def set_modes(tree: Path, file_mode: int) -> None:
    """Readable modes for an unpacked tree (the unpacker creates everything private):
    directories 0755, files `file_mode`. The tree holds only what the unpacker made."""
    for top, dirs, files in os.walk(tree):
        os.chmod(top, DIR_MODE)
        for name in files:
            os.chmod(os.path.join(top, name), file_mode, follow_symlinks=False)
        del dirs  # os.walk descends by itself; links are never followed


def move_entries(source: Path, target: Path) -> int:
    """Move every entry of `source` into `target` by rename; returns how many moved.

    A missing `source` (an archive without libraries, say) moves nothing. A rename that fails
    (typically a non-empty directory already in place) is logged and skipped, as upstream
    does: the files already installed are kept.
    """
    try:
        entries = sorted(os.listdir(source))
    except FileNotFoundError:
        log.info("nothing to move from %s", source)
        return 0
    except OSError as exc:
        raise InstallError(f"cannot list {source}: {exc.strerror}") from exc
    moved = 0
    for name in entries:
        try:
            os.rename(source / name, target / name)
        except OSError as exc:
            log.warning("could not move %s into %s: %s", name, target, exc.strerror)
            continue
        moved += 1
    return moved


def install_unpacked(unpacked: Path, install: PgInstall) -> int:
    """Move `share/extension/*` and `lib/*` of an unpacked archive into place."""
    share = unpacked / "share" / "extension"
    lib = unpacked / "lib"
    for tree, mode in ((share, SHARE_MODE), (lib, LIB_MODE)):
        if _is_real_dir(tree):
            set_modes(tree, mode)
    return move_entries(share, install.extension_dir) + move_entries(lib, install.pkglibdir)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def remove_tree(path: Path) -> None:
    """Remove a scratch directory (whatever is left in it after the moves)."""
    shutil.rmtree(path, ignore_errors=True)

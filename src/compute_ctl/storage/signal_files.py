"""The touch-up a freshly unpacked basebackup needs before Postgres starts on it: old
pageservers ship `zenith.signal`, Postgres with the neon extension reads `neon.signal`.

Files are opened through a descriptor of PGDATA and never followed when they are symlinks, as
the tar reader (`compute_ctl.archive`) does for the members it writes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

from compute_ctl.archive import FILE_MODE, ArchiveError, UnsafeMemberError

_FILE_CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def fixup_signal_files(pgdata: Path) -> bool:
    """Copy `zenith.signal` to `neon.signal` when only the former exists (old pageservers).

    Returns whether a copy was made. Neither file is followed if it is a symlink.
    """
    try:
        root = os.open(pgdata, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ArchiveError(
            f"cannot open the data directory {str(pgdata)!r}: {exc.strerror}"
        ) from exc
    try:
        try:
            os.stat("neon.signal", dir_fd=root, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            return False
        try:
            # O_NONBLOCK: a FIFO planted under that name must not block the open.
            src = os.open(
                "zenith.signal",
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                dir_fd=root,
            )
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise ArchiveError(f"cannot read zenith.signal: {exc.strerror}") from exc
        try:
            if not stat.S_ISREG(os.fstat(src).st_mode):
                raise UnsafeMemberError("zenith.signal is not a regular file")
            content = b""
            while block := os.read(src, 1 << 16):
                content += block
        finally:
            os.close(src)
        try:
            dst = os.open("neon.signal", _FILE_CREATE_FLAGS, FILE_MODE, dir_fd=root)
        except OSError as exc:
            raise ArchiveError(f"cannot create neon.signal: {exc.strerror}") from exc
        try:
            os.fchmod(dst, FILE_MODE)
            view = memoryview(content)
            while view:
                view = view[os.write(dst, view) :]
        finally:
            os.close(dst)
        return True
    finally:
        os.close(root)

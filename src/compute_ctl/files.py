"""Replacing a configuration file that another program reads.

A reader (pgbouncer, local_proxy, rsyslog) must never see half a file, so the new content goes
to a temporary file in the same directory, which then replaces the old one. Some of these files
live in directories compute_ctl may not write to (`/etc/pgbouncer.ini` in a VM is writable,
`/etc` is not); there the file is rewritten in place, as upstream always does. (TLS keys, which
must never exist with a wider mode even for a moment, have their own writer in compute/tls.py.)
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def replace_file(path: Path, data: bytes, *, new_mode: int = 0o644) -> None:
    """Give `path` the content `data`, keeping an existing file's mode and (as root) owner;
    a new file gets `new_mode`. OSError on failure."""
    try:
        st: os.stat_result | None = path.stat()
    except FileNotFoundError:
        st = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except PermissionError:
        if st is None:
            raise
        _rewrite_in_place(path, data)
        return
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, (st.st_mode & 0o7777) if st is not None else new_mode)
        if st is not None and os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _rewrite_in_place(path: Path, data: bytes) -> None:
    with path.open("r+b") as out:
        out.write(data)
        out.truncate()
        out.flush()
        os.fsync(out.fileno())

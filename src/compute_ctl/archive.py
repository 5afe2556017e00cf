"""The safe tar reader: unpack a (gzip-compressed) tar stream into a directory while its bytes
arrive, refusing anything unsafe.

Two features use it, which is why it sits in a neutral module rather than in either of them: the
basebackup (a gzip tarball streamed into PGDATA) and the remote extensions (a zstd-compressed
tarball, decompressed by the caller and unpacked into a scratch directory). The texts below say
PGDATA for the target directory; for an extension it is the scratch directory.

Why a hand-written tar reader rather than `tarfile`: the archive comes over an unauthenticated,
unencrypted connection and is unpacked by a privileged supervisor into the directory Postgres
trusts. `tarfile`'s extraction filters have had bypasses (e.g. CVE-2025-4517, CVE-2025-4138),
and its `ignore_zeros` mode silently skips blocks with a bad checksum, which is exactly the case
(an error message after the end-of-archive marker) we must surface. A basebackup only ever
contains regular files and directories with GNU or POSIX headers, so the reader below supports
exactly that (plus GNU long names and pax `path`/`size` records) and rejects everything else:
links of any kind, devices, FIFOs, sparse files, global pax headers.

Every member is checked by this module: no absolute paths, no `..`, no empty names or NUL bytes.
Writes go through directory file descriptors opened with `O_NOFOLLOW`, and files are created
with `O_CREAT | O_EXCL | O_NOFOLLOW` (replacing a previous regular file by unlinking it first),
so a symlink or hard link already inside PGDATA can never redirect a write outside it. Files get
mode 0600 and directories 0700, as Postgres requires, whatever the archive says.

The stream is read to its very end: after the end-of-archive marker further zero blocks are
skipped and anything else must be a valid header (the `ignore_zeros` semantics of upstream's
reader), so trailing garbage fails the extraction instead of being ignored. The stream must
also contain the end-of-archive marker and, when compressed, a complete gzip member with a
correct CRC; nothing may follow that member.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from compute_ctl.errors import ComputeError

__all__ = [
    "ArchiveError",
    "CorruptArchiveError",
    "TarballSink",
    "UnsafeMemberError",
    "extract_stream",
]

BLOCK: Final = 512
_ZERO_BLOCK: Final = bytes(BLOCK)
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700

# Decompressed bytes produced per zlib call: bounds memory when a small compressed chunk
# expands enormously (the 16 MiB WAL segment is mostly zeros).
_INFLATE_STEP: Final = 1 << 20
# File contents are written in pieces of at least this size (except each file's last one).
_WRITE_BUFFER: Final = 256 * 1024
# Metadata members are held in memory; these bound them (PATH_MAX is 4096).
_MAX_LONG_NAME: Final = 64 * 1024
_MAX_PAX: Final = 1024 * 1024
# Directory descriptors kept open between members (a basebackup has a few dozen directories).
_MAX_CACHED_DIRS: Final = 256

_DIR_OPEN_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_CREATE_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_REGULAR_TYPES: Final = (b"0", b"\0")
_REJECTED_TYPES: Final = {
    b"1": "hard links are not allowed",
    b"2": "symbolic links are not allowed",
    b"3": "character devices are not allowed",
    b"4": "block devices are not allowed",
    b"6": "FIFOs are not allowed",
    b"7": "contiguous files are not supported",
    b"K": "GNU long link names are not allowed (links are not allowed)",
    b"S": "GNU sparse files are not supported",
    b"g": "pax global headers are not supported",
    b"D": "GNU dump directories are not supported",
    b"M": "GNU multi-volume members are not supported",
    b"V": "GNU volume headers are not supported",
}
_HIGH_BYTES: Final = bytes(range(128, 256))


class ArchiveError(ComputeError):
    """The basebackup tarball could not be unpacked."""


class CorruptArchiveError(ArchiveError):
    """The stream is not a complete, well-formed gzip/tar stream (truncated, corrupt, garbage)."""


class UnsafeMemberError(ArchiveError):
    """A member would write outside PGDATA or is not a plain file or directory."""


def _show(name: bytes) -> str:
    """A member name as it may appear in an error message: decoded and bounded in length."""
    text = name.decode("utf-8", "backslashreplace")
    if len(text) > 200:
        text = text[:200] + "…"
    return repr(text)


def _nts(field: bytes) -> bytes:
    """A NUL-terminated header string field."""
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _parse_number(field: bytes, what: str) -> int:
    """A numeric header field: octal text, or GNU base-256 (first byte 0x80) for large values."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] == b"\xff":
        raise CorruptArchiveError(f"negative {what} in tar header")
    text = _nts(field).strip(b" ")
    if not text:
        return 0
    try:
        if text.strip(b"01234567"):
            raise ValueError
        return int(text, 8)
    except ValueError:
        raise CorruptArchiveError(f"invalid {what} field {bytes(field)!r} in tar header") from None


def _safe_parts(name: bytes) -> tuple[bytes, ...]:
    """The path components of a member name, or UnsafeMemberError.

    Rejects what could leave PGDATA or confuse the file system (absolute paths, `..`, NUL);
    `.` and empty components are dropped, so `./base//1/` is `("base", "1")`.
    """
    if not name:
        raise UnsafeMemberError("member with an empty name")
    if b"\0" in name:
        raise UnsafeMemberError(f"member name {_show(name)} contains a NUL byte")
    if name.startswith(b"/"):
        raise UnsafeMemberError(f"member {_show(name)} has an absolute path")
    parts = tuple(p for p in name.split(b"/") if p and p != b".")
    if b".." in parts:
        raise UnsafeMemberError(f"member {_show(name)} has a '..' component")
    return parts


def _parse_pax(data: bytes) -> dict[bytes, bytes]:
    """Records `<len> <key>=<value>\\n` of a pax extended header."""
    records: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos, pos + 20)
        digits = data[pos:space] if space > pos else b""
        if not digits.isdigit():
            raise CorruptArchiveError("malformed pax extended header (bad record length)")
        length = int(digits)
        end = pos + length
        if end > len(data) or end <= space + 1 or data[end - 1 : end] != b"\n":
            raise CorruptArchiveError("malformed pax extended header (bad record)")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq or not key:
            raise CorruptArchiveError("malformed pax extended header (record without '=')")
        records[key] = value
        pos = end
    return records


class _State:
    HEADER: Final = 0
    DATA: Final = 1  # regular-file contents, written as they arrive
    META: Final = 2  # GNU long name or pax records, collected in memory
    PAD: Final = 3  # zero padding up to the next 512-byte boundary


class TarballSink:
    """A push-style gunzip + untar into an existing PGDATA directory.

    Feed it the compressed stream in chunks of any size (`feed`), then call `finish`, which
    fails unless the gzip member and the tar archive both ended properly. After any error
    the sink is closed and every further call raises. Not thread-safe: one producer at a
    time (it may be a worker thread).
    """

    def __init__(self, pgdata: Path | str, *, gzip: bool = True) -> None:
        self._pgdata = Path(pgdata)
        try:
            self._root_fd = os.open(self._pgdata, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise ArchiveError(
                f"cannot open the data directory {str(self._pgdata)!r}: {exc.strerror}"
            ) from exc
        self._dirs: dict[tuple[bytes, ...], int] = {}
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if gzip else None
        self._compressed = 0
        self._offset = 0  # decompressed bytes consumed, for error messages
        self._state = _State.HEADER
        self._block = bytearray()
        self._meta = bytearray()
        self._meta_kind = b""
        self._remaining = 0
        self._pad = 0
        self._fd = -1
        self._pending = bytearray()
        self._member = b""
        self._long_name: bytes | None = None
        self._pax: dict[bytes, bytes] | None = None
        self._zero_blocks = 0
        self._end_seen = False
        self._members = 0
        self._failed: BaseException | None = None
        self._finished = False

    # -- public ---------------------------------------------------------------------------

    @property
    def compressed_bytes(self) -> int:
        """Bytes fed so far (compressed when gzip is on): the `basebackup_bytes` metric."""
        return self._compressed

    @property
    def members(self) -> int:
        """Files and directories written so far."""
        return self._members

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Consume the next piece of the stream, writing whatever members it completes."""
        self._check_usable()
        try:
            self._compressed += len(chunk)
            if self._inflater is None:
                self._untar(bytes(chunk))
            else:
                self._inflate(chunk)
        except BaseException as exc:
            self._fail(exc)
            raise

    def finish(self) -> None:
        """Check that the stream ended exactly where a complete archive ends; release files."""
        self._check_usable()
        try:
            if self._inflater is not None:
                try:
                    tail = self._inflater.flush()
                except zlib.error as exc:
                    raise CorruptArchiveError(f"corrupt gzip stream: {exc}") from exc
                if tail:
                    self._untar(tail)
                if not self._inflater.eof:
                    raise CorruptArchiveError(
                        f"truncated gzip stream after {self._compressed} bytes"
                    )
            self._check_tar_complete()
        except BaseException as exc:
            self._fail(exc)
            raise
        self._finished = True
        self.close()

    def close(self) -> None:
        """Release every descriptor (idempotent). Does not validate anything."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- stream layers --------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise ArchiveError("the extraction already failed") from self._failed
        if self._finished or self._root_fd < 0:
            raise ArchiveError("the extraction is already finished")

    def _fail(self, exc: BaseException) -> None:
        self._failed = exc
        self.close()

    def _inflate(self, chunk: bytes | bytearray | memoryview) -> None:
        inflater = self._inflater
        assert inflater is not None
        if inflater.eof:
            if len(chunk):
                raise CorruptArchiveError(self._after_gzip_message(bytes(chunk)))
            return
        data: bytes | bytearray | memoryview = chunk
        while True:
            try:
                out = inflater.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                raise CorruptArchiveError(
                    f"corrupt gzip stream near compressed byte {self._compressed}: {exc}"
                ) from exc
            if out:
                self._untar(out)
            if inflater.eof:
                if inflater.unused_data:
                    raise CorruptArchiveError(self._after_gzip_message(inflater.unused_data))
                return
            data = inflater.unconsumed_tail
            if not data and len(out) < _INFLATE_STEP:
                return

    @staticmethod
    def _after_gzip_message(extra: bytes) -> str:
        return f"unexpected data after the end of the gzip stream: {extra[:64]!r}"

    def _untar(self, data: bytes) -> None:
        """Advance the tar state machine over decompressed bytes (no per-byte Python loop)."""
        view = memoryview(data)
        pos = 0
        size = len(data)
        base = self._offset
        self._offset += size
        while pos < size:
            state = self._state
            if state == _State.DATA:
                take = min(self._remaining, size - pos)
                self._write(view[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._close_member()
            elif state == _State.HEADER:
                if not self._block and size - pos >= BLOCK:
                    block = data[pos : pos + BLOCK]
                    pos += BLOCK
                else:
                    take = min(BLOCK - len(self._block), size - pos)
                    self._block += view[pos : pos + take]
                    pos += take
                    if len(self._block) < BLOCK:
                        continue
                    block = bytes(self._block)
                    self._block.clear()
                self._on_block(block, base + pos - BLOCK)
            elif state == _State.PAD:
                take = min(self._pad, size - pos)
                pos += take
                self._pad -= take
                if self._pad == 0:
                    self._state = _State.HEADER
            else:  # META
                take = min(self._remaining, size - pos)
                self._meta += view[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._on_meta()

    def _check_tar_complete(self) -> None:
        if self._state != _State.HEADER:
            what = _show(self._member) if self._member else "a long-name or pax header"
            raise CorruptArchiveError(f"truncated tar stream inside {what}")
        if self._block:
            if self._end_seen and not self._block.strip(b"\0"):
                return
            if self._end_seen:
                raise CorruptArchiveError(self._after_marker_message(bytes(self._block)))
            raise CorruptArchiveError("truncated tar stream (a partial header block)")
        if self._long_name is not None or self._pax is not None:
            raise CorruptArchiveError("tar stream ends after a long-name or pax header")
        if not self._end_seen:
            raise CorruptArchiveError("truncated tar stream: the end-of-archive marker is missing")

    @staticmethod
    def _after_marker_message(block: bytes) -> str:
        return f"unexpected data after the tar end-of-archive marker: {block[:64]!r}"

    # -- headers --------------------------------------------------------------------------

    def _on_block(self, block: bytes, offset: int) -> None:
        if block == _ZERO_BLOCK:
            if self._long_name is not None or self._pax is not None:
                raise CorruptArchiveError("a long-name or pax header is followed by a zero block")
            self._zero_blocks += 1
            if self._zero_blocks >= 2:
                self._end_seen = True
            return
        after_marker = self._end_seen
        self._zero_blocks = 0
        self._end_seen = False
        try:
            self._check_header(block, offset)
        except CorruptArchiveError:
            if after_marker:
                raise CorruptArchiveError(self._after_marker_message(block)) from None
            raise
        kind = block[156:157]
        size = _parse_number(block[124:136], "size")
        if kind in (b"L", b"x"):
            limit = _MAX_LONG_NAME if kind == b"L" else _MAX_PAX
            if size > limit:
                raise CorruptArchiveError(
                    f"{'GNU long name' if kind == b'L' else 'pax header'} of {size} bytes "
                    f"exceeds the {limit}-byte limit"
                )
            if (kind == b"L" and self._long_name is not None) or (
                kind == b"x" and self._pax is not None
            ):
                raise CorruptArchiveError("two consecutive long-name or pax headers")
            self._meta_kind = kind
            self._member = b""
            self._meta.clear()
            self._remaining = size
            self._pad = -size % BLOCK
            if size:
                self._state = _State.META
            else:
                self._on_meta()
            return

        name = _nts(block[0:100])
        if block[257:263] == b"ustar\0":
            prefix = _nts(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        name = self._effective_name(name)
        if self._pax is not None:
            size = self._pax_size(self._pax, size)
        self._long_name = None
        self._pax = None

        if kind == b"\0" and name.endswith(b"/"):
            kind = b"5"  # old-style directory
        rejected = _REJECTED_TYPES.get(kind)
        if rejected is not None:
            raise UnsafeMemberError(f"member {_show(name)}: {rejected}")
        if kind == b"5":
            if size:
                raise CorruptArchiveError(f"directory member {_show(name)} carries data")
            self._make_directory(name)
            self._members += 1
            return
        if kind not in _REGULAR_TYPES:
            raise UnsafeMemberError(f"member {_show(name)} has unsupported type {kind!r}")
        if name.endswith(b"/"):
            raise UnsafeMemberError(f"regular file member {_show(name)} ends with '/'")
        self._open_file(name)
        self._members += 1
        self._member = name
        self._remaining = size
        self._pad = -size % BLOCK
        if size:
            self._state = _State.DATA
        else:
            self._close_member()

    def _check_header(self, block: bytes, offset: int) -> None:
        stored = _parse_number(block[148:156], "checksum")
        unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
        if stored != unsigned:
            high = BLOCK - len(block.translate(None, _HIGH_BYTES))
            high -= 8 - len(block[148:156].translate(None, _HIGH_BYTES))
            if stored != unsigned - 256 * high:
                raise CorruptArchiveError(
                    f"invalid tar header at offset {offset} (checksum mismatch)"
                )
        magic = block[257:265]
        if magic not in (b"ustar\x0000", b"ustar  \0"):
            raise CorruptArchiveError(
                f"invalid tar header at offset {offset} (not a ustar or GNU header)"
            )

    def _effective_name(self, header_name: bytes) -> bytes:
        pax_path = self._pax.get(b"path") if self._pax is not None else None
        if pax_path and self._long_name is not None:
            raise CorruptArchiveError("both a GNU long name and a pax path for one member")
        if pax_path:
            return pax_path
        if self._long_name is not None:
            return self._long_name
        return header_name

    @staticmethod
    def _pax_size(pax: dict[bytes, bytes], header_size: int) -> int:
        if any(key.startswith(b"GNU.sparse.") for key in pax):
            raise UnsafeMemberError("GNU sparse files are not supported")
        value = pax.get(b"size")
        if not value:
            return header_size
        if not value.isdigit():
            raise CorruptArchiveError(f"invalid pax size {value[:32]!r}")
        return int(value)

    def _on_meta(self) -> None:
        data = bytes(self._meta)
        self._meta.clear()
        if self._meta_kind == b"L":
            end = data.find(b"\0")
            if end >= 0:
                if data[end:].strip(b"\0"):
                    raise UnsafeMemberError(f"GNU long name {_show(data)} contains a NUL byte")
                data = data[:end]
            if not data:
                raise UnsafeMemberError("member with an empty GNU long name")
            self._long_name = data
        else:
            self._pax = _parse_pax(data)
        self._state = _State.PAD if self._pad else _State.HEADER

    # -- file system ----------------------------------------------------------------------

    def _dir_fd(self, parts: tuple[bytes, ...]) -> int:
        """A descriptor of PGDATA/parts, creating missing directories (mode 0700) on the way.

        Each component is opened relative to its parent with O_NOFOLLOW, so a symlink found
        anywhere on the way is an error rather than a redirection.
        """
        if not parts:
            return self._root_fd
        cached = self._dirs.get(parts)
        if cached is not None:
            return cached
        parent = self._dir_fd(parts[:-1])
        fd = self._open_subdir(parent, parts)
        if len(self._dirs) >= _MAX_CACHED_DIRS:
            for old in self._dirs.values():
                os.close(old)
            self._dirs.clear()
        self._dirs[parts] = fd
        return fd

    def _open_subdir(self, parent: int, parts: tuple[bytes, ...]) -> int:
        """Open (creating it with mode 0700 if missing) one directory below `parent`."""
        leaf = parts[-1]
        shown = _show(b"/".join(parts))
        created = False
        for _ in range(2):
            try:
                fd = os.open(leaf, _DIR_OPEN_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                try:
                    os.mkdir(leaf, DIR_MODE, dir_fd=parent)
                    created = True
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise ArchiveError(f"cannot create directory {shown}: {exc.strerror}") from exc
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise ArchiveError(f"cannot open directory {shown}: {exc.strerror}") from exc
                raise self._conflict(parent, leaf, shown, "a directory") from exc
            if created:
                # mkdir honours the umask; set the mode Postgres expects exactly.
                try:
                    os.fchmod(fd, DIR_MODE)
                except OSError as exc:
                    os.close(fd)
                    raise ArchiveError(f"cannot set the mode of {shown}: {exc.strerror}") from exc
            return fd
        raise ArchiveError(f"directory {shown} keeps disappearing")

    @staticmethod
    def _conflict(parent: int, leaf: bytes, shown: str, wanted: str) -> ArchiveError:
        """Why `leaf` (which exists) cannot be used as `wanted`."""
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            return ArchiveError(f"cannot inspect {shown}: {exc.strerror}")
        if stat.S_ISLNK(st.st_mode):
            return UnsafeMemberError(
                f"{shown} is a symbolic link inside the data directory; refusing to follow it"
            )
        if stat.S_ISDIR(st.st_mode):
            return UnsafeMemberError(f"{shown} is a directory, but the archive needs {wanted}")
        if stat.S_ISREG(st.st_mode):
            return UnsafeMemberError(f"{shown} is a file, but the archive needs {wanted}")
        return UnsafeMemberError(f"{shown} is a special file; refusing to use it as {wanted}")

    def _make_directory(self, name: bytes) -> None:
        parts = _safe_parts(name)
        if not parts:
            return  # "." or "./": PGDATA itself, which the caller created with mode 0700
        fd = self._dir_fd(parts)
        try:
            os.fchmod(fd, DIR_MODE)
        except OSError as exc:
            raise ArchiveError(f"cannot set the mode of {_show(name)}: {exc.strerror}") from exc

    def _open_file(self, name: bytes) -> None:
        parts = _safe_parts(name)
        if not parts:
            raise UnsafeMemberError(f"regular file member {_show(name)} names the data directory")
        parent = self._dir_fd(parts[:-1])
        leaf = parts[-1]
        shown = _show(b"/".join(parts))
        try:
            fd = os.open(leaf, _FILE_CREATE_FLAGS, FILE_MODE, dir_fd=parent)
        except FileExistsError:
            # A previous attempt's file (the retry unpacks over a partial PGDATA) is replaced,
            # never written through: unlinking also breaks any hard link it might be.
            try:
                is_file = stat.S_ISREG(os.stat(leaf, dir_fd=parent, follow_symlinks=False).st_mode)
            except OSError:
                is_file = False
            if not is_file:
                raise self._conflict(parent, leaf, shown, "a regular file") from None
            try:
                os.unlink(leaf, dir_fd=parent)
                fd = os.open(leaf, _FILE_CREATE_FLAGS, FILE_MODE, dir_fd=parent)
            except OSError as exc:
                raise ArchiveError(f"cannot replace {shown}: {exc.strerror}") from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._conflict(parent, leaf, shown, "a regular file") from exc
            raise ArchiveError(f"cannot create {shown}: {exc.strerror}") from exc
        self._fd = fd
        try:
            os.fchmod(fd, FILE_MODE)
        except OSError as exc:
            raise ArchiveError(f"cannot set the mode of {shown}: {exc.strerror}") from exc

    def _write(self, data: memoryview) -> None:
        # Small pieces (libpq delivers ~8 KiB messages) are coalesced: one system call per
        # small piece would cost more than the decompression itself.
        if not self._pending and len(data) >= _WRITE_BUFFER:
            self._write_out(data)
            return
        self._pending += data
        if len(self._pending) >= _WRITE_BUFFER:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            with memoryview(self._pending) as view:
                self._write_out(view)
            self._pending.clear()

    def _write_out(self, data: memoryview) -> None:
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError as exc:
            raise ArchiveError(f"cannot write {_show(self._member)}: {exc.strerror}") from exc

    def _close_member(self) -> None:
        self._flush()
        fd, self._fd = self._fd, -1
        try:
            os.close(fd)
        except OSError as exc:
            raise ArchiveError(f"cannot write {_show(self._member)}: {exc.strerror}") from exc
        self._state = _State.PAD if self._pad else _State.HEADER


def extract_stream(chunks: Iterable[bytes], pgdata: Path, *, gzip: bool = True) -> int:
    """Unpack a whole stream into `pgdata`; returns the compressed bytes seen.

    Blocking: run it in a worker thread (`asyncio.to_thread`) when called from the event loop.
    """
    with TarballSink(pgdata, gzip=gzip) as sink:
        for chunk in chunks:
            sink.feed(chunk)
        sink.finish()
        return sink.compressed_bytes

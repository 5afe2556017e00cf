"""The streaming basebackup extractor: hostile archives are refused without touching anything
outside PGDATA, and real archives round-trip byte for byte whatever the chunking."""

from __future__ import annotations

import asyncio
import gzip as gzip_module
import io
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compute_ctl.archive import (
    ArchiveError,
    CorruptArchiveError,
    TarballSink,
    UnsafeMemberError,
    extract_stream,
)
from compute_ctl.storage.basebackup import ThreadedSink
from compute_ctl.storage.signal_files import fixup_signal_files

# --------------------------------------------------------------------------------------------
# A raw tar writer, so the tests control every header byte (tarfile refuses some of these).

GNU = b"ustar  \0"
USTAR = b"ustar\x0000"
END = bytes(1024)


def pad(size: int) -> bytes:
    return bytes(-size % 512)


def header(
    name: bytes,
    kind: bytes = b"0",
    size: int = 0,
    *,
    linkname: bytes = b"",
    magic: bytes = GNU,
    prefix: bytes = b"",
    mode: int = 0o644,
    size_field: bytes | None = None,
    bad_checksum: bool = False,
) -> bytes:
    block = bytearray(512)
    block[0 : len(name[:100])] = name[:100]
    block[100:108] = b"%07o\0" % mode
    block[108:116] = b"0000000\0"
    block[116:124] = b"0000000\0"
    block[124:136] = size_field if size_field is not None else b"%011o\0" % size
    block[136:148] = b"14712345670\0"
    block[148:156] = b" " * 8
    block[156:157] = kind
    block[157 : 157 + len(linkname)] = linkname
    block[257:265] = magic
    block[345 : 345 + len(prefix)] = prefix
    checksum = sum(block) + (1 if bad_checksum else 0)
    block[148:156] = b"%06o\0 " % checksum
    return bytes(block)


def member(name: bytes, data: bytes = b"", kind: bytes = b"0", **kw: object) -> bytes:
    return header(name, kind, len(data), **kw) + data + pad(len(data))  # type: ignore[arg-type]


def directory(name: bytes, **kw: object) -> bytes:
    return header(name, b"5", 0, mode=0o755, **kw)  # type: ignore[arg-type]


def gnu_long_name(name: bytes) -> bytes:
    return member(b"././@LongLink", name, kind=b"L")


def pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax(records: dict[bytes, bytes]) -> bytes:
    data = b"".join(pax_record(k, v) for k, v in records.items())
    return member(b"PaxHeaders/x", data, kind=b"x", magic=USTAR)


def gz(data: bytes) -> bytes:
    return gzip_module.compress(data, compresslevel=1, mtime=0)


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


# ErrorResponse (S=ERROR, C=XX000, M=...) as a pageserver would send it after the marker.
_MSG = b"SERROR\0CXX000\0Mfailpoint basebackup-before-control-file\0\0"
ERROR_RESPONSE = b"E" + (len(_MSG) + 4).to_bytes(4, "big") + _MSG

OK_TAR = directory(b"global/") + member(b"PG_VERSION", b"16\n") + member(b"global/f", b"x" * 700)

# --------------------------------------------------------------------------------------------
# The hostile corpus


@dataclass(frozen=True)
class Hostile:
    id: str
    build: Callable[[Path], bytes]  # box -> the raw (uncompressed) tar, or the whole stream
    error: type[ArchiveError]
    match: str
    setup: Callable[[Path, Path], None] | None = None  # (pgdata, outside) -> None
    compress: bool = True  # gzip `build`'s bytes before feeding


def _symlink(rel: str, target: str) -> Callable[[Path, Path], None]:
    def setup(pgdata: Path, outside: Path) -> None:
        (pgdata / rel).symlink_to(target)

    return setup


def _corrupt_crc(box: Path) -> bytes:
    data = bytearray(gz(OK_TAR + END))
    data[-8] ^= 0xFF  # the CRC32 of the trailer
    return bytes(data)


def _bad_block_type(box: Path) -> bytes:
    data = bytearray(gz(OK_TAR + END))
    data[10] = 0b111  # first deflate block: final, type 11 (reserved)
    return bytes(data)


def _bit_flip(box: Path) -> bytes:
    data = bytearray(gz(OK_TAR + END))
    data[len(data) // 2] ^= 0x10
    return bytes(data)


HOSTILE = [
    Hostile(
        "absolute-path",
        lambda box: member(str(box / "escaped").encode(), b"pwned") + END,
        UnsafeMemberError,
        "absolute path",
    ),
    Hostile(
        "dotdot", lambda box: member(b"../escaped", b"pwned") + END, UnsafeMemberError, r"'\.\.'"
    ),
    Hostile(
        "nested-dotdot",
        lambda box: member(b"a/../../escaped", b"pwned") + END,
        UnsafeMemberError,
        r"'\.\.'",
    ),
    Hostile(
        "dotdot-staying-inside",
        lambda box: member(b"a/../b", b"x") + END,
        UnsafeMemberError,
        r"'\.\.'",
    ),
    Hostile(
        "dotdot-directory",
        lambda box: directory(b"../escaped/") + END,
        UnsafeMemberError,
        r"'\.\.'",
    ),
    Hostile(
        "symlink-member",
        lambda box: member(b"link", kind=b"2", linkname=b"../outside") + END,
        UnsafeMemberError,
        "symbolic links are not allowed",
    ),
    Hostile(
        "hardlink-member",
        lambda box: member(b"hard", kind=b"1", linkname=b"../outside/target") + END,
        UnsafeMemberError,
        "hard links are not allowed",
    ),
    Hostile(
        "symlink-then-file-through-it",
        lambda box: (
            member(b"ln", kind=b"2", linkname=b"../outside") + member(b"ln/target", b"pwned") + END
        ),
        UnsafeMemberError,
        "symbolic links are not allowed",
    ),
    Hostile(
        "char-device",
        lambda box: member(b"dev", kind=b"3") + END,
        UnsafeMemberError,
        "character devices",
    ),
    Hostile(
        "block-device",
        lambda box: member(b"dev", kind=b"4") + END,
        UnsafeMemberError,
        "block devices",
    ),
    Hostile("fifo", lambda box: member(b"fifo", kind=b"6") + END, UnsafeMemberError, "FIFOs"),
    Hostile(
        "preexisting-dir-symlink",
        lambda box: member(b"base/escaped", b"pwned") + END,
        UnsafeMemberError,
        "symbolic link inside the data directory",
        setup=_symlink("base", "../outside"),
    ),
    Hostile(
        "preexisting-leaf-symlink",
        lambda box: member(b"PG_VERSION", b"pwned") + END,
        UnsafeMemberError,
        "symbolic link inside the data directory",
        setup=_symlink("PG_VERSION", "../outside/target"),
    ),
    Hostile(
        "preexisting-dangling-symlink",
        lambda box: member(b"PG_VERSION", b"pwned") + END,
        UnsafeMemberError,
        "symbolic link inside the data directory",
        setup=_symlink("PG_VERSION", "../outside/created"),
    ),
    Hostile(
        "preexisting-symlink-as-directory-entry",
        lambda box: directory(b"global/") + END,
        UnsafeMemberError,
        "symbolic link inside the data directory",
        setup=_symlink("global", "../outside"),
    ),
    Hostile(
        "gnu-long-name-dotdot",
        lambda box: (
            gnu_long_name(b"a/" * 60 + b"../" * 70 + b"escaped\0")
            + member(b"placeholder", b"pwned")
            + END
        ),
        UnsafeMemberError,
        r"'\.\.'",
    ),
    Hostile(
        "pax-path-dotdot",
        lambda box: (
            pax({b"path": b"../escaped"}) + member(b"harmless", b"pwned", magic=USTAR) + END
        ),
        UnsafeMemberError,
        r"'\.\.'",
    ),
    Hostile(
        "pax-path-absolute",
        lambda box: (
            pax({b"path": str(box / "escaped").encode()})
            + member(b"harmless", b"pwned", magic=USTAR)
            + END
        ),
        UnsafeMemberError,
        "absolute path",
    ),
    Hostile(
        "ustar-prefix-dotdot",
        lambda box: member(b"escaped", b"pwned", magic=USTAR, prefix=b"..") + END,
        UnsafeMemberError,
        r"'\.\.'",
    ),
    Hostile("empty-name", lambda box: member(b"", b"x") + END, UnsafeMemberError, "empty name"),
    Hostile(
        "file-named-dot",
        lambda box: member(b".", b"x") + END,
        UnsafeMemberError,
        "names the data directory",
    ),
    Hostile(
        "nul-in-pax-path",
        lambda box: pax({b"path": b"ok\0/../../escaped"}) + member(b"x", b"p", magic=USTAR) + END,
        UnsafeMemberError,
        "NUL",
    ),
    Hostile(
        "nul-in-gnu-long-name",
        lambda box: gnu_long_name(b"ok\0../escaped\0") + member(b"x", b"p") + END,
        UnsafeMemberError,
        "NUL",
    ),
    Hostile(
        "file-then-directory",
        lambda box: member(b"x", b"data") + directory(b"x/") + END,
        UnsafeMemberError,
        "is a file, but the archive needs a directory",
    ),
    Hostile(
        "directory-then-file",
        lambda box: directory(b"x/") + member(b"x", b"data") + END,
        UnsafeMemberError,
        "is a directory, but the archive needs a regular file",
    ),
    Hostile(
        "file-then-file-below-it",
        lambda box: member(b"x", b"data") + member(b"x/y", b"data") + END,
        UnsafeMemberError,
        "is a file, but the archive needs a directory",
    ),
    Hostile(
        "huge-size-beyond-data",
        lambda box: header(b"big", size=10**9) + b"tiny",
        CorruptArchiveError,
        "truncated tar stream inside 'big'",
    ),
    Hostile(
        "pax-size-beyond-data",
        lambda box: pax({b"size": b"1000000000"}) + member(b"f", b"abc", magic=USTAR),
        CorruptArchiveError,
        "truncated tar stream inside 'f'",
    ),
    Hostile(
        "truncated-member",
        lambda box: (OK_TAR + END)[: len(OK_TAR) - 400],
        CorruptArchiveError,
        "truncated tar stream inside 'global/f'",
    ),
    Hostile(
        "truncated-padding",
        lambda box: (OK_TAR + END)[: len(OK_TAR) - 300],
        CorruptArchiveError,
        "truncated tar stream inside 'global/f'",
    ),
    Hostile(
        "truncated-long-name",
        lambda box: gnu_long_name(b"n" * 300 + b"\0")[:700],
        CorruptArchiveError,
        "truncated tar stream inside a long-name or pax header",
    ),
    Hostile(
        "truncated-header",
        lambda box: OK_TAR + header(b"next")[:100],
        CorruptArchiveError,
        "partial header",
    ),
    Hostile(
        "corrupt-gzip-crc",
        _corrupt_crc,
        CorruptArchiveError,
        "corrupt gzip stream",
        compress=False,
    ),
    Hostile(
        "corrupt-deflate-block-type",
        _bad_block_type,
        CorruptArchiveError,
        "corrupt gzip stream",
        compress=False,
    ),
    Hostile(
        # Garbage may reach the tar reader before zlib notices: either error is clear.
        "bit-flip-mid-stream",
        _bit_flip,
        CorruptArchiveError,
        "corrupt gzip stream|invalid tar header|truncated",
        compress=False,
    ),
    Hostile(
        "not-gzip-at-all",
        lambda box: OK_TAR + END,
        CorruptArchiveError,
        "corrupt gzip stream",
        compress=False,
    ),
    Hostile(
        "truncated-gzip",
        lambda box: gz(OK_TAR + END)[:-20],
        CorruptArchiveError,
        "truncated gzip stream",
        compress=False,
    ),
    Hostile(
        "garbage-after-end-marker",
        lambda box: OK_TAR + END + b"garbage!" * 64,
        CorruptArchiveError,
        "after the tar end-of-archive marker",
    ),
    Hostile(
        "error-response-in-gzip-after-end-marker",
        lambda box: OK_TAR + END + ERROR_RESPONSE,
        CorruptArchiveError,
        "after the tar end-of-archive marker.*SERROR",
    ),
    Hostile(
        "long-error-response-in-gzip-after-end-marker",
        lambda box: OK_TAR + END + ERROR_RESPONSE * 20,
        CorruptArchiveError,
        "after the tar end-of-archive marker",
    ),
    Hostile(
        "error-response-after-gzip-member",
        lambda box: gz(OK_TAR + END) + ERROR_RESPONSE,
        CorruptArchiveError,
        "after the end of the gzip stream",
        compress=False,
    ),
    Hostile(
        "missing-end-marker",
        lambda box: OK_TAR,
        CorruptArchiveError,
        "end-of-archive marker is missing",
    ),
    Hostile(
        "single-zero-block",
        lambda box: OK_TAR + bytes(512),
        CorruptArchiveError,
        "end-of-archive marker is missing",
    ),
    Hostile(
        "pax-global-header",
        lambda box: member(b"g", pax_record(b"path", b"x"), kind=b"g", magic=USTAR) + END,
        UnsafeMemberError,
        "pax global headers",
    ),
    Hostile(
        "gnu-long-link-name",
        lambda box: member(b"././@LongLink", b"../../x\0", kind=b"K") + END,
        UnsafeMemberError,
        "long link",
    ),
    Hostile("gnu-sparse", lambda box: member(b"s", kind=b"S") + END, UnsafeMemberError, "sparse"),
    Hostile(
        "pax-sparse",
        lambda box: pax({b"GNU.sparse.map": b"0,10"}) + member(b"s", b"x", magic=USTAR) + END,
        UnsafeMemberError,
        "sparse",
    ),
    Hostile(
        "unknown-type",
        lambda box: member(b"z", kind=b"Z") + END,
        UnsafeMemberError,
        "unsupported type",
    ),
    Hostile(
        "bad-checksum",
        lambda box: header(b"f", size=0, bad_checksum=True) + END,
        CorruptArchiveError,
        "checksum mismatch",
    ),
    Hostile(
        "v7-header-without-magic",
        lambda box: member(b"f", b"x", magic=bytes(8)) + END,
        CorruptArchiveError,
        "not a ustar or GNU header",
    ),
    Hostile(
        "oversized-long-name",
        lambda box: header(b"././@LongLink", b"L", 10**8),
        CorruptArchiveError,
        "exceeds",
    ),
    Hostile(
        "negative-size",
        lambda box: header(b"f", size_field=b"\xff" * 12) + END,
        CorruptArchiveError,
        "negative size",
    ),
    Hostile(
        "non-octal-size",
        lambda box: header(b"f", size_field=b"12345678999\0") + END,
        CorruptArchiveError,
        "invalid size",
    ),
    Hostile(
        "directory-with-data",
        lambda box: header(b"d/", b"5", 10) + b"x" * 10 + pad(10) + END,
        CorruptArchiveError,
        "carries data",
    ),
    Hostile(
        "two-long-names",
        lambda box: gnu_long_name(b"a\0") + gnu_long_name(b"b\0") + member(b"c", b"x") + END,
        CorruptArchiveError,
        "two consecutive",
    ),
    Hostile(
        "long-name-and-pax-path",
        lambda box: (
            gnu_long_name(b"a\0") + pax({b"path": b"b"}) + member(b"c", b"x", magic=USTAR) + END
        ),
        CorruptArchiveError,
        "both a GNU long name and a pax path",
    ),
    Hostile(
        "long-name-then-end",
        lambda box: gnu_long_name(b"a\0") + END,
        CorruptArchiveError,
        "followed by a zero block",
    ),
    Hostile(
        "malformed-pax-record",
        lambda box: member(b"p", b"99 path=x\n", kind=b"x", magic=USTAR) + member(b"c") + END,
        CorruptArchiveError,
        "malformed pax",
    ),
]


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every entry below root (symlinks not followed): mode and content or link target."""
    result: dict[str, tuple[int, bytes | str | None]] = {}
    for path in sorted(root.rglob("*")):
        st_ = path.lstat()
        if stat.S_ISLNK(st_.st_mode):
            result[str(path.relative_to(root))] = (st_.st_mode, os.readlink(path))
        elif stat.S_ISREG(st_.st_mode):
            result[str(path.relative_to(root))] = (st_.st_mode, path.read_bytes())
        else:
            result[str(path.relative_to(root))] = (st_.st_mode, None)
    return result


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """tmp_path/{pgdata, outside/target}: only pgdata may change."""
    (tmp_path / "pgdata").mkdir(mode=0o700)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "target").write_bytes(b"original")
    return tmp_path


@pytest.mark.parametrize("chunk_size", [1, 509, 1 << 20], ids=["1B", "509B", "whole"])
@pytest.mark.parametrize("case", HOSTILE, ids=[c.id for c in HOSTILE])
def test_hostile_archive_is_refused(box: Path, case: Hostile, chunk_size: int) -> None:
    pgdata, outside = box / "pgdata", box / "outside"
    if case.setup is not None:
        case.setup(pgdata, outside)
    planted = {k: v for k, v in _snapshot(pgdata).items() if stat.S_ISLNK(v[0])}
    before_outside = _snapshot(outside)
    stream = case.build(box)
    if case.compress:
        stream = gz(stream)

    with pytest.raises(ArchiveError, match=case.match) as info:
        extract_stream(chunked(stream, chunk_size), pgdata)

    assert isinstance(info.value, case.error)
    assert sorted(p.name for p in box.iterdir()) == ["outside", "pgdata"]
    assert _snapshot(outside) == before_outside
    # Inside PGDATA only regular files and directories were created; planted links untouched.
    for rel, (mode, content) in _snapshot(pgdata).items():
        if stat.S_ISLNK(mode):
            assert planted[rel] == (mode, content)
        else:
            assert stat.S_ISREG(mode) or stat.S_ISDIR(mode), rel


def test_the_corpus_is_large_enough() -> None:
    assert len(HOSTILE) >= 20


def test_hostile_uncompressed_stream_is_refused(box: Path) -> None:
    with pytest.raises(UnsafeMemberError, match="absolute path"):
        extract_stream(
            [member(str(box / "escaped").encode(), b"x") + END], box / "pgdata", gzip=False
        )
    assert sorted(p.name for p in box.iterdir()) == ["outside", "pgdata"]


def test_the_error_response_text_is_in_the_message(box: Path) -> None:
    stream = gz(OK_TAR + END + ERROR_RESPONSE)
    with pytest.raises(CorruptArchiveError) as info:
        extract_stream([stream], box / "pgdata")
    assert "failpoint basebackup-before-control-file" in str(info.value)


# --------------------------------------------------------------------------------------------
# Archives that must work


def _tree(root: Path) -> dict[str, tuple[str, int, bytes | None]]:
    result: dict[str, tuple[str, int, bytes | None]] = {}
    for path in root.rglob("*"):
        st_ = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISDIR(st_.st_mode):
            result[rel] = ("dir", stat.S_IMODE(st_.st_mode), None)
        else:
            assert stat.S_ISREG(st_.st_mode), rel
            result[rel] = ("file", stat.S_IMODE(st_.st_mode), path.read_bytes())
    return result


def _tarball(files: dict[str, bytes], dirs: set[str], fmt: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for name in sorted(dirs):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


_SHORT_DIRS = ["base", "1", "pg_xact", "Global", "D" * 40]
_SHORT_FILES = ["PG_VERSION", "pg_control", "f", "0000", "f" * 90, "données"]


@st.composite
def _archives(draw: st.DrawFn) -> tuple[dict[str, bytes], set[str], int]:
    fmt = draw(st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT]))
    dir_names = _SHORT_DIRS + ([] if fmt == tarfile.USTAR_FORMAT else ["L" * 150])
    file_names = _SHORT_FILES + ([] if fmt == tarfile.USTAR_FORMAT else ["l" * 200])
    entries = draw(
        st.lists(
            st.tuples(
                st.lists(st.sampled_from(dir_names), max_size=3),
                st.sampled_from(file_names),
                st.one_of(
                    st.binary(max_size=1500),
                    st.sampled_from([511, 512, 513, 10_000]).flatmap(
                        lambda n: st.binary(min_size=n, max_size=n)
                    ),
                ),
            ),
            max_size=12,
        )
    )
    files = {"/".join([*d, f]): data for d, f, data in entries}
    dirs = {"/".join(d[: i + 1]) for d, _, _ in entries for i in range(len(d))}
    explicit = set(draw(st.lists(st.sampled_from(sorted(dirs)), unique=True))) if dirs else set()
    return files, explicit, fmt


@settings(max_examples=80, deadline=None)
@given(
    archive=_archives(),
    compress=st.booleans(),
    sizes=st.lists(st.integers(min_value=1, max_value=3000), min_size=1, max_size=20),
)
def test_round_trip_in_random_chunks(
    archive: tuple[dict[str, bytes], set[str], int], compress: bool, sizes: list[int]
) -> None:
    files, explicit_dirs, fmt = archive
    raw = _tarball(files, explicit_dirs, fmt)
    stream = gz(raw) if compress else raw
    pieces = []
    pos = 0
    index = 0
    while pos < len(stream):
        size = sizes[index % len(sizes)]
        pieces.append(stream[pos : pos + size])
        pos += size
        index += 1

    with tempfile.TemporaryDirectory() as tmp:
        pgdata = Path(tmp) / "pgdata"
        pgdata.mkdir(mode=0o700)
        assert extract_stream(iter(pieces), pgdata, gzip=compress) == len(stream)
        tree = _tree(pgdata)

    expected: dict[str, tuple[str, int, bytes | None]] = {}
    for name, data in files.items():
        parts = name.split("/")
        for i in range(1, len(parts)):
            expected["/".join(parts[:i])] = ("dir", 0o700, None)
        expected[name] = ("file", 0o600, data)
    for name in explicit_dirs:
        expected[name] = ("dir", 0o700, None)
    assert tree == expected


def _pageserver_like() -> bytes:
    """The pageserver's shape: GNU headers, dirs 0755, files 0600, signal files, pg_control,
    WAL, and an explicit two-block end marker with no record padding."""
    parts = [directory(name) for name in (b"global", b"pg_wal", b"pg_wal/archive_status")]
    parts += [directory(b"base"), directory(b"base/1"), directory(b"base/1")]  # repeated dir
    parts.append(member(b"pg_hba.conf", b"local all all trust\n", mode=0o600))
    parts.append(member(b"postgresql.auto.conf", b"", mode=0o600))
    parts.append(member(b"PG_VERSION", b"16\n", mode=0o600))
    parts.append(member(b"base/1/PG_VERSION", b"16\n", mode=0o600))
    parts.append(member(b"zenith.signal", b"PREV LSN: none", mode=0o600))
    parts.append(member(b"global/pg_control", os.urandom(8192), mode=0o600))
    parts.append(member(b"pg_wal/000000010000000000000001", bytes(16 << 20), mode=0o600))
    return b"".join(parts) + END


def test_pageserver_shaped_archive_with_signal_fixup(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir(mode=0o700)
    (pgdata / "postgresql.conf").write_text("neon.tenant_id = 'x'\n")
    stream = gz(_pageserver_like())

    assert extract_stream(chunked(stream, 8192), pgdata) == len(stream)
    assert fixup_signal_files(pgdata) is True
    assert fixup_signal_files(pgdata) is False

    assert (pgdata / "neon.signal").read_bytes() == b"PREV LSN: none"
    assert stat.S_IMODE((pgdata / "neon.signal").stat().st_mode) == 0o600
    assert (pgdata / "postgresql.conf").read_text() == "neon.tenant_id = 'x'\n"
    assert (pgdata / "pg_wal/000000010000000000000001").stat().st_size == 16 << 20
    for path in pgdata.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.name != "postgresql.conf":
            assert mode == (0o700 if path.is_dir() else 0o600), path


def test_second_attempt_unpacks_over_a_partial_one(box: Path) -> None:
    """A failed attempt leaves files behind; the retry replaces them, and a hard link a
    previous occupant left to a file outside is broken rather than written through."""
    pgdata = box / "pgdata"
    full = gz(_pageserver_like())
    with pytest.raises(CorruptArchiveError):
        extract_stream([full[: len(full) // 3]], pgdata)
    (pgdata / "PG_VERSION").unlink()
    os.link(box / "outside" / "target", pgdata / "PG_VERSION")
    os.chmod(pgdata / "base", 0o755)  # noqa: S103 - the extractor must tighten it

    extract_stream(chunked(full, 65536), pgdata)

    assert (box / "outside" / "target").read_bytes() == b"original"
    assert (pgdata / "PG_VERSION").read_bytes() == b"16\n"
    assert (pgdata / "PG_VERSION").stat().st_nlink == 1
    assert stat.S_IMODE((pgdata / "base").stat().st_mode) == 0o700


def test_large_file_across_write_buffer(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    big = os.urandom(700_000)
    raw = member(b"big", big) + member(b"small", b"s") + END
    stream = gz(raw)
    for size in (100, 8192, 300_000, len(stream)):
        extract_stream(chunked(stream, size), pgdata)
        assert (pgdata / "big").read_bytes() == big
        assert (pgdata / "small").read_bytes() == b"s"


def test_zero_blocks_between_members_are_skipped(tmp_path: Path) -> None:
    """`ignore_zeros`: a marker followed by more valid members (concatenated archives)."""
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    raw = member(b"a", b"1") + END + member(b"b", b"2") + END + bytes(512 * 18)
    extract_stream([gz(raw)], pgdata)
    assert (pgdata / "a").read_bytes() == b"1"
    assert (pgdata / "b").read_bytes() == b"2"


def test_base256_size_and_ustar_prefix(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    size_field = b"\x80" + (5).to_bytes(11, "big")
    raw = (
        header(b"b256", size_field=size_field)
        + b"hello"
        + pad(5)
        + member(b"file", b"p", magic=USTAR, prefix=b"some/dir")
        + END
    )
    extract_stream([raw], pgdata, gzip=False)
    assert (pgdata / "b256").read_bytes() == b"hello"
    assert (pgdata / "some/dir/file").read_bytes() == b"p"


def test_dot_components_are_dropped(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    raw = directory(b"./") + directory(b"./base//1/") + member(b"./base/./1/x", b"y") + END
    extract_stream([raw], pgdata, gzip=False)
    assert (pgdata / "base/1/x").read_bytes() == b"y"


def test_sink_refuses_use_after_failure_and_after_finish(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    sink = TarballSink(pgdata)
    with pytest.raises(UnsafeMemberError):
        sink.feed(gz(member(b"../x", b"y") + END))
    with pytest.raises(ArchiveError, match="already failed"):
        sink.feed(b"more")
    with pytest.raises(ArchiveError, match="already failed"):
        sink.finish()

    with TarballSink(pgdata) as ok:
        ok.feed(gz(OK_TAR + END))
        ok.finish()
        assert ok.members == 3
        with pytest.raises(ArchiveError, match="already finished"):
            ok.feed(b"")


def test_missing_pgdata_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="cannot open the data directory"):
        TarballSink(tmp_path / "absent")


def test_threaded_sink_in_batches(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    stream = gz(_pageserver_like())

    async def main() -> int:
        sink = ThreadedSink(pgdata, batch_bytes=50_000)
        try:
            for piece in chunked(stream, 8192):
                await sink.feed(piece)
            await sink.finish()
        finally:
            await sink.close()
        return sink.compressed_bytes

    assert asyncio.run(main()) == len(stream)
    assert (pgdata / "global/pg_control").stat().st_size == 8192


def test_threaded_sink_propagates_errors(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    stream = gz(_pageserver_like())

    async def failing() -> None:
        # The client fails while a batch is being unpacked: its error is the one reported.
        sink = ThreadedSink(pgdata, batch_bytes=10)
        try:
            await sink.feed(stream[:100_000])
            await sink.feed(stream[100_000:200_000])
            raise RuntimeError("ErrorResponse from the server")
        finally:
            await sink.close()

    with pytest.raises(RuntimeError, match="ErrorResponse"):
        asyncio.run(failing())

    async def corrupt() -> None:
        sink = ThreadedSink(pgdata)
        try:
            await sink.feed(gz(member(b"/abs", b"x") + END))
            await sink.finish()
        finally:
            await sink.close()

    with pytest.raises(UnsafeMemberError):
        asyncio.run(corrupt())


def test_fixup_signal_files_cases(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    assert fixup_signal_files(pgdata) is False  # neither
    (pgdata / "neon.signal").write_text("PREV LSN: 0/1")
    (pgdata / "zenith.signal").write_text("PREV LSN: 0/2")
    assert fixup_signal_files(pgdata) is False  # neon.signal wins
    assert (pgdata / "neon.signal").read_text() == "PREV LSN: 0/1"


def test_fixup_signal_files_does_not_follow_symlinks(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("do not copy")
    (pgdata / "zenith.signal").symlink_to(secret)
    with pytest.raises(ArchiveError, match=r"zenith\.signal"):
        fixup_signal_files(pgdata)
    assert not (pgdata / "neon.signal").exists()


def test_fixup_signal_files_refuses_a_fifo(tmp_path: Path) -> None:
    pgdata = tmp_path / "pgdata"
    pgdata.mkdir()
    os.mkfifo(pgdata / "zenith.signal")
    with pytest.raises(UnsafeMemberError, match="not a regular file"):
        fixup_signal_files(pgdata)
    assert not (pgdata / "neon.signal").exists()

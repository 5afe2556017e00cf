"""Download one extension archive from the gateway, unpack it, and move its files into place.

`GET <base URL><archive path>`; only `200` is a success (`503` and any other status are
errors with upstream's texts). Every request counts once in
`compute_ctl_remote_ext_requests_total` under the full status line (`"200 OK"`,
`"404 Not Found"`) or `"unknown"` when no answer came.

The body is a tar archive compressed with zstd (one or more frames). It is decompressed while
it arrives and unpacked by the basebackup's hardened tar reader (only regular files and
directories; no links, absolute paths or `..`; nothing written outside the scratch directory)
into a fresh directory under `<install>/download_extensions`; then `share/extension/*` and
`lib/*` are moved into the installation and the scratch directory is removed.

Blocking: the manager runs it in a worker thread. The client is the standard library's, with
a socket timeout so a stalled gateway cannot hold a download forever. The base URL's user
information, if any, never reaches the log.
"""

from __future__ import annotations

import http.client
import logging
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, Final
from urllib.parse import quote, urlsplit, urlunsplit

import zstandard

from compute_ctl.archive import ArchiveError, TarballSink
from compute_ctl.control_plane import UNKNOWN_STATUS, status_line
from compute_ctl.formats import rust_debug_str
from compute_ctl.remote_ext.errors import DownloadError
from compute_ctl.remote_ext.index import RemoteArchive
from compute_ctl.remote_ext.install import (
    InstallError,
    PgInstall,
    install_unpacked,
    remove_tree,
)

log = logging.getLogger(__name__)

REQUEST_TIMEOUT: Final = 60.0
CHUNK: Final = 256 * 1024
OK_LABEL: Final = status_line(200)
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")

StatusCounter = Callable[[str], None]


def archive_url(base_url: str, archive: RemoteArchive) -> str:
    """The archive's URL: the (slash-terminated) base URL joined with its path."""
    return base_url + quote(archive.path, safe="/")


def redacted(url: str) -> str:
    """`url` without user information, for the log."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _chunks(body: BinaryIO) -> Iterator[bytes]:
    while chunk := body.read(CHUNK):
        yield chunk


class _Zstd:
    """Decompresses a stream of concatenated zstd frames; `finish` fails on a cut frame."""

    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._partial = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data:
            try:
                out = self._obj.decompress(data)
            except zstandard.ZstdError as exc:
                raise ArchiveError(f"corrupt zstd stream: {exc}") from exc
            self._partial = True
            if out:
                yield out
            if not self._obj.eof:
                return
            data = self._obj.unused_data
            self._obj = self._dctx.decompressobj()
            self._partial = False

    def finish(self) -> None:
        if self._partial:
            raise ArchiveError("truncated zstd stream")


def _open(url: str, count: StatusCounter) -> http.client.HTTPResponse:
    """The 200 response, or DownloadError with upstream's texts (the attempt is counted)."""
    request = urllib.request.Request(url, method="GET")  # noqa: S310 - checked http(s)
    try:
        response: http.client.HTTPResponse = urllib.request.urlopen(  # noqa: S310 - http(s) only
            request, timeout=REQUEST_TIMEOUT
        )
    except urllib.error.HTTPError as exc:
        exc.close()
        label = status_line(exc.code)
        count(label)
        if exc.code == 503:
            raise DownloadError("remote extensions server is temporarily unavailable") from None
        raise DownloadError(
            f"unexpected remote extensions server response status code: {label}"
        ) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        count(UNKNOWN_STATUS)
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise DownloadError(
            f"could not perform remote extensions server request: {reason}"
        ) from None
    if response.status != 200:
        label = status_line(response.status)
        response.close()
        count(label)
        raise DownloadError(f"unexpected remote extensions server response status code: {label}")
    count(OK_LABEL)
    return response


def _unpack(response: BinaryIO, scratch: Path) -> int:
    """Stream the body through zstd into the tar reader; returns the compressed size."""
    size = 0
    zstd = _Zstd()
    with TarballSink(scratch, gzip=False) as sink:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError(
                    f"could not read remote extensions server response: {exc!r}"
                ) from None
            if not chunk:
                break
            size += len(chunk)
            for out in zstd.feed(chunk):
                sink.feed(out)
        zstd.finish()
        sink.finish()
    return size


def fetch_and_install(
    base_url: str, archive: RemoteArchive, install: PgInstall, count: StatusCounter
) -> int:
    """Download, unpack and install `archive`; returns its (compressed) size in bytes."""
    name = rust_debug_str(archive.extension)
    url = archive_url(base_url, archive)
    if urlsplit(url).scheme not in ("http", "https"):
        raise DownloadError(f"error downloading extension {name}: the URL is not http(s)")
    log.info("downloading extension %s from %s", archive.extension, redacted(url))
    try:
        response = _open(url, count)
    except DownloadError as exc:
        raise DownloadError(f"error downloading extension {name}: {exc}") from None
    try:
        try:
            install.download_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
            prefix = _UNSAFE.sub("_", archive.extension)[:64] + "."
            scratch = Path(tempfile.mkdtemp(prefix=prefix, dir=install.download_dir))
        except OSError as exc:
            raise DownloadError(
                f"could not unpack extension {name}: cannot create a directory in "
                f"{install.download_dir}: {exc.strerror}"
            ) from None
        try:
            size = _unpack(response, scratch)
            moved = install_unpacked(scratch, install)
        except DownloadError as exc:
            raise DownloadError(f"error downloading extension {name}: {exc}") from None
        except (ArchiveError, InstallError) as exc:
            raise DownloadError(f"could not unpack extension {name}: {exc}") from None
        except OSError as exc:
            raise DownloadError(f"could not unpack extension {name}: {exc.strerror}") from None
        finally:
            remove_tree(scratch)
    finally:
        response.close()
    log.info(
        "extension %s installed: %d bytes downloaded, %d entries moved into place",
        archive.extension,
        size,
        moved,
    )
    return size

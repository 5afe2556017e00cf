"""The pageserver's libpq `page_service`, client side: basebackup (and LSN leases).

compute_ctl fetches the basebackup of shard 0 over libpq unless the spec prefers gRPC. The
connection carries the parameters upstream sends: the URL's user,
the storage token as password (replacing the URL's), `application_name=compute_ctl`, and
`options=-c neon.compute_mode=<mode>`; no TLS and no GSS encryption are attempted, since the
pageserver offers neither. psycopg 3 sends `cursor.copy()` as a simple Query, which the
pageserver accepts for its zero-column COPY OUT; autocommit keeps psycopg from sending a BEGIN
that the pageserver would reject.

The stream is read to its very end, CopyDone and CommandComplete included, so an ErrorResponse
anywhere (even after a complete-looking tarball) fails the attempt. If the sink fails
instead, the connection is closed at once rather than cancelled and drained, which for a large
backup would mean reading the rest of it for nothing.

Failures become `StorageError`s naming the pageserver by host and port (never the password or
the token) and the cause. `transient` follows the same rule as the gRPC client: authentication
and permission failures are not transient (the same token will be refused again); everything
else (connection failures, unknown timelines, server errors, cut streams) is.
"""

from __future__ import annotations

import datetime
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg

from compute_ctl.errors import StorageError
from compute_ctl.spec.types import Lsn, TenantId, TenantShardId, TimelineId
from compute_ctl.storage.sink import BasebackupStats, ChunkSink, feed

APPLICATION_NAME = "compute_ctl"
DEFAULT_PORT = 5432
_AUTH_FAILURES = ("JWT authentication error", "Unauthorized", "fe_sendauth", "password")


@dataclass(frozen=True)
class PageserverUrl:
    """A pageserver libpq URL: the URL itself for libpq, and what messages may show."""

    url: str
    host: str
    port: int
    password: str | None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, url: str) -> PageserverUrl:
        """Accept `postgres://` and `postgresql://` URLs with a host (port default 5432)."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            shown = _redact(str(exc), [])
            raise StorageError(
                "pageserver", f"invalid pageserver URL: {shown}", transient=False
            ) from None
        if parts.scheme not in ("postgres", "postgresql") or not parts.hostname:
            raise StorageError(
                "pageserver",
                "invalid pageserver URL: expected postgres://[user@]host[:port]",
                transient=False,
            )
        return cls(url.strip(), parts.hostname, port or DEFAULT_PORT, parts.password)


def _redact(text: str, secrets: list[str | None]) -> str:
    """`text` without any of `secrets` and without the password part of any URL in it."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return re.sub(r"(://[^:/@\s]*):[^@\s]*@", r"\1:<redacted>@", text)


def basebackup_command(
    tenant_id: TenantId, timeline_id: TimelineId, lsn: Lsn | None, *, replica: bool
) -> str:
    """compute_ctl's exact command: the LSN only when known (not None, not 0/0)."""
    words = ["basebackup", str(tenant_id), str(timeline_id)]
    if lsn:
        words.append(str(lsn))
    words.append("--gzip")
    if replica:
        words.append("--replica")
    return " ".join(words)


def _is_auth_failure(text: str) -> bool:
    return any(marker in text for marker in _AUTH_FAILURES)


def _describe(exc: psycopg.Error) -> str:
    """A psycopg error in one line: the server's message and SQLSTATE, or libpq's text."""
    if exc.sqlstate and exc.diag.message_primary:
        return f"{exc.diag.message_primary} (SQLSTATE {exc.sqlstate})"
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _storage_error(
    target: PageserverUrl, what: str, exc: psycopg.Error, token: str | None
) -> StorageError:
    cause = _redact(_describe(exc), [token, target.password])
    return StorageError(
        _redact(target.url, [target.password]),
        f"{what} pageserver {target.address} failed: {cause}",
        transient=not _is_auth_failure(cause),
    )


async def _connect(
    target: PageserverUrl, token: str | None, what: str, **params: Any
) -> psycopg.AsyncConnection[Any]:
    """Connect with the URL's parameters plus `params`; the token replaces any password."""
    if token:
        params["password"] = token
    try:
        return await psycopg.AsyncConnection.connect(
            target.url, autocommit=True, sslmode="disable", gssencmode="disable", **params
        )
    except psycopg.Error as exc:
        raise _storage_error(target, f"{what}: connecting to", exc, token) from None


async def libpq_basebackup(
    url: str,
    tenant_id: TenantId,
    timeline_id: TimelineId,
    lsn: Lsn | None,
    *,
    mode_type: str,
    token: str | None,
    sink: ChunkSink,
) -> BasebackupStats:
    """Stream a gzip basebackup of the pageserver's shard 0 into `sink`.

    `lsn` None or 0/0 asks for the latest LSN; every mode but `primary` asks for a replica
    backup. Returns once the server has confirmed the end of the stream; the caller finishes
    the sink. Errors raised by `sink.feed` propagate unchanged (the connection is closed
    first); every other failure is a `StorageError`.
    """
    started = time.monotonic_ns()
    target = PageserverUrl.parse(url)
    command = basebackup_command(tenant_id, timeline_id, lsn, replica=mode_type != "primary")
    conn = await _connect(
        target,
        token,
        "basebackup",
        application_name=APPLICATION_NAME,
        options=f"-c neon.compute_mode={mode_type}",
    )
    connected = time.monotonic_ns()
    received = 0
    try:
        async with conn.cursor() as cursor, cursor.copy(command.encode()) as copy:
            async for data in copy:
                received += len(data)
                try:
                    await feed(sink, bytes(data))
                except BaseException:
                    # Stop the stream now: leaving the block would cancel and drain it.
                    await conn.close()
                    raise
    except psycopg.Error as exc:
        raise _storage_error(target, "basebackup from", exc, token) from None
    finally:
        await conn.close()
    return BasebackupStats(
        connect_micros=(connected - started) // 1000,
        compressed_bytes=received,
        duration_ms=(time.monotonic_ns() - started) // 1_000_000,
    )


def lease_lsn_command(tenant_shard_id: TenantShardId, timeline_id: TimelineId, lsn: Lsn) -> str:
    """compute_ctl's lease command, trailing space included."""
    return f"lease lsn {tenant_shard_id} {timeline_id} {lsn} "


async def libpq_lease_lsn(
    url: str,
    tenant_shard_id: TenantShardId,
    timeline_id: TimelineId,
    lsn: Lsn,
    *,
    token: str | None,
) -> datetime.datetime | None:
    """Ask one pageserver to keep `lsn` readable on one shard; return when the lease expires
    (UTC), or None when it is not granted (behind the GC cutoff), which is permanent.

    As upstream, the URL is used as it is plus the token: no application_name, no options.
    Every failure (connection, ErrorResponse, an answer without a row) is a `StorageError`.
    """
    target = PageserverUrl.parse(url)
    conn = await _connect(target, token, "lsn lease")
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(lease_lsn_command(tenant_shard_id, timeline_id, lsn).encode())
            row = await cursor.fetchone()
    except psycopg.Error as exc:
        raise _storage_error(target, "lsn lease from", exc, token) from None
    finally:
        await conn.close()
    if row is None or len(row) != 1:
        raise StorageError(
            _redact(target.url, [target.password]),
            f"lsn lease from pageserver {target.address}: no valid_until row",
            transient=True,
        )
    value = row[0]
    if value is None:
        return None
    try:
        millis = int(value)
    except (TypeError, ValueError):
        raise StorageError(
            _redact(target.url, [target.password]),
            f"lsn lease from pageserver {target.address}: invalid valid_until {value!r}",
            transient=True,
        ) from None
    return datetime.datetime.fromtimestamp(millis / 1000, tz=datetime.UTC)

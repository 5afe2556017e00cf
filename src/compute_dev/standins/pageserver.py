"""The pageserver's libpq listener (`page_service`), as a development stand-in.

It serves what compute_ctl asks a pageserver over libpq: `basebackup` (and `fullbackup`) as COPY
OUT, `lease lsn` as a one-row result, and `set …`. Timelines come from a `TimelineStore`: each is
a stored data directory at a stored LSN, so the stand-in can serve exactly that LSN (or "latest",
which is the same). An earlier LSN is refused as being below the GC cutoff and a later one as a
`wait_lsn` timeout, which are the errors a pageserver gives for LSNs it cannot serve.

Authentication is Trust, or NeonJWT when a public key is given (Ed25519): the token comes
as a cleartext password at the handshake, and every command is checked against the tenant it
names. Error texts follow, including the difference between the simple protocol
(psql, psycopg) and the extended one (the Rust compute_ctl).

Every failure a client must survive can be switched on through `Faults`,
which the tests may change while the server runs. The tarball payload is compressed here rather
than by `Timeline.tar_chunks(gzip=True)` because several faults need to stop, sync-flush or
corrupt the gzip member at a chosen point.

One log line per request says what was asked and what happened; tokens never reach a log line or
an error text.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import time
import zlib
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass, field
from functools import partial

from compute_ctl.spec.types import Lsn, ShardIndex, TenantId, TenantShardId, TimelineId
from compute_dev.standins.pgwire import (
    JWT_AUTH_ERROR,
    BackendError,
    Column,
    DropConnectionError,
    PgConnection,
    Query,
    QueryError,
    handle_client,
)
from compute_dev.standins.storage_auth import (
    AuthError,
    Claims,
    JwtVerifier,
    Scope,
    check_pageserver_permission,
)
from compute_dev.standins.timelines import Timeline, TimelineError, TimelineStore

# Named as before the split into packages, so log lines and their filters stay the same.
log = logging.getLogger("compute_dev.pageserver")

TRUST_PARAMETERS = (
    ("client_encoding", "UTF8"),
    ("integer_datetimes", "on"),
    ("server_version", "14.1"),
)
"""ParameterStatus after a Trust handshake; a JWT handshake sends only client_encoding."""
JWT_PARAMETERS = (("client_encoding", "UTF8"),)

DEFAULT_LEASE_LENGTH = 600.0
"""`lsn_lease_length`: 10 minutes."""
FAILPOINT_MESSAGE = "failpoint basebackup-before-control-file"

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_CORRUPT_DEFLATE = b"\x06" + bytes(range(256)) * 4
"""After a sync flush a deflate stream is at a block boundary; 0x06 starts a block of the
reserved type 3, which every inflater rejects."""


# -- faults ------------------------------------------------------------------------------------


@dataclass
class Faults:
    """Failures to inject, read at the moment a request reaches each point, so tests may
    switch them while the server runs.

    `times` limits how often failures fire in total (None: every time), e.g. `times=2` makes the
    first two attempts fail and the third succeed; `fired` counts the failures injected. The
    delay and the lease length are conditions, not failures: they neither use nor count.
    """

    times: int | None = None
    fired: int = 0
    drop_before_handshake: bool = False
    """#1: close the connection as soon as it is accepted."""
    reject_auth: bool = False
    """#2: ask for a password (even in Trust mode) and reject it as a bad JWT."""
    deny_tenant: bool = False
    """#3: every command fails its permission check (tenant mismatch; connection kept)."""
    timeline_not_found: bool = False
    """#4: the timeline is not found, before CopyOutResponse."""
    timeline_archived: bool = False
    """#4: the timeline is archived (also NotFound), before CopyOutResponse."""
    copy_delay: float = 0.0
    """#5: seconds to wait before CopyOutResponse, as `wait_lsn` does."""
    error_mid_stream: bool = False
    """#6: stop the tarball after `cut_after` bytes and send an ErrorResponse in place of
    CopyDone; the gzip member is left unfinished."""
    error_after_end_marker: bool = False
    """#7: send the whole tarball, end-of-archive marker included, but not the gzip trailer,
    then an ErrorResponse in place of CopyDone."""
    corrupt_gzip: bool = False
    """#8: after `cut_after` bytes, send bytes no inflater accepts; the protocol ends cleanly."""
    drop_mid_stream: bool = False
    """#8: after `cut_after` bytes, close the connection."""
    cut_after: int = 1024 * 1024
    """Uncompressed tarball bytes sent before the mid-stream faults strike."""
    lease_not_granted: bool = False
    """#11: `lease lsn` answers NULL (behind the GC cutoff), which stops the lease loop."""
    lease_error: bool = False
    """#12: `lease lsn` answers an ErrorResponse, which the lease loop retries."""
    lease_length: float = DEFAULT_LEASE_LENGTH
    """#13: seconds a lease lasts."""

    def take(self, armed: bool) -> bool:
        """Whether an armed failure fires now (and count it)."""
        if not armed:
            return False
        if self.times is not None:
            if self.times <= 0:
                return False
            self.times -= 1
        self.fired += 1
        return True


class _Cut(enum.Enum):
    ERROR_MID_STREAM = "error mid-stream"
    ERROR_AFTER_END_MARKER = "error after end-of-archive marker"
    CORRUPT = "corrupt stream"
    DROP = "connection dropped mid-stream"


# -- errors and commands -----------------------------------------------------------------------


@dataclass(frozen=True)
class BaseBackupCmd:
    tenant_id: TenantId
    timeline_id: TimelineId
    lsn: Lsn | None
    gzip: bool
    replica: bool


@dataclass(frozen=True)
class FullBackupCmd:
    tenant_id: TenantId
    timeline_id: TimelineId
    lsn: Lsn | None
    prev_lsn: Lsn | None


@dataclass(frozen=True)
class LeaseLsnCmd:
    tenant_shard_id: TenantShardId
    timeline_id: TimelineId
    lsn: Lsn


@dataclass(frozen=True)
class SetCmd:
    pass


@dataclass(frozen=True)
class PageStreamCmd:
    version: str
    tenant_id: TenantId
    timeline_id: TimelineId


Command = BaseBackupCmd | FullBackupCmd | LeaseLsnCmd | SetCmd | PageStreamCmd


def parse_command(query: str) -> Command:
    """Parse a page_service command as the pageserver does: trim, split at the first
    space, match the word case-insensitively, split the rest on whitespace."""
    text = query.strip()
    word, space, rest = text.partition(" ")
    if not space:
        raise BackendError("other", f"cannot parse query: {text}")
    params = rest.split()
    match word.lower():
        case "basebackup":
            return _parse_basebackup(text, params)
        case "fullbackup":
            return _parse_fullbackup(text, params)
        case "lease":
            sub, space, lease_rest = rest.strip().partition(" ")
            if not space or sub.lower() != "lsn":
                raise BackendError("other", f"invalid lease command: {text}")
            return _parse_lease_lsn(text, lease_rest.split())
        case "set":
            return SetCmd()
        case "pagestream_v2" | "pagestream_v3":
            if len(params) != 2:
                raise BackendError(
                    "other", f"invalid number of parameters for {word.lower()} command: {text}"
                )
            return PageStreamCmd(word.lower(), _tenant(params[0]), _timeline(params[1]))
        case _:
            raise BackendError("other", f"unsupported command {word} in {text}")


def _tenant(text: str) -> TenantId:
    try:
        return TenantId(text)
    except ValueError as exc:
        raise BackendError("other", f"Failed to parse tenant id from {text}", str(exc)) from None


def _timeline(text: str) -> TimelineId:
    try:
        return TimelineId(text)
    except ValueError as exc:
        raise BackendError("other", f"Failed to parse timeline id from {text}", str(exc)) from None


def _lsn(text: str) -> Lsn:
    try:
        return Lsn.parse(text)
    except ValueError as exc:
        raise BackendError("other", f"Failed to parse lsn from {text}", str(exc)) from None


def _tenant_shard(text: str) -> TenantShardId:
    """`<tenant>` (unsharded) or `<tenant>-NNCC`."""
    tenant, dash, shard = text.partition("-")
    try:
        index = ShardIndex.parse(shard) if dash else ShardIndex.unsharded()
    except ValueError as exc:
        raise BackendError("other", f"Failed to parse tenant id from {text}", str(exc)) from None
    return TenantShardId(_tenant(tenant), index)


def _parse_basebackup(text: str, params: list[str]) -> BaseBackupCmd:
    if len(params) < 2:
        raise BackendError("other", f"invalid number of parameters for basebackup command: {text}")
    tenant_id, timeline_id = _tenant(params[0]), _timeline(params[1])
    lsn: Lsn | None = None
    flags_from = 2
    if len(params) > 2 and not params[2].startswith("--"):
        flags_from = 3
        if params[2] != "latest":
            lsn = _lsn(params[2])
    seen: set[str] = set()
    for flag in params[flags_from:]:
        if flag not in ("--gzip", "--replica"):
            raise BackendError("other", f"invalid parameter for basebackup command: {flag}")
        if flag in seen:
            raise BackendError("other", f"duplicate parameter for basebackup command: {flag}")
        seen.add(flag)
    return BaseBackupCmd(tenant_id, timeline_id, lsn, "--gzip" in seen, "--replica" in seen)


def _parse_fullbackup(text: str, params: list[str]) -> FullBackupCmd:
    if not 2 <= len(params) <= 4:
        raise BackendError("other", f"invalid number of parameters for fullbackup command: {text}")
    lsn = _lsn(params[2]) if len(params) > 2 else None
    prev_lsn = _lsn(params[3]) if len(params) > 3 else None
    return FullBackupCmd(_tenant(params[0]), _timeline(params[1]), lsn, prev_lsn)


def _parse_lease_lsn(text: str, params: list[str]) -> LeaseLsnCmd:
    if len(params) != 3:
        raise BackendError("other", f"invalid number of parameters for lease lsn command: {text}")
    return LeaseLsnCmd(_tenant_shard(params[0]), _timeline(params[1]), _lsn(params[2]))


def compute_mode_of(options: str) -> str | None:
    """`neon.compute_mode` from a startup `options` string (`-c k=v` or `-ck=v`), best effort:
    like the pageserver, the stand-in only logs it."""
    tokens = options.split()
    for index, token in enumerate(tokens):
        setting = token[2:] if token.startswith("-c") else None
        if setting == "" and index + 1 < len(tokens):
            setting = tokens[index + 1]
        if setting and setting.startswith("neon.compute_mode="):
            return setting.partition("=")[2]
    return None


# -- the server --------------------------------------------------------------------------------


@dataclass
class _Request:
    """What one request's log line says."""

    command: str
    tenant: str = "-"
    timeline: str = "-"
    lsn: str = "-"
    bytes: int = 0
    outcome: str = "ok"

    def line(self, peer: str, mode: str | None) -> str:
        return (
            f"libpq {self.command} peer={peer} compute_mode={mode or '-'} tenant={self.tenant}"
            f" timeline={self.timeline} lsn={self.lsn} bytes={self.bytes}: {self.outcome}"
        )


@dataclass
class PageserverLibpq:
    """The listener's state: where timelines come from, how to authenticate, what to break,
    and the leases granted so far."""

    store: TimelineStore
    verifier: JwtVerifier | None = None
    faults: Faults = field(default_factory=Faults)
    leases: dict[tuple[str, TimelineId, Lsn], float] = field(default_factory=dict)
    """(tenant shard, timeline, lsn) → expiry, seconds since the epoch."""

    async def session(self, conn: PgConnection) -> None:
        """The handshake of, then the query loop."""
        if self.faults.take(self.faults.drop_before_handshake):
            raise DropConnectionError
        params = await conn.read_startup()
        if params is None:
            return  # a CancelRequest: nothing runs that could be cancelled
        claims: Claims | None = None
        if self.verifier is not None or self.faults.reject_auth:
            token = await conn.read_password()
            if self.faults.take(self.faults.reject_auth) or self.verifier is None:
                raise QueryError(JWT_AUTH_ERROR, close=True)
            try:
                claims = self.verifier.decode(token)
                if claims.scope is Scope.TENANT and claims.tenant_id is None:
                    raise AuthError("scope tenant without a tenant_id")
            except AuthError as exc:
                log.info("libpq handshake from %s: %s: %s", conn.peer, JWT_AUTH_ERROR, exc)
                raise QueryError(JWT_AUTH_ERROR, close=True) from None
            conn.authentication_ok(JWT_PARAMETERS)
        else:
            conn.authentication_ok(TRUST_PARAMETERS)
        mode = compute_mode_of(params.get("options", ""))
        await conn.serve_queries(partial(self._query, claims=claims, mode=mode))

    async def _query(
        self, conn: PgConnection, query: Query, *, claims: Claims | None, mode: str | None
    ) -> None:
        request = _Request(query.text.strip().partition(" ")[0].lower() or "-")
        try:
            command = parse_command(query.text)
            match command:
                case BaseBackupCmd():
                    await self._basebackup(conn, command, claims, request)
                case FullBackupCmd():
                    await self._fullbackup(conn, command, claims, request)
                case LeaseLsnCmd():
                    self._lease_lsn(conn, command, claims, request)
                case SetCmd():
                    conn.command_complete("SELECT 1")
                case PageStreamCmd():
                    self._pagestream(command, claims, request)
        except BackendError as exc:
            request.outcome = f"error: {exc}"
            raise
        except DropConnectionError:
            request.outcome = "connection dropped (injected)"
            raise
        except BaseException as exc:
            request.outcome = f"failed: {exc!r}"
            raise
        finally:
            log.info("%s", request.line(conn.peer, mode))

    def _permit(self, claims: Claims | None, tenant_id: TenantId) -> None:
        if self.faults.take(self.faults.deny_tenant):
            raise BackendError("unauthorized", "Tenant id mismatch. Permission denied")
        try:
            check_pageserver_permission(claims, tenant_id)
        except AuthError as exc:
            raise BackendError("unauthorized", str(exc)) from None

    def _resolve(self, tenant_id: TenantId, timeline_id: TimelineId) -> Timeline:
        """The stored timeline, or the NotFound errors of (real or injected)."""
        if self.faults.take(self.faults.timeline_not_found):
            raise BackendError("not_found", f"Timeline {tenant_id}/{timeline_id} was not found")
        try:
            timeline = self.store.get(tenant_id, timeline_id)
            tenant_known = timeline is not None or any(
                t.tenant_id == tenant_id for t in self.store.list()
            )
        except TimelineError as exc:
            raise BackendError("other", "cannot read the timeline store", str(exc)) from None
        if timeline is None:
            if not tenant_known:
                raise BackendError("not_found", f"Tenant {tenant_id} not found")
            raise BackendError("not_found", f"Timeline {tenant_id}/{timeline_id} was not found")
        if self.faults.take(self.faults.timeline_archived):
            raise BackendError("not_found", "timeline is archived")
        return timeline

    @staticmethod
    def _check_backup_lsn(timeline: Timeline, lsn: Lsn | None) -> Lsn:
        """The LSN to serve: the stored one. Later LSNs never arrive (`wait_lsn` times out);
        earlier ones are below the stand-in's GC cutoff, which is the stored LSN."""
        if lsn is None or lsn == timeline.lsn:
            return timeline.lsn
        if lsn > timeline.lsn:
            raise BackendError(
                "other",
                f"Timed out while waiting for WAL record at LSN {lsn} to arrive, "
                f"last_record_lsn {timeline.lsn} disk consistent LSN={timeline.lsn}",
            )
        raise BackendError(
            "other",
            "invalid basebackup lsn",
            f"LSN {lsn} is earlier than latest GC cutoff {timeline.lsn} "
            "(we might've already garbage collected needed data)",
        )

    async def _basebackup(
        self, conn: PgConnection, cmd: BaseBackupCmd, claims: Claims | None, request: _Request
    ) -> None:
        # --replica only leaves out replication slots, which a stored initdb directory lacks.
        request.command += " --gzip" * cmd.gzip + " --replica" * cmd.replica
        await self._send_backup(conn, cmd, claims, request)

    async def _fullbackup(
        self, conn: PgConnection, cmd: FullBackupCmd, claims: Claims | None, request: _Request
    ) -> None:
        # The store does not know the previous LSN, so a given prev_lsn cannot disagree.
        await self._send_backup(conn, cmd, claims, request)

    async def _send_backup(
        self,
        conn: PgConnection,
        cmd: BaseBackupCmd | FullBackupCmd,
        claims: Claims | None,
        request: _Request,
    ) -> None:
        """The steps in order: permission, timeline, wait, LSN check, then the COPY OUT."""
        request.tenant, request.timeline = str(cmd.tenant_id), str(cmd.timeline_id)
        request.lsn = str(cmd.lsn) if cmd.lsn is not None else "latest"
        gzip = isinstance(cmd, BaseBackupCmd) and cmd.gzip
        self._permit(claims, cmd.tenant_id)
        timeline = self._resolve(cmd.tenant_id, cmd.timeline_id)
        if self.faults.copy_delay > 0:
            await asyncio.sleep(self.faults.copy_delay)
        request.lsn = str(self._check_backup_lsn(timeline, cmd.lsn))
        cut = self._cut()
        conn.copy_out_response()
        payload = _in_thread(_payload(timeline, gzip, cut, self.faults.cut_after))
        try:
            async with contextlib.aclosing(payload) as chunks:
                async for chunk in chunks:
                    await conn.copy_data(chunk)
                    request.bytes += len(chunk)
        except TimelineError as exc:
            raise BackendError("other", "basebackup failed", str(exc)) from None
        if cut is _Cut.DROP:
            raise DropConnectionError
        if cut is _Cut.ERROR_MID_STREAM:
            raise BackendError("other", FAILPOINT_MESSAGE)
        if cut is _Cut.ERROR_AFTER_END_MARKER:
            raise BackendError(
                "other", "basebackup failed after the end-of-archive marker (injected)"
            )
        if cut is _Cut.CORRUPT:
            request.outcome = "ok (stream corrupted on purpose)"
        conn.copy_done()
        conn.command_complete("SELECT 1")

    def _cut(self) -> _Cut | None:
        faults = self.faults
        for armed, cut in (
            (faults.error_mid_stream, _Cut.ERROR_MID_STREAM),
            (faults.error_after_end_marker, _Cut.ERROR_AFTER_END_MARKER),
            (faults.corrupt_gzip, _Cut.CORRUPT),
            (faults.drop_mid_stream, _Cut.DROP),
        ):
            if faults.take(armed):
                return cut
        return None

    def _lease_lsn(
        self, conn: PgConnection, cmd: LeaseLsnCmd, claims: Claims | None, request: _Request
    ) -> None:
        """A row `valid_until` with the expiry in ms since the epoch, or NULL if refused.

        The stand-in accepts any shard index for its (unsharded) timelines. Its GC cutoff is
        the stored LSN, so a lease below it is refused, like a basebackup there.
        """
        tenant_id = cmd.tenant_shard_id.tenant_id
        request.command = "lease lsn"
        request.tenant, request.timeline, request.lsn = (
            str(cmd.tenant_shard_id),
            str(cmd.timeline_id),
            str(cmd.lsn),
        )
        self._permit(claims, tenant_id)
        timeline = self._resolve(tenant_id, cmd.timeline_id)
        if self.faults.take(self.faults.lease_error):
            raise BackendError("other", "lease lsn failed (injected)")
        valid_until: str | None = None
        if not self.faults.take(self.faults.lease_not_granted) and cmd.lsn >= timeline.lsn:
            key = (str(cmd.tenant_shard_id), cmd.timeline_id, cmd.lsn)
            expiry = max(self.leases.get(key, 0.0), time.time() + self.faults.lease_length)
            self.leases[key] = expiry
            valid_until = str(int(expiry * 1000))
        request.outcome = f"valid_until={valid_until or 'NULL'}"
        conn.row_description([Column("valid_until")])
        conn.data_row([valid_until])
        conn.command_complete("SELECT 1")

    def _pagestream(self, cmd: PageStreamCmd, claims: Claims | None, request: _Request) -> None:
        request.tenant, request.timeline = str(cmd.tenant_id), str(cmd.timeline_id)
        self._permit(claims, cmd.tenant_id)
        self._resolve(cmd.tenant_id, cmd.timeline_id)
        raise BackendError(
            "other", f"{cmd.version} is not implemented by the compute_dev pageserver stand-in"
        )


def _payload(
    timeline: Timeline, gzip: bool, cut: _Cut | None, cut_after: int
) -> Generator[bytes, None, None]:
    """The COPY payload: the timeline's tarball, gzip-compressed at the fastest level if asked,
    and cut, left unfinished or corrupted as `cut` says. Blocking (file reads, compression)."""
    if gzip and cut is None and timeline.prepared_path.is_file():
        yield from timeline.tar_chunks(gzip=True)  # the prepared file, as the gRPC side does
        return
    compressor = zlib.compressobj(1, zlib.DEFLATED, _GZIP_WBITS) if gzip else None

    def encode(data: bytes, mode: int = zlib.Z_NO_FLUSH) -> bytes:
        if compressor is None:
            return data
        return compressor.compress(data) + (compressor.flush(mode) if mode else b"")

    sent = 0
    mid_stream = cut in (_Cut.ERROR_MID_STREAM, _Cut.CORRUPT, _Cut.DROP)
    for piece in timeline.tar_chunks(gzip=False):
        if mid_stream and sent + len(piece) >= cut_after:
            yield encode(piece[: cut_after - sent], zlib.Z_SYNC_FLUSH)
            if cut is _Cut.CORRUPT:
                yield _CORRUPT_DEFLATE
            return
        sent += len(piece)
        if out := encode(piece):
            yield out
    if compressor is not None:
        # The end-of-archive marker is in; leave the member unfinished if the fault says so.
        yield compressor.flush(
            zlib.Z_SYNC_FLUSH if cut is _Cut.ERROR_AFTER_END_MARKER else zlib.Z_FINISH
        )


async def _in_thread(chunks: Generator[bytes, None, None]) -> AsyncGenerator[bytes, None]:
    """Advance a blocking iterator in worker threads, so a long tarball never stalls the loop
    (the safekeeper stand-ins share it and must answer within 100 ms)."""
    try:
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            if chunk:
                yield chunk
    finally:
        # A generator still running in its thread (the task was cancelled) cannot be closed
        # here; it is finalized when that thread lets go of it.
        with contextlib.suppress(ValueError):
            chunks.close()


async def serve_pageserver_libpq(
    store: TimelineStore,
    host: str,
    port: int,
    *,
    public_key: JwtVerifier | bytes | str | os.PathLike[str] | None = None,
    faults: Faults | None = None,
) -> asyncio.Server:
    """Start the listener (port 0 picks a free port; see `server.sockets`). Trust unless a
    public key (PEM bytes, a key file or a directory of keys) is given."""
    service = PageserverLibpq(store, JwtVerifier.coerce(public_key), faults or Faults())

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle_client(reader, writer, service.session)

    return await asyncio.start_server(on_client, host, port)

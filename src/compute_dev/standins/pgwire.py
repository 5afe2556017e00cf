"""The server side of the PostgreSQL v3 wire protocol, as much as the storage stand-ins need.

Neon's pageserver and safekeepers are not PostgreSQL servers; they speak a small subset of its
wire protocol: the startup handshake with optional cleartext
password, simple queries, a minimal extended-query sequence, COPY OUT and row results. The
stand-ins must speak the same subset, with the same quirks, so that psql, psycopg and the Rust
compute_ctl all talk to them exactly as they talk to the real servers.

Why hand-written: PyPI has no maintained, typed, asyncio server-side codec for this. The
candidates looked at were `buenavista` (a blocking `socketserver` proxy framework built around
SQL sessions, untyped, with no COPY OUT), `riffq` (a Rust server runtime with its own event loop)
and `iris-pgwire` (tied to InterSystems IRIS). The subset here is fifteen message types with
fixed layouts, so the framing is written with `struct` in this one module, on asyncio streams.

What this module decides, and the application (pageserver.py, safekeeper.py) does not:
- The handshake's framing: SSLRequest and GSSENCRequest get `N` (no TLS), a CancelRequest ends
  the connection, protocol 3.x is accepted (NegotiateProtocolVersion for a newer minor), any
  other version is refused.
- The query loop: `Q` runs the handler then sends ReadyForQuery; the extended sequence follows
  (Parse stores the text and refuses parameter types, Describe of a statement answers
  ParameterDescription(0) + NoData, Describe of a portal is a protocol violation, Bind and
  Execute work on the unnamed portal only, Execute sends no ReadyForQuery, Sync does). After an
  error inside an extended sequence, messages are skipped until Sync, as PostgreSQL does, so a
  client never sees answers to a batch it considers failed.
- ErrorResponse always has exactly the three fields S=ERROR, C=<sqlstate>, M=<message>.

CopyData is the hot path (a basebackup can be a gigabyte): each payload goes to the transport as
one write of a 5-byte header plus the payload, with the write buffer's high-water mark raised so
that `drain()` suspends per megabytes, not per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

# Named as before the split into packages, so log lines and their filters stay the same.
log = logging.getLogger("compute_dev.pgwire")

PROTOCOL_3_0 = 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

MAX_STARTUP_PACKET = 10_000
"""PostgreSQL's own limit for a startup packet."""
MAX_MESSAGE = 16 * 1024 * 1024
"""The largest frontend message accepted; the stand-ins only receive short texts."""
IDLE_TIMEOUT = 600.0
"""The read-idle timeout of Neon's postgres_backend (10 minutes)."""
WRITE_HIGH_WATER = 4 * 1024 * 1024

TEXT_OID = 25
JWT_AUTH_ERROR = "JWT authentication error"
"""What a client sees for any authentication or permission failure over the simple protocol."""

_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_I32_PAIR = struct.Struct("!ii")
_HEADER = struct.Struct("!ci")


class SqlState:
    """The SQLSTATEs the stand-ins send."""

    INTERNAL_ERROR = "XX000"
    PROTOCOL_VIOLATION = "08P01"
    FEATURE_NOT_SUPPORTED = "0A000"


class QueryError(Exception):
    """An error the client sees as an ErrorResponse; `close` ends the connection after it."""

    def __init__(
        self, message: str, sqlstate: str = SqlState.INTERNAL_ERROR, *, close: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.close = close


class BackendError(Exception):
    """A command failure of Neon's postgres_backend, which both storage servers share: its
    ErrorResponse text depends on the sub-protocol the query came through.

    `unauthorized` and `not_found` show a fixed text to simple-protocol clients and
    `Unauthorized: <message>` / `Not found: <message>` to extended ones; any other failure
    shows its whole chain (`message: cause`) to simple clients and its message alone to
    extended ones.
    """

    def __init__(
        self,
        kind: Literal["unauthorized", "not_found", "other"],
        message: str,
        cause: str | None = None,
    ) -> None:
        super().__init__(message if cause is None else f"{message}: {cause}")
        self.kind = kind
        self.message = message
        self.cause = cause

    def to_query_error(self, *, extended: bool) -> QueryError:
        if self.kind == "unauthorized":
            return QueryError(f"Unauthorized: {self.message}" if extended else JWT_AUTH_ERROR)
        if self.kind == "not_found":
            return QueryError(f"Not found: {self.message}" if extended else "not found")
        return QueryError(self.message if extended else str(self))


class ProtocolViolationError(Exception):
    """The client sent something outside the supported subset: reported, then disconnected."""


class DropConnectionError(Exception):
    """Raised by a handler to cut the connection without sending another byte (used to
    emulate a server that dies mid-stream)."""


class _EndConnectionError(Exception):
    """Internal: the query loop must stop after the error it has written."""


class ClientGoneError(Exception):
    """The client closed the connection, or stayed idle past the timeout."""


@dataclass(frozen=True)
class Column:
    """A RowDescription field; the stand-ins only ever return text columns."""

    name: str
    type_oid: int = TEXT_OID
    type_len: int = -1
    type_mod: int = -1


@dataclass(frozen=True)
class Query:
    """A query to run: its text, and whether it came through the extended protocol (some
    error texts differ between the two)."""

    text: str
    extended: bool


QueryHandler = Callable[["PgConnection", Query], Awaitable[None]]
"""Runs one query and writes its results (rows, COPY, CommandComplete) to the connection.
Raises QueryError or BackendError for an ErrorResponse, DropConnectionError to cut the
connection."""


def _cstr(text: str) -> bytes:
    return text.encode("utf-8") + b"\0"


class _Cursor:
    """Reads the fields of one frontend message body, rejecting anything malformed."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._pos = 0

    def cstr(self) -> str:
        end = self._body.find(b"\0", self._pos)
        if end < 0:
            raise ProtocolViolationError("missing string terminator in message")
        text = self._body[self._pos : end].decode("utf-8", errors="replace")
        self._pos = end + 1
        return text

    def byte(self) -> int:
        if self._pos >= len(self._body):
            raise ProtocolViolationError("message too short")
        self._pos += 1
        return self._body[self._pos - 1]

    def int16(self) -> int:
        if self._pos + 2 > len(self._body):
            raise ProtocolViolationError("message too short")
        (value,) = _I16.unpack_from(self._body, self._pos)
        self._pos += 2
        return int(value)

    def int32(self) -> int:
        if self._pos + 4 > len(self._body):
            raise ProtocolViolationError("message too short")
        (value,) = _I32.unpack_from(self._body, self._pos)
        self._pos += 4
        return int(value)


class PgConnection:
    """One client connection, server side: reading frontend messages, writing backend ones.

    Backend messages are buffered and sent by `flush()`, so a handshake or a small result goes
    out in one write; `copy_data()` is the exception and writes straight through.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        idle_timeout: float | None = IDLE_TIMEOUT,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._out = bytearray()
        self.idle_timeout = idle_timeout
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        transport = writer.transport
        if isinstance(transport, asyncio.WriteTransport):
            transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)

    # -- reading -----------------------------------------------------------------------------

    async def _read(self, size: int) -> bytes:
        try:
            async with asyncio.timeout(self.idle_timeout):
                return await self._reader.readexactly(size)
        except asyncio.IncompleteReadError as exc:
            raise ClientGoneError("the client closed the connection") from exc
        except TimeoutError as exc:
            raise ClientGoneError(f"no message from the client for {self.idle_timeout} s") from exc
        except ConnectionError as exc:
            raise ClientGoneError(str(exc)) from exc

    async def read_startup(self) -> dict[str, str] | None:
        """Run the pre-authentication part of the handshake and return the StartupMessage's
        parameters, or None when the client sent a CancelRequest (nothing to cancel here)."""
        while True:
            (length,) = _I32.unpack(await self._read(4))
            if not 8 <= length <= MAX_STARTUP_PACKET:
                raise ProtocolViolationError(f"invalid length of startup packet: {length}")
            body = await self._read(length - 4)
            (code,) = _I32.unpack_from(body)
            if code in (SSL_REQUEST_CODE, GSSENC_REQUEST_CODE):
                self._writer.write(b"N")
                await self._writer.drain()
                continue
            if code == CANCEL_REQUEST_CODE:
                return None
            if code >> 16 != 3:
                raise QueryError(
                    f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: "
                    "server supports 3.0",
                    SqlState.FEATURE_NOT_SUPPORTED,
                    close=True,
                )
            params = self._startup_params(body[4:])
            unknown = [name for name in params if name.startswith("_pq_.")]
            if code != PROTOCOL_3_0 or unknown:
                # A newer minor version or protocol options: say what we speak (3.0, none).
                names = b"".join(_cstr(name) for name in unknown)
                self._put(b"v", _I32_PAIR.pack(0, len(unknown)) + names)
            return {k: v for k, v in params.items() if k not in unknown}

    @staticmethod
    def _startup_params(body: bytes) -> dict[str, str]:
        cursor = _Cursor(body)
        params: dict[str, str] = {}
        while True:
            name = cursor.cstr()
            if not name:
                return params
            params[name] = cursor.cstr()

    async def read_message(self) -> tuple[bytes, bytes]:
        """The next frontend message as (type byte, body)."""
        kind, length = _HEADER.unpack(await self._read(5))
        if not 4 <= length <= MAX_MESSAGE:
            raise ProtocolViolationError(f"invalid message length {length}")
        return kind, await self._read(length - 4)

    async def read_password(self) -> str:
        """Ask for a cleartext password and return it (without its terminating NUL)."""
        self._put(b"R", _I32.pack(3))
        await self.flush()
        kind, body = await self.read_message()
        if kind != b"p":
            raise ProtocolViolationError(f"expected a password message, got {kind!r}")
        return body.rstrip(b"\0").decode("utf-8", errors="replace")

    # -- writing -----------------------------------------------------------------------------

    def _put(self, kind: bytes, body: bytes = b"") -> None:
        self._out += _HEADER.pack(kind, len(body) + 4)
        self._out += body

    async def flush(self) -> None:
        if self._out:
            self._writer.write(bytes(self._out))
            self._out.clear()
        await self._writer.drain()

    def authentication_ok(self, parameters: Iterable[tuple[str, str]]) -> None:
        """AuthenticationOk, the ParameterStatus messages, then ReadyForQuery (no
        BackendKeyData: the storage servers never send one)."""
        self._put(b"R", _I32.pack(0))
        for name, value in parameters:
            self._put(b"S", _cstr(name) + _cstr(value))
        self.ready_for_query()

    def ready_for_query(self) -> None:
        self._put(b"Z", b"I")

    def error(self, message: str, sqlstate: str = SqlState.INTERNAL_ERROR) -> None:
        self._put(b"E", b"SERROR\0C" + _cstr(sqlstate) + b"M" + _cstr(message) + b"\0")

    def row_description(self, columns: Sequence[Column]) -> None:
        body = bytearray(_I16.pack(len(columns)))
        for column in columns:
            body += _cstr(column.name)
            body += struct.pack(
                "!ihihih", 0, 0, column.type_oid, column.type_len, column.type_mod, 0
            )
        self._put(b"T", bytes(body))

    def data_row(self, values: Sequence[str | None]) -> None:
        body = bytearray(_I16.pack(len(values)))
        for value in values:
            if value is None:
                body += _I32.pack(-1)
            else:
                raw = value.encode("utf-8")
                body += _I32.pack(len(raw))
                body += raw
        self._put(b"D", bytes(body))

    def command_complete(self, tag: str) -> None:
        self._put(b"C", _cstr(tag))

    def copy_out_response(self) -> None:
        """CopyOutResponse as the pageserver sends it: overall format text, zero columns."""
        self._put(b"H", b"\0" + _I16.pack(0))

    async def copy_data(self, payload: bytes) -> None:
        """Send one CopyData message (flushing anything buffered before it)."""
        header = _HEADER.pack(b"d", len(payload) + 4)
        if self._out:
            self._out += header
            self._out += payload
            self._writer.write(bytes(self._out))
            self._out.clear()
        else:
            self._writer.write(header + payload)
        await self._writer.drain()

    def copy_done(self) -> None:
        self._put(b"c")

    async def close(self, *, abort: bool = False) -> None:
        """Close the socket; `abort` drops it at once (a reset), without sending what is left."""
        if abort:
            self._out.clear()
            self._writer.transport.abort()
        else:
            with contextlib.suppress(ConnectionError):
                await self.flush()
            self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    # -- the query loop ----------------------------------------------------------------------

    async def serve_queries(self, handler: QueryHandler) -> None:
        """Answer queries until the client sends Terminate (or a query error ends the
        connection). The other ends (EOF, idle timeout, a protocol violation, a handler's
        DropConnectionError) are raised for `handle_client` to finish."""
        statement: str | None = None
        skipping = False  # after an error in an extended sequence, until Sync
        try:
            while True:
                await self.flush()
                kind, body = await self.read_message()
                if kind == b"X":
                    return
                if kind == b"S":
                    skipping = False
                    self.ready_for_query()
                    continue
                if skipping:
                    continue
                if kind == b"Q":
                    await self._run(handler, Query(_Cursor(body).cstr(), extended=False))
                    self.ready_for_query()
                elif kind == b"P":
                    statement = self._parse(body)
                    self._put(b"1")
                elif kind == b"D":
                    self._describe(body)
                elif kind == b"B":
                    self._bind(body)
                    self._put(b"2")
                elif kind == b"E":
                    self._execute(body)
                    if statement is None:
                        self.error("no statement to execute: Parse was not sent")
                        skipping = True
                    else:
                        # An error ends the extended sequence: skip to Sync.
                        skipping = not await self._run(handler, Query(statement, extended=True))
                elif kind == b"C":
                    self._put(b"3")
                elif kind == b"H":
                    continue  # Flush: the loop flushes before every read
                else:
                    raise ProtocolViolationError(f"unexpected message type {kind!r}")
        except _EndConnectionError:
            return

    async def _run(self, handler: QueryHandler, query: Query) -> bool:
        """Run one query; False if it failed (its ErrorResponse is written). A failure that
        ends the connection raises _EndConnectionError once the error is written."""
        try:
            try:
                await handler(self, query)
            except BackendError as exc:
                raise exc.to_query_error(extended=query.extended) from None
        except QueryError as exc:
            self.error(exc.message, exc.sqlstate)
            if exc.close:
                raise _EndConnectionError from exc
            return False
        return True

    @staticmethod
    def _parse(body: bytes) -> str:
        cursor = _Cursor(body)
        cursor.cstr()  # the statement name is ignored
        text = cursor.cstr()
        if cursor.int16() != 0:
            raise ProtocolViolationError("query params not implemented")
        return text

    def _describe(self, body: bytes) -> None:
        cursor = _Cursor(body)
        if cursor.byte() != ord("S"):
            raise ProtocolViolationError("only statement Describe is supported")
        self._put(b"t", _I16.pack(0))  # ParameterDescription: no parameters
        self._put(b"n")  # NoData, whatever the statement returns

    @staticmethod
    def _bind(body: bytes) -> None:
        if _Cursor(body).cstr():
            raise ProtocolViolationError("only the unnamed portal is supported")

    @staticmethod
    def _execute(body: bytes) -> None:
        cursor = _Cursor(body)
        if cursor.cstr():
            raise ProtocolViolationError("only the unnamed portal is supported")
        if cursor.int32() != 0:
            raise ProtocolViolationError("Execute with a row limit is not supported")


async def handle_client(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    session: Callable[[PgConnection], Awaitable[None]],
) -> None:
    """Run `session` on a new connection and always close the socket afterwards.

    Protocol violations and `QueryError`s escaping the session (handshake failures) are sent
    to the client before the socket closes; a vanished client is not an error.
    """
    conn = PgConnection(reader, writer)
    try:
        await session(conn)
    except (QueryError, ProtocolViolationError) as exc:
        sqlstate = exc.sqlstate if isinstance(exc, QueryError) else SqlState.PROTOCOL_VIOLATION
        log.info("%s: %s", conn.peer, exc)
        conn.error(str(exc), sqlstate)
    except DropConnectionError:
        await conn.close(abort=True)
        return
    except (ClientGoneError, ConnectionError) as exc:
        log.debug("%s: connection ended: %s", conn.peer, exc)
    except asyncio.CancelledError:
        writer.transport.abort()  # the server is shutting down
        raise
    except Exception:
        log.exception("%s: connection failed", conn.peer)
        await conn.close(abort=True)
        return
    await conn.close()

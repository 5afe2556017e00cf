"""A safekeeper's libpq listener, as a development stand-in.

compute_ctl asks each safekeeper `TIMELINE_STATUS` to learn whether they already agree on the
end of WAL (the "already synced?" fast path of a Primary start). This stand-in answers from a
`TimelineStore`: a stored timeline is fully synced at its stored LSN, so both `flush_lsn` and
`commit_lsn` are that LSN; an unknown timeline gets no row, as on a real safekeeper.

The tenant and timeline come from the startup `options` (`-c timeline_id=T tenant_id=X`: one
`-c`, then `k=v` tokens split on unescaped whitespace), as upstream reads them. Authentication
is the pageserver's handshake with the safekeeper's permission rule: `tenant` scope for
that tenant, or `safekeeperdata`.

The walproposer protocol (`START_WAL_PUSH`) is not served: tests either make the fast path
succeed or use a fake `postgres --sync-safekeepers`. The faults of are in
`SafekeeperFaults`, read per request so tests can change them while the server runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass, field
from functools import partial

from compute_ctl.spec.types import Lsn, TenantId, TimelineId
from compute_dev.standins.pageserver import JWT_PARAMETERS, TRUST_PARAMETERS
from compute_dev.standins.pgwire import (
    JWT_AUTH_ERROR,
    BackendError,
    Column,
    PgConnection,
    Query,
    QueryError,
    handle_client,
)
from compute_dev.standins.storage_auth import AuthError, Claims, JwtVerifier, Scope
from compute_dev.standins.timelines import TimelineError, TimelineStore

# Named as before the split into packages, so log lines and their filters stay the same.
log = logging.getLogger("compute_dev.safekeeper")

STATUS_COLUMNS = (Column("flush_lsn"), Column("commit_lsn"))
UNSERVED_COMMANDS = ("START_WAL_PUSH", "START_REPLICATION", "IDENTIFY_SYSTEM")
"""Commands a safekeeper knows but the stand-in does not implement."""
_UNESCAPED_SPACE = re.compile(r"(?<!\\)\s+")


@dataclass
class SafekeeperFaults:
    """Ways to make `TIMELINE_STATUS` fail the fast path.

    Unequal LSNs across safekeepers: give one of them other `flush_lsn`/`commit_lsn` values;
    flush ≠ commit: set just one of them.
    """

    reject_auth: bool = False
    """Ask for a password (even in Trust mode) and reject it as a bad JWT."""
    delay: float = 0.0
    """Seconds to wait before answering (compute_ctl gives each safekeeper 100 ms)."""
    error: str | None = None
    """Answer with an ErrorResponse carrying this text."""
    no_row: bool = False
    """Answer as if the timeline did not exist here."""
    flush_lsn: Lsn | None = None
    """Report this `flush_lsn` instead of the stored LSN."""
    commit_lsn: Lsn | None = None
    """Report this `commit_lsn` instead of the stored LSN."""


def parse_options(options: str) -> tuple[TenantId | None, TimelineId | None]:
    """The tenant and timeline from a startup `options` string.

    Tokens are split on unescaped whitespace; `k=v` tokens with a known key are used (both the
    current and the old `z`-prefixed names), anything else is ignored, `-c` included.
    """
    tenant: TenantId | None = None
    timeline: TimelineId | None = None
    for raw in _UNESCAPED_SPACE.split(options.strip()):
        token = re.sub(r"\\(.)", r"\1", raw)
        key, eq, value = token.partition("=")
        if not eq:
            continue
        if key in ("tenant_id", "ztenantid"):
            try:
                tenant = TenantId(value)
            except ValueError as exc:
                raise QueryError(
                    f"Failed to parse tenant id from {value}: {exc}", close=True
                ) from None
        elif key in ("timeline_id", "ztimelineid"):
            try:
                timeline = TimelineId(value)
            except ValueError as exc:
                raise QueryError(
                    f"Failed to parse timeline id from {value}: {exc}", close=True
                ) from None
    return tenant, timeline


def check_safekeeper_permission(claims: Claims | None, tenant_id: TenantId) -> None:
    """The safekeeper's rule: `tenant` scope for that tenant, or `safekeeperdata`."""
    if claims is None:  # Trust
        return
    if claims.scope is Scope.TENANT:
        if claims.tenant_id != tenant_id:
            raise AuthError("Tenant id mismatch. Permission denied")
    elif claims.scope is not Scope.SAFEKEEPER_DATA:
        raise AuthError(f"JWT scope '{claims.scope}' is ineligible for Safekeeper auth")


@dataclass
class SafekeeperStandIn:
    """The listener's state: the store it reports from, how to authenticate, what to break."""

    store: TimelineStore
    verifier: JwtVerifier | None = None
    faults: SafekeeperFaults = field(default_factory=SafekeeperFaults)

    async def session(self, conn: PgConnection) -> None:
        """The handshake, then the query loop."""
        params = await conn.read_startup()
        if params is None:
            return
        claims: Claims | None = None
        if self.verifier is not None or self.faults.reject_auth:
            token = await conn.read_password()
            if self.faults.reject_auth or self.verifier is None:
                raise QueryError(JWT_AUTH_ERROR, close=True)
            try:
                claims = self.verifier.decode(token)
            except AuthError as exc:
                log.info("safekeeper handshake from %s: %s: %s", conn.peer, JWT_AUTH_ERROR, exc)
                raise QueryError(JWT_AUTH_ERROR, close=True) from None
        tenant, timeline = parse_options(params.get("options", ""))
        conn.authentication_ok(JWT_PARAMETERS if claims is not None else TRUST_PARAMETERS)
        await conn.serve_queries(
            partial(self._query, claims=claims, tenant=tenant, timeline=timeline)
        )

    async def _query(
        self,
        conn: PgConnection,
        query: Query,
        *,
        claims: Claims | None,
        tenant: TenantId | None,
        timeline: TimelineId | None,
    ) -> None:
        text = query.text.strip()
        outcome = "ok"
        try:
            if text.lower().startswith("set datestyle to "):
                conn.command_complete("SELECT 1")
                return
            if text.startswith("TIMELINE_STATUS"):
                outcome = await self._timeline_status(conn, claims, tenant, timeline)
                return
            if text.startswith(UNSERVED_COMMANDS):
                self._check(claims, tenant, timeline)
                raise BackendError(
                    "other",
                    f"{text.split()[0]} is not implemented by the compute_dev safekeeper stand-in",
                )
            raise BackendError("other", f"unsupported command {text}")
        except BackendError as exc:
            outcome = f"error: {exc}"
            raise
        finally:
            log.info(
                "safekeeper %s peer=%s tenant=%s timeline=%s: %s",
                text.split(" ", 1)[0] or "-",
                conn.peer,
                tenant or "-",
                timeline or "-",
                outcome,
            )

    @staticmethod
    def _check(
        claims: Claims | None, tenant: TenantId | None, timeline: TimelineId | None
    ) -> tuple[TenantId, TimelineId]:
        """What every command needs first: both ids, then permission."""
        if tenant is None:
            raise BackendError("other", "tenantid is required")
        if timeline is None:
            raise BackendError("other", "timelineid is required")
        try:
            check_safekeeper_permission(claims, tenant)
        except AuthError as exc:
            raise BackendError("unauthorized", str(exc)) from None
        return tenant, timeline

    async def _timeline_status(
        self,
        conn: PgConnection,
        claims: Claims | None,
        tenant: TenantId | None,
        timeline: TimelineId | None,
    ) -> str:
        """RowDescription(flush_lsn, commit_lsn), a row if the timeline exists, then
        CommandComplete `TIMELINE_STATUS`. Returns what the log line says."""
        tenant_id, timeline_id = self._check(claims, tenant, timeline)
        faults = self.faults
        if faults.delay > 0:
            await asyncio.sleep(faults.delay)
        if faults.error is not None:
            raise BackendError("other", faults.error)
        try:
            stored = self.store.get(tenant_id, timeline_id)
        except TimelineError as exc:
            raise BackendError("other", "cannot read the timeline store", str(exc)) from None
        conn.row_description(STATUS_COLUMNS)
        outcome = "no row"
        if stored is not None and not faults.no_row:
            flush = faults.flush_lsn if faults.flush_lsn is not None else stored.lsn
            commit = faults.commit_lsn if faults.commit_lsn is not None else stored.lsn
            conn.data_row([str(flush), str(commit)])
            outcome = f"flush_lsn={flush} commit_lsn={commit}"
        conn.command_complete("TIMELINE_STATUS")
        return outcome


async def serve_safekeeper(
    store: TimelineStore,
    host: str,
    port: int,
    *,
    public_key: JwtVerifier | bytes | str | os.PathLike[str] | None = None,
    faults: SafekeeperFaults | None = None,
) -> asyncio.Server:
    """Start one safekeeper listener (port 0 picks a free port; see `server.sockets`). Trust
    unless a public key (PEM bytes, a key file or a directory of keys) is given."""
    service = SafekeeperStandIn(store, JwtVerifier.coerce(public_key), faults or SafekeeperFaults())

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await handle_client(reader, writer, service.session)

    return await asyncio.start_server(on_client, host, port)

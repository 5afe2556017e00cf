"""Tuning pgbouncer from the spec's `pgbouncer_settings`.

As upstream: connect to pgbouncer's admin console (the first try and 3 retries, 1 s apart:
pgbouncer may still be starting); with TLS active add the client TLS settings, once the key
file exists; write every setting into the `[pgbouncer]` section of pgbouncer.ini, where it
survives a pgbouncer restart; then `RELOAD`, so that pgbouncer applies the file. If the
console cannot be reached, nothing is written.

Unlike upstream, the settings are checked first, and the change is refused as a whole, naming
the key, when one cannot work: a key or value that pgbouncer.ini cannot hold (a line break
would inject further settings), or a key the running pgbouncer does not know (its `SHOW CONFIG`
lists every key it knows): pgbouncer refuses a whole file with an unknown key on the next
RELOAD or restart, so writing one would silently freeze every setting. The rest of the ini
file (comments, other sections, key order) is kept as it is.

The admin console speaks only the simple query protocol, so commands go through a client-side
cursor and nothing is ever prepared. Its password (`PGBOUNCER_PASSWORD`) is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from compute_ctl import tls as compute_tls
from compute_ctl.errors import ComputeError
from compute_ctl.files import replace_file
from compute_ctl.sidecars.locations import SidecarLocations
from compute_ctl.spec.models import TlsConfig

log = logging.getLogger(__name__)

ADMIN_ATTEMPTS = 4
"""The first connection attempt and upstream's 3 retries."""
ADMIN_RETRY_DELAY = 1.0
CONNECT_TIMEOUT = 10
TLS_KEY_POLL = 0.5
SECTION = "pgbouncer"

_KEY = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEADER = re.compile(r"\s*\[\s*([^\]]*?)\s*\]\s*\Z")
_ENTRY = re.compile(r"\s*([A-Za-z0-9_.]+)\s*=")


class PgbouncerError(ComputeError):
    """pgbouncer could not be tuned."""


# --------------------------------------------------------------------------------------------
# Checking the settings and rewriting the ini file (no I/O)


def check_settings(settings: Mapping[str, str], known: frozenset[str] | None = None) -> None:
    """PgbouncerError naming the first key that cannot go into pgbouncer.ini, or (with `known`,
    the keys pgbouncer reports) that pgbouncer does not know."""
    for key, value in settings.items():
        if not _KEY.match(key):
            raise PgbouncerError(
                f"pgbouncer_settings: {key!r} is not a pgbouncer setting name "
                "(lower-case letters, digits and underscores)"
            )
        if _CONTROL.search(value):
            raise PgbouncerError(
                f"pgbouncer_settings.{key}: the value contains a line break or another "
                "control character"
            )
        if value != value.strip(" "):
            raise PgbouncerError(
                f"pgbouncer_settings.{key}: the value starts or ends with a space, "
                "which pgbouncer.ini cannot hold"
            )
        if known is not None and key not in known:
            raise PgbouncerError(
                f"pgbouncer_settings.{key}: pgbouncer has no such setting "
                "(not listed by SHOW CONFIG)"
            )


def update_ini(text: str, settings: Mapping[str, str]) -> str:
    """`text` with every key of `settings` set in the `[pgbouncer]` section: each existing
    line for the key gets the new value, missing keys are added after the first such
    section's last setting. PgbouncerError without a `[pgbouncer]` section."""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    section: str | None = None
    sections_seen = 0  # [pgbouncer] headers so far
    insert_at: int | None = None  # after the first [pgbouncer] section's last setting
    seen: set[str] = set()
    for index, line in enumerate(lines):
        body = line.rstrip("\r\n")
        header = _HEADER.match(body)
        if header:
            section = header.group(1).lower()
            if section == SECTION:
                sections_seen += 1
                if sections_seen == 1:
                    insert_at = index + 1
            continue
        entry = _ENTRY.match(body)
        if section != SECTION or entry is None:
            continue
        if sections_seen == 1:
            insert_at = index + 1
        key = entry.group(1).lower()
        if key in settings:
            lines[index] = f"{key} = {settings[key]}{line[len(body) :] or newline}"
            seen.add(key)
    if insert_at is None:
        raise PgbouncerError(f"there is no [{SECTION}] section")
    added = [f"{key} = {value}{newline}" for key, value in settings.items() if key not in seen]
    if added:
        before = lines[insert_at - 1]
        if not before.endswith("\n"):
            lines[insert_at - 1] = before + newline
        lines[insert_at:insert_at] = added
    return "".join(lines)


def with_tls(settings: Mapping[str, str], tls: TlsConfig | None) -> dict[str, str]:
    """The settings plus, with TLS active, pgbouncer's client TLS files (as upstream)."""
    result = dict(settings)
    if tls is not None:
        result["client_tls_cert_file"] = tls.cert_path
        result["client_tls_key_file"] = tls.key_path
        result["client_tls_sslmode"] = "allow"
    return result


# --------------------------------------------------------------------------------------------
# The admin console


def admin_target(locations: SidecarLocations) -> str:
    """The console's connection string as it may be logged (any password removed).
    PgbouncerError when it cannot be parsed."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(locations.pgbouncer_admin)
    except psycopg.ProgrammingError:
        raise PgbouncerError(
            "the pgbouncer admin console's connection string cannot be parsed"
        ) from None
    params.pop("password", None)
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


async def connect_admin(
    locations: SidecarLocations,
    *,
    attempts: int = ADMIN_ATTEMPTS,
    retry_delay: float = ADMIN_RETRY_DELAY,
) -> psycopg.AsyncConnection[TupleRow]:
    target = admin_target(locations)
    log.info("connecting to the pgbouncer admin console (%s)", target)
    extra: dict[str, str | int] = {"connect_timeout": CONNECT_TIMEOUT}
    if locations.pgbouncer_password is not None:
        extra["password"] = locations.pgbouncer_password
    # Holds the password: handed to the driver only, never logged.
    conninfo = psycopg.conninfo.make_conninfo(locations.pgbouncer_admin, **extra)
    for attempt in range(1, attempts + 1):
        try:
            return await psycopg.AsyncConnection.connect(
                conninfo,
                autocommit=True,
                prepare_threshold=None,
                cursor_factory=psycopg.AsyncClientCursor,
            )
        except psycopg.Error as exc:
            problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if attempt == attempts:
                raise PgbouncerError(
                    f"could not connect to the pgbouncer admin console ({target}) "
                    f"after {attempts} attempts: {problem}"
                ) from None
            log.error("could not connect to the pgbouncer admin console: %s", problem)
            await asyncio.sleep(retry_delay)
    raise AssertionError("unreachable")


async def show_config(conn: psycopg.AsyncConnection[TupleRow]) -> dict[str, str]:
    """pgbouncer's `SHOW CONFIG`: every key it knows, with its current value."""
    cur = await conn.execute(sql.SQL("SHOW CONFIG"))
    return {str(row[0]): str(row[1]) for row in await cur.fetchall()}


async def _wait_for_key(path: Path, timeout: float) -> None:
    """Upstream waits forever for the TLS key: pgbouncer without it refuses TLS clients."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(path.exists):
        if time.monotonic() + TLS_KEY_POLL > deadline:
            raise PgbouncerError(f"gave up waiting for the TLS key {path} after {timeout:g} s")
        await asyncio.sleep(TLS_KEY_POLL)


def _rewrite_ini(path: Path, settings: Mapping[str, str]) -> None:
    try:
        text = path.read_bytes().decode()
    except OSError as exc:
        raise PgbouncerError(f"could not read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PgbouncerError(f"{path} is not UTF-8 text") from None
    try:
        updated = update_ini(text, settings)
    except PgbouncerError as exc:
        raise PgbouncerError(f"{path}: {exc}") from None
    try:
        replace_file(path, updated.encode())
    except OSError as exc:
        raise PgbouncerError(f"could not write {path}: {exc.strerror}") from None


async def tune_pgbouncer(
    settings: Mapping[str, str],
    tls: TlsConfig | None,
    locations: SidecarLocations,
    *,
    attempts: int = ADMIN_ATTEMPTS,
    retry_delay: float = ADMIN_RETRY_DELAY,
    tls_timeout: float | None = None,
) -> None:
    """Apply `settings` to pgbouncer (PgbouncerError on failure, after which the ini file is
    either unchanged or fully written)."""
    check_settings(settings)
    conn = await connect_admin(locations, attempts=attempts, retry_delay=retry_delay)
    async with conn:
        try:
            current = await show_config(conn)
        except psycopg.Error as exc:
            raise PgbouncerError(f"SHOW CONFIG failed on the admin console: {exc}") from None
        wanted = with_tls(settings, tls)
        check_settings(wanted, frozenset(current))
        if tls is not None:
            limit = compute_tls.wait_timeout() if tls_timeout is None else tls_timeout
            await _wait_for_key(Path(tls.key_path), limit)
        await asyncio.to_thread(_rewrite_ini, locations.pgbouncer_ini, wanted)
        log.info(
            "pgbouncer settings written to %s: %s",
            locations.pgbouncer_ini,
            ", ".join(wanted) or "(none)",
        )
        try:
            await conn.execute(sql.SQL("RELOAD"))
        except psycopg.Error as exc:  # as upstream: logged, the file is written
            log.error("pgbouncer RELOAD failed: %s", exc)
            return
        log.info("pgbouncer reloaded its configuration")

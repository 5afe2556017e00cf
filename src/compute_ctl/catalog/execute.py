"""Running a plan: connections, concurrency, secrecy and error reporting.

Statements run one by one in autocommit mode, each its own transaction, like upstream's
(simple-query) pipeline: every statement of a phase is attempted, then the phase fails if any
failed, and nothing after it runs. Cluster-wide phases use the maintenance connection; each
database of the per-database phases gets its own connection, at most `concurrency` at a time,
opened only when that database has something to do. CREATE DATABASE, which copies a template
and dominates the cost of creating many databases, and CREATE ROLE with a SCRAM verifier are
spread over several connections too (statements about one object stay in order on one
connection), but over no more than `cluster_phase_width()`: that work is the server's CPU and
disk, and more backends than cores only contend for them (on two cores, 100 CREATE DATABASE
took 1.26 s over 2-4 connections and 1.60 s over 33).

Statements carrying a password run with every way Postgres could record their text switched off
for the session (statement and duration logging, error-statement logging, pg_stat_activity,
pg_stat_statements, pgaudit), and only their redacted form ever reaches our log or an error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from compute_ctl import progress
from compute_ctl.catalog.phases import PARALLEL_PHASES, REDACTED, Phase, Plan, Statement
from compute_ctl.errors import CatalogError, ComputeError

log = logging.getLogger(__name__)

Connector = Callable[[str | None], Awaitable[psycopg.AsyncConnection[Any]]]
"""Opens a maintenance connection to a database (None: the system database)."""

_QUIET_SETTINGS = (
    ("log_statement", "none"),
    ("log_min_duration_statement", "-1"),
    ("log_min_duration_sample", "-1"),
    ("log_transaction_sample_rate", "0"),
    ("log_min_error_statement", "panic"),
    ("track_activities", "off"),
    ("pg_stat_statements.track", "none"),
    ("pg_stat_statements.track_utility", "off"),
    ("pgaudit.log", "none"),
)
# One simple-protocol message: it runs as one implicit transaction, so either every setting
# takes effect or the secret statements are not sent at all.
QUIET_ON = sql.SQL("; ").join(
    sql.SQL("SET {} = {}").format(sql.Identifier(*name.split(".")), sql.Literal(value))
    for name, value in _QUIET_SETTINGS
)
QUIET_OFF = sql.SQL("; ").join(
    sql.SQL("RESET {}").format(sql.Identifier(*name.split("."))) for name, _ in _QUIET_SETTINGS
)


def cluster_phase_width() -> int:
    """How many connections a parallel cluster-wide phase may use: twice this machine's cores
    (the server runs beside us), and at least four."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(4, 2 * cores)


_SECRET_TEXT = re.compile(r"md5[0-9a-fA-F]{32}|SCRAM-SHA-256\$[^\s'\"]+")


def scrub(text: str) -> str:
    """Remove anything that looks like a password verifier from a message."""
    return _SECRET_TEXT.sub(REDACTED, text)


def error_text(exc: BaseException, *, secret: bool = False) -> str:
    """Postgres' message (and detail) for an error, on one line."""
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        text = exc.diag.message_primary
        if exc.diag.message_detail:
            text += " (" + "; ".join(exc.diag.message_detail.splitlines()) + ")"
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub(text) if secret else text


class Session:
    """One connection and what we have set on it."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.quiet = False
        self.args: dict[str, str] = {}

    async def run(self, statement: Statement) -> None:
        if statement.secret and not self.quiet:
            # A message of its own: Postgres decides whether to log a message when it arrives,
            # so settings sent together with the secret statement would come too late.
            await self.conn.execute(QUIET_ON)
            self.quiet = True
        if not statement.secret and log.isEnabledFor(logging.DEBUG):
            log.debug("executing: %s", statement.text(self.conn))
        wanted = [(name, value) for name, value in statement.args if self.args.get(name) != value]
        if not wanted:
            await self.conn.execute(statement.query)
            return
        # The arguments and the statement in one message (one round trip, one transaction:
        # if the statement fails, the settings are rolled back with it).
        calls = sql.SQL(", ").join(
            sql.SQL("pg_catalog.set_config({}, {}, false)").format(
                sql.Literal("compute_ctl." + name), sql.Literal(value)
            )
            for name, value in wanted
        )
        try:
            await self.conn.execute(sql.SQL("SELECT {}; {}").format(calls, statement.query))
        except psycopg.Error:
            self.args.clear()
            raise
        self.args.update(wanted)

    async def end_quiet(self) -> None:
        if self.quiet and not self.conn.closed:
            self.quiet = False
            await self.conn.execute(QUIET_OFF)


@dataclass
class _Failure:
    statement: Statement
    message: str


@dataclass
class ExecutionResult:
    executed: int = 0
    by_phase: dict[str, int] = field(default_factory=dict)

    def count(self, statement: Statement) -> None:
        self.executed += 1
        key = statement.phase.value
        self.by_phase[key] = self.by_phase.get(key, 0) + 1


def _raise_first(failures: list[_Failure], order: Sequence[Statement]) -> None:
    if not failures:
        return
    position = {id(s): i for i, s in enumerate(order)}
    failures.sort(key=lambda f: position.get(id(f.statement), 0))
    first = failures[0]
    message = first.message
    if len(failures) > 1:
        message += f" (and {len(failures) - 1} more failed statements)"
    raise CatalogError(first.statement.phase.value, first.statement.obj, message)


QUERY_CANCELED = "57014"  # a statement timeout (or a cancel request)


class Executor:
    def __init__(
        self,
        main: psycopg.AsyncConnection[Any],
        connector: Connector,
        concurrency: int,
        *,
        on_query_canceled: Callable[[], None] | None = None,
    ) -> None:
        self.on_query_canceled = on_query_canceled
        self.main = Session(main)
        self.connector = connector
        self.concurrency = max(1, concurrency)
        self.cluster_width = min(self.concurrency, cluster_phase_width())
        self.result = ExecutionResult()
        self._helpers: list[Session] = []  # extra connections to the system database
        self._stage = "starting"

    async def _attempt(
        self, session: Session, statement: Statement, failures: list[_Failure]
    ) -> bool:
        """Run one statement; False (and a recorded failure) if it failed."""
        try:
            await session.run(statement)
        except psycopg.Error as exc:
            if exc.sqlstate == QUERY_CANCELED and self.on_query_canceled is not None:
                self.on_query_canceled()
            message = error_text(exc, secret=statement.secret)
            if statement.tolerate is not None and statement.tolerate in message:
                log.warning("%s: %s: %s (ignored)", statement.phase.value, statement.obj, message)
                return True
            log.error("%s: %s: %s", statement.phase.value, statement.obj, message)
            failures.append(_Failure(statement, message))
            return False
        self.result.count(statement)
        return True

    async def run(self, plan: Plan) -> ExecutionResult:
        total = len(plan.statements)

        def doing() -> str:  # for the progress line of a long apply
            done = self.result.executed
            return f"applying the spec: {self._stage}, {done} of {total} statements executed"

        try:
            with progress.still_running(log, doing):
                await self._run(list(plan.statements))
        finally:
            await self._close_helpers()
        return self.result

    async def _close_helpers(self) -> None:
        """Helpers are kept from one parallel phase to the next, but never held while the
        per-database phases run: at most `concurrency` connections besides the main one."""
        helpers, self._helpers = self._helpers, []
        for helper in helpers:
            await helper.conn.close()

    async def _run(self, statements: list[Statement]) -> None:
        index = 0
        while index < len(statements):
            first = statements[index]
            end = index + 1
            if first.phase.per_database:
                # One stage: the pre-drop cleanup, or the per-database phases proper (their
                # sub-phases share each database's connection).
                pre_drop = first.phase is Phase.PRE_DROP_CLEANUP
                while (
                    end < len(statements)
                    and statements[end].phase.per_database
                    and (statements[end].phase is Phase.PRE_DROP_CLEANUP) == pre_drop
                ):
                    end += 1
                await self._per_database(statements[index:end])
            else:
                while end < len(statements) and statements[end].phase is first.phase:
                    end += 1
                await self._cluster_phase(first.phase, statements[index:end])
            index = end

    # -- cluster-wide ---------------------------------------------------------------------

    async def _cluster_phase(self, phase: Phase, statements: list[Statement]) -> None:
        log.info("Applying phase %s (%d statements)", phase.value, len(statements))
        self._stage = f"phase {phase.value}"
        failures: list[_Failure] = []
        groups: dict[str, list[Statement]] = {}
        for statement in statements:
            groups.setdefault(statement.group, []).append(statement)
        try:
            if phase in PARALLEL_PHASES and self.cluster_width > 1 and len(groups) > 1:
                await self._parallel_groups(list(groups.values()), failures)
            else:
                for statement in statements:
                    await self._attempt(self.main, statement, failures)
        finally:
            await self.main.end_quiet()
        _raise_first(failures, statements)

    async def _parallel_groups(
        self, groups: list[list[Statement]], failures: list[_Failure]
    ) -> None:
        queue: asyncio.Queue[list[Statement]] = asyncio.Queue()
        for group in groups:
            queue.put_nowait(group)

        async def worker(session: Session) -> None:
            while not queue.empty():
                group = queue.get_nowait()
                for statement in group:
                    if not await self._attempt(session, statement, failures):
                        break  # the rest of this object's statements depend on the failed one
            await session.end_quiet()

        wanted = min(self.cluster_width, len(groups)) - 1
        if len(self._helpers) < wanted:
            opened = await asyncio.gather(
                *(self.connector(None) for _ in range(wanted - len(self._helpers))),
                return_exceptions=True,
            )
            for conn in opened:
                if isinstance(conn, BaseException):
                    log.warning(
                        "extra connection failed, going on with fewer: %s", error_text(conn)
                    )
                else:
                    self._helpers.append(Session(conn))
        sessions = [self.main, *self._helpers[:wanted]]
        async with asyncio.TaskGroup() as tasks:
            for session in sessions:
                tasks.create_task(worker(session))

    # -- per database -----------------------------------------------------------------------

    async def _per_database(self, statements: list[Statement]) -> None:
        await self._close_helpers()
        by_database: dict[str, list[Statement]] = {}
        for statement in statements:
            assert statement.database is not None
            by_database.setdefault(statement.database, []).append(statement)
        phases = list(dict.fromkeys(s.phase.value for s in statements))
        log.info(
            "Applying phases %s in %d databases (%d statements, concurrency %d)",
            ", ".join(phases),
            len(by_database),
            len(statements),
            self.concurrency,
        )
        self._stage = f"phases {', '.join(phases)} in {len(by_database)} databases"
        failures: list[_Failure] = []
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one_database(name: str, work: list[Statement]) -> None:
            async with semaphore:
                try:
                    conn = await self.connector(name)
                except (psycopg.Error, OSError, ComputeError) as exc:
                    message = error_text(exc)
                    first = work[0]
                    if first.tolerate is not None and first.tolerate in message:
                        log.warning("%s: %s: %s (ignored)", first.phase.value, first.obj, message)
                    else:
                        failures.append(_Failure(first, f"cannot connect: {message}"))
                    return
                session = Session(conn)
                async with conn:
                    failed_phase: Phase | None = None
                    for statement in work:
                        if failed_phase is not None and statement.phase is not failed_phase:
                            break  # later phases of this database depend on the failed one
                        if not await self._attempt(session, statement, failures):
                            failed_phase = statement.phase

        early = [name for name, work in by_database.items() if any(s.first for s in work)]
        later = [name for name in by_database if name not in early]
        for wave in (early, later):
            async with asyncio.TaskGroup() as tasks:
                for name in wave:
                    tasks.create_task(one_database(name, by_database[name]))
        _raise_first(failures, statements)

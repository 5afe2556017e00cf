"""The vocabulary shared by the planner and the executor: phases, statements, plans.

Upstream applies a spec as a fixed sequence of phases; operators read phase names in logs and in
the `/status` error, so ours carry upstream's names. A plan is the ordered list of statements the
phases would run against a given catalog. It is data, not code: the same plan can be printed
(`compute-dev spec plan`), counted (tests prove an unchanged spec plans nothing) and executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from psycopg import sql
from psycopg.abc import AdaptContext


class Phase(StrEnum):
    """Upstream's spec-apply phases, in execution order; values are upstream's names."""

    PRE_DROP_CLEANUP = "DropLogicalSubscriptions (pre-dropdb)"
    CREATE_PRIVILEGED_ROLE = "CreatePrivilegedRole"
    CREATE_DATABRICKS_ROLES = "CreateDatabricksRoles"  # lakebase mode only
    ALTER_DATABRICKS_ROLES = "AlterDatabricksRoles"  # lakebase mode only
    DROP_INVALID_DATABASES = "DropInvalidDatabases"
    RENAME_ROLES = "RenameRoles"
    CREATE_AND_ALTER_ROLES = "CreateAndAlterRoles"
    RENAME_AND_DELETE_DATABASES = "RenameAndDeleteDatabases"
    CREATE_AND_ALTER_DATABASES = "CreateAndAlterDatabases"
    CREATE_SCHEMA_NEON = "CreateSchemaNeon"
    DELETE_DB_ROLE_REFERENCES = "DeleteDBRoleReferences"
    CHANGE_SCHEMA_PERMS = "ChangeSchemaPerms"
    DROP_LOGICAL_SUBSCRIPTIONS = "DropLogicalSubscriptions"
    HANDLE_OTHER_EXTENSIONS = "HandleOtherExtensions"
    HANDLE_NEON_EXTENSION = "HandleNeonExtension"
    HANDLE_DATABRICKS_AUTH_EXTENSION = "HandleDatabricksAuthExtension"  # lakebase mode only
    CREATE_AVAILABILITY_CHECK = "CreateAvailabilityCheck"
    DROP_ROLES = "DropRoles"
    ADD_DATABRICKS_GRANTS = "AddDatabricksGrants"  # lakebase mode only
    CREATE_DATABRICKS_MISC = "CreateDatabricksMisc"  # lakebase mode only
    FINALIZE_DROP_LOGICAL_SUBSCRIPTIONS = "FinalizeDropLogicalSubscriptions"
    CREATE_PGAUDIT_EXTENSION = "CreatePgauditExtension"
    CREATE_PGAUDITLOGTOFILE_EXTENSION = "CreatePgauditlogtofileExtension"
    DISABLE_POSTGRES_DB_PGAUDIT = "DisablePostgresDBPgAudit"

    @property
    def per_database(self) -> bool:
        """Whether the phase runs inside individual databases (with its own connections)."""
        return self in PER_DATABASE_PHASES

    @property
    def position(self) -> int:
        return PHASE_ORDER.index(self)


PHASE_ORDER: tuple[Phase, ...] = tuple(Phase)
PER_DATABASE_PHASES = frozenset(
    {
        Phase.PRE_DROP_CLEANUP,
        Phase.DELETE_DB_ROLE_REFERENCES,
        Phase.CHANGE_SCHEMA_PERMS,
        Phase.DROP_LOGICAL_SUBSCRIPTIONS,
    }
)
ALL_PHASES: frozenset[Phase] = frozenset(Phase)

# Statements of these phases that belong to different objects are independent of each other,
# so the executor may spread them over several connections: CREATE DATABASE copies a template,
# and CREATE ROLE with a SCRAM verifier makes the server derive a key (to refuse an empty
# password); both are the bulk of creating many objects and cannot be batched.
PARALLEL_PHASES = frozenset({Phase.CREATE_AND_ALTER_ROLES, Phase.CREATE_AND_ALTER_DATABASES})

REDACTED = "<redacted>"

Query = sql.SQL | sql.Composed
"""A complete statement (what psycopg executes), as opposed to a fragment."""


@dataclass(frozen=True)
class Statement:
    """One SQL statement of a plan and everything needed to run and report it.

    `database` is None for statements run on the maintenance connection (the system database),
    else the database whose own connection runs it. `args` are set as `compute_ctl.<name>`
    session settings before the statement runs: DO blocks read names from there instead of
    having them spliced into their text. A `secret` statement carries a password; `display` is
    its redacted form, and it is executed with statement logging suppressed.
    """

    phase: Phase
    obj: str
    query: Query = field(repr=False)
    database: str | None = None
    secret: bool = False
    display: Query | None = field(default=None, repr=False)
    args: tuple[tuple[str, str], ...] = ()
    # Errors whose message contains this text are logged and not counted as failures.
    tolerate: str | None = None
    # Statements with the same group keep their order; different groups may run concurrently
    # (only in PARALLEL_PHASES).
    group: str = ""
    # In a per-database stage, the databases with `first` statements finish their work before
    # the others start: REASSIGN/DROP OWNED update shared objects (databases owned by, or
    # granted to, the role), and two databases doing that at once collide ("tuple concurrently
    # updated").
    first: bool = False

    def text(self, context: AdaptContext | None = None, *, redact: bool = True) -> str:
        """The SQL text; a secret is replaced by `'<redacted>'` unless `redact` is False."""
        shown = self.display if (redact and self.display is not None) else self.query
        return shown.as_string(context)

    def __repr__(self) -> str:  # never the secret
        where = f", database={self.database!r}" if self.database is not None else ""
        return f"Statement({self.phase.value}, {self.obj}{where}: {self.text()})"


@dataclass(frozen=True)
class Plan:
    """The statements to run, in execution order, and what the planner noticed on the way
    (skipped delta operations, unavailable extensions, unreachable databases)."""

    statements: tuple[Statement, ...]
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.statements)

    def by_phase(self) -> dict[Phase, list[Statement]]:
        phases: dict[Phase, list[Statement]] = {}
        for statement in self.statements:
            phases.setdefault(statement.phase, []).append(statement)
        return phases

    def render(self, context: AdaptContext | None = None, *, summary: bool = False) -> str:
        """The plan as an SQL script with one comment line per statement; secrets redacted."""
        lines: list[str] = []
        for statement in self.statements:
            header = f"-- {statement.phase.value}: {statement.obj}"
            if statement.database is not None:
                name = sql.Identifier(statement.database).as_string(context)
                header += f" (in database {name})"
            lines.append(_one_line(header))
            if summary:
                continue
            lines.extend(
                _one_line(f"--   with compute_ctl.{name} = {sql.Literal(value).as_string(context)}")
                for name, value in statement.args
            )
            lines.append(statement.text(context).rstrip().rstrip(";") + ";")
        return "\n".join(lines) + ("\n" if lines else "")


def _one_line(comment: str) -> str:
    """Keep a comment on one line whatever characters the names in it contain."""
    return comment.replace("\r", "\\r").replace("\n", "\\n")

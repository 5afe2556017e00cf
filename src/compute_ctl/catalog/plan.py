"""The pure diff: spec + catalog snapshot → the statements upstream's phases would run.

The phases, their order and the statements are upstream's, with
one rule added: a statement is planned only when the snapshot shows it would change something.
Upstream re-runs many statements on every apply (md5 passwords, the privileged role and neon
schema DO blocks, per-database grants, the neon extension steps); here an unchanged spec plans
nothing at all, so re-applying it costs one catalog read. Where the snapshot cannot see the
state (inside a database just created), the statement is planned and is itself conditional.

The planner keeps upstream's "context": the snapshot is updated as phases rename, create and drop
objects, so later phases see the effect of earlier ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from typing import LiteralString

from psycopg import sql

from compute_ctl.catalog.inspect import (
    SHARED_OBJECTS_DBID,
    DatabaseInfo,
    LakebaseFacts,
    Snapshot,
)
from compute_ctl.catalog.options import database_option_clause, role_option_clauses
from compute_ctl.catalog.phases import ALL_PHASES, Phase, Plan, Query, Statement
from compute_ctl.errors import SpecError
from compute_ctl.spec.catalog_checks import CheckedCatalog, check_catalog
from compute_ctl.spec.models import ComputeAudit, ComputeSpec, Database, DeltaOp, find_option

DEFAULT_PRIVILEGED_ROLE = "neon_superuser"
DEFAULT_ADMIN_ROLE = "cloud_admin"
SCRAM_PREFIX = "SCRAM-SHA-256"


# Upstream's Databricks roles and their options (they log in without a password: the
# authentication is in `databricks_pg_hba`).
DATABRICKS_ROLES: tuple[tuple[str, LiteralString], ...] = (
    ("databricks_monitor", "IN ROLE pg_monitor "),
    ("databricks_control_plane", "SUPERUSER "),
    ("databricks_gateway", ""),
)
READER_ROLE = re.compile(r"databricks_reader_[0-9]+")


@dataclass(frozen=True)
class PlanOptions:
    """What the plan depends on besides the spec and the catalog."""

    privileged_role: str = DEFAULT_PRIVILEGED_ROLE
    admin_role: str = DEFAULT_ADMIN_ROLE
    phases: frozenset[Phase] = ALL_PHASES
    # lakebase mode: the privileged role is created without REPLICATION, and the Databricks
    # phases run (see `_Planner.lakebase_*`)
    lakebase: bool = False
    timeline_id: str | None = None  # needed only when subscriptions are dropped before start


@cache
def sql_file(name: str) -> sql.SQL:
    """A constant statement shipped in `catalog/sql/` (DO blocks read their arguments from
    `compute_ctl.*` settings, so their text never contains spec values)."""
    text = resources.files("compute_ctl.catalog").joinpath("sql", name).read_text()
    return sql.SQL(text.strip())


@cache
def health_check_function_body() -> str:
    """The source (between the dollar quotes) of the function create_databricks_misc.sql
    defines, as `pg_proc.prosrc` shows it once created."""
    text = resources.files("compute_ctl.catalog").joinpath("sql", "create_databricks_misc.sql")
    return text.read_text().split("$$")[1]


def _role(name: str) -> str:
    return f'role "{name}"'


def _database(name: str) -> str:
    return f'database "{name}"'


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


# --------------------------------------------------------------------------------------------
# Planning


def _jwks_roles(spec: ComputeSpec) -> set[str]:
    """Roles that authenticate with JWTs through local_proxy: created without the privileged
    role's membership and attributes."""
    proxy = spec.local_proxy_config
    if proxy is None or proxy.jwks is None:
        return set()
    return {name for jwks in proxy.jwks for name in jwks.role_names}


@dataclass
class _Db:
    """A database as the phases see it: the snapshot's facts, updated as the plan goes."""

    name: str
    owner: str | None
    oid: int | None = None
    restrict_conn: bool = False
    invalid: bool = False
    is_template: bool = False
    has_subscriptions: bool = False
    privileged_defaults: bool = False
    new: bool = False

    @classmethod
    def of(cls, info: DatabaseInfo) -> _Db:
        return cls(
            name=info.name,
            owner=info.owner,
            oid=info.oid,
            restrict_conn=info.restrict_conn,
            invalid=info.invalid,
            is_template=info.is_template,
            has_subscriptions=info.has_subscriptions,
            privileged_defaults=info.privileged_defaults,
        )

    @property
    def connectable(self) -> bool:
        return not (self.restrict_conn or self.invalid)


class _Planner:
    def __init__(
        self, spec: ComputeSpec, checked: CheckedCatalog, snapshot: Snapshot, options: PlanOptions
    ) -> None:
        self.spec = spec
        self.checked = checked
        self.snapshot = snapshot
        self.options = options
        self.priv = options.privileged_role
        self.statements: list[Statement] = []
        self.notes: list[str] = []
        # upstream's MutableApplyContext: role name → stored password; database name → facts
        self.roles: dict[str, str | None] = {r.name: r.password for r in snapshot.roles.values()}
        self.dbs: dict[str, _Db] = {d.name: _Db.of(d) for d in snapshot.databases.values()}
        self.jwks_roles = _jwks_roles(spec)
        self.drop_subscriptions = (
            spec.drop_subscriptions_before_start and not snapshot.drop_subscriptions_done
        )
        self.lakebase = snapshot.lakebase or LakebaseFacts()
        self.neon_extension_created = False
        self.health_check_created = False
        self.new_roles: set[str] = set()

    def emit(
        self,
        phase: Phase,
        obj: str,
        query: Query,
        *,
        database: str | None = None,
        secret: bool = False,
        display: Query | None = None,
        args: tuple[tuple[str, str], ...] = (),
        tolerate: str | None = None,
        group: str = "",
        first: bool = False,
        into: list[Statement] | None = None,
    ) -> None:
        """Add a statement (to `into`, else to the plan) unless its phase is not wanted."""
        if phase not in self.options.phases:
            return
        statement = Statement(
            phase,
            obj,
            query,
            database=database,
            secret=secret,
            display=display,
            args=args,
            tolerate=tolerate,
            group=group,
            first=first,
        )
        (self.statements if into is None else into).append(statement)

    def deltas(self, action: str) -> Iterable[DeltaOp]:
        return (op for op in self.checked.deltas if op.action == action)

    def plan(self) -> Plan:
        lakebase = self.options.lakebase
        self.pre_drop_cleanup()
        self.create_privileged_role()
        if lakebase:
            self.create_databricks_roles()
            self.alter_databricks_roles()
        self.drop_invalid_databases()
        self.rename_roles()
        self.create_and_alter_roles()
        self.rename_and_delete_databases()
        self.create_and_alter_databases()
        self.create_schema_neon()
        self.per_database()
        self.handle_other_extensions()
        self.handle_neon_extension()
        if lakebase:
            self.handle_databricks_auth_extension()
        self.create_availability_check()
        self.drop_roles()
        if lakebase:
            self.add_databricks_grants()
            self.create_databricks_misc()
        self.finalize_drop_subscriptions()
        self.audit()
        return Plan(tuple(self.statements), tuple(self.notes))

    # -- phase 0 --------------------------------------------------------------------------

    def pre_drop_cleanup(self) -> None:
        """Subscriptions block DROP DATABASE: drop them first in databases about to go."""
        for op in self.deltas("delete_db"):
            db = self.dbs.get(op.name)
            if db is None or not db.has_subscriptions:
                continue
            if not db.connectable:
                self.notes.append(
                    f"cannot drop the subscriptions of {_database(op.name)}: "
                    "it does not accept connections"
                )
                continue
            self.emit(
                Phase.PRE_DROP_CLEANUP,
                _database(op.name),
                sql_file("drop_subscriptions.sql"),
                database=op.name,
                tolerate="does not exist",
            )

    # -- cluster-wide phases ----------------------------------------------------------------

    def create_privileged_role(self) -> None:
        if self.priv in self.roles:
            return
        attributes: LiteralString = "CREATEDB CREATEROLE NOLOGIN BYPASSRLS"
        if not self.options.lakebase:
            attributes = "CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS"
        self.emit(
            Phase.CREATE_PRIVILEGED_ROLE,
            _role(self.priv),
            sql.SQL(
                "CREATE ROLE {} " + attributes + " IN ROLE pg_read_all_data, pg_write_all_data"
            ).format(_ident(self.priv)),
        )
        self.roles[self.priv] = None

    def drop_invalid_databases(self) -> None:
        """An interrupted DROP DATABASE leaves an invalid database that can only be dropped."""
        for name in sorted(n for n, db in self.dbs.items() if db.invalid):
            del self.dbs[name]
            self.emit(
                Phase.DROP_INVALID_DATABASES,
                _database(name),
                sql.SQL("DROP DATABASE IF EXISTS {}").format(_ident(name)),
            )

    def rename_roles(self) -> None:
        for op in self.deltas("rename_role"):
            assert op.new_name is not None  # checked
            if op.name not in self.roles:
                if op.new_name not in self.roles:
                    self.notes.append(f"{_role(op.name)} to rename does not exist: skipped")
                continue
            password = self.roles.pop(op.name)
            # Postgres keeps a SCRAM verifier across a rename but clears an md5 hash (its salt
            # is the role name).
            kept = password if password and password.startswith(SCRAM_PREFIX) else None
            self.roles[op.new_name] = kept
            self.emit(
                Phase.RENAME_ROLES,
                _role(op.name),
                sql.SQL("ALTER ROLE {} RENAME TO {}").format(_ident(op.name), _ident(op.new_name)),
            )

    def create_and_alter_roles(self) -> None:
        for role in self.checked.roles:
            name = role.name
            secret = role.password is not None
            if name in self.roles:
                if self.roles[name] == role.password:
                    continue
                clauses, shown = role_option_clauses(role.options, role.password, create=False)
                head = sql.SQL("ALTER ROLE {}").format(_ident(name))
            else:
                in_roles: tuple[str, ...] = ()
                head = sql.SQL("CREATE ROLE {}").format(_ident(name))
                if name not in self.jwks_roles:
                    head = sql.SQL(
                        "CREATE ROLE {} INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION"
                    ).format(_ident(name))
                    in_roles = (self.priv,)
                clauses, shown = role_option_clauses(
                    role.options, role.password, create=True, in_roles=in_roles
                )
            self.roles[name] = role.password
            self.emit(
                Phase.CREATE_AND_ALTER_ROLES,
                _role(name),
                sql.SQL(" ").join([head, clauses]),
                secret=secret,
                display=sql.SQL(" ").join([head, shown]),
                group=name,
            )

    def rename_and_delete_databases(self) -> None:
        for op in self.checked.deltas:
            if op.action == "delete_db":
                db = self.dbs.pop(op.name, None)
                if db is None:
                    continue
                if db.is_template:
                    # a template database cannot be dropped
                    self.emit(
                        Phase.RENAME_AND_DELETE_DATABASES,
                        _database(op.name),
                        sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(_ident(op.name)),
                    )
                # FORCE terminates the sessions still connected to it, as upstream does
                self.emit(
                    Phase.RENAME_AND_DELETE_DATABASES,
                    _database(op.name),
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(_ident(op.name)),
                )
            elif op.action == "rename_db":
                assert op.new_name is not None  # checked
                renamed = self.dbs.pop(op.name, None)
                if renamed is None:
                    if op.new_name not in self.dbs:
                        self.notes.append(f"{_database(op.name)} to rename does not exist: skipped")
                    continue
                self.dbs[op.new_name] = replace(renamed, name=op.new_name)
                self.emit(
                    Phase.RENAME_AND_DELETE_DATABASES,
                    _database(op.name),
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                        _ident(op.name), _ident(op.new_name)
                    ),
                )

    def create_and_alter_databases(self) -> None:
        phase = Phase.CREATE_AND_ALTER_DATABASES
        for checked in self.checked.databases:
            db = checked.spec
            existing = self.dbs.get(db.name)
            if existing is not None:
                if existing.owner != db.owner:
                    existing.owner = db.owner
                    self.emit(
                        phase,
                        _database(db.name),
                        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                            _ident(db.name), _ident(db.owner)
                        ),
                        group=db.name,
                    )
                continue
            self.dbs[db.name] = _Db(name=db.name, owner=db.owner, new=True)
            create = sql.SQL(" ").join(
                [
                    sql.SQL("CREATE DATABASE {}").format(_ident(db.name)),
                    *(database_option_clause(option) for option in checked.options),
                    sql.SQL("OWNER {}").format(_ident(db.owner)),
                ]
            )
            self.emit(phase, _database(db.name), create, group=db.name)
            self.emit(
                phase,
                _database(db.name),
                sql.SQL("GRANT ALL PRIVILEGES ON DATABASE {} TO {}").format(
                    _ident(db.name), _ident(self.priv)
                ),
                group=db.name,
            )

    def create_schema_neon(self) -> None:
        if not self.snapshot.has_neon_schema:
            self.emit(
                Phase.CREATE_SCHEMA_NEON,
                'schema "neon"',
                sql.SQL("CREATE SCHEMA IF NOT EXISTS neon"),
            )

    # -- per-database phases ----------------------------------------------------------------

    def per_database(self) -> None:
        """Each database's statements, in upstream's sub-order; one connection per database."""
        spec_dbs: dict[str, Database] = {}
        for checked in self.checked.databases:
            spec_dbs.setdefault(checked.spec.name, checked.spec)
        deleting = [op.name for op in self.deltas("delete_role") if op.name in self.roles]
        dependent_oids = {
            dbid for name in deleting for dbid in self.snapshot.role_dependencies.get(name, ())
        }
        system = self.snapshot.system_database
        # Shared objects are handled in the system database, before any other database.
        shared = SHARED_OBJECTS_DBID in dependent_oids
        visit = [system, *spec_dbs] if shared else [*spec_dbs, system]
        visit += sorted(
            name for name, db in self.dbs.items() if db.oid in dependent_oids and name not in visit
        )
        for name in dict.fromkeys(visit):
            self.database_steps(name, spec_dbs.get(name), deleting, first=shared and name == system)

    def database_steps(
        self, name: str, spec_db: Database | None, deleting: list[str], *, first: bool = False
    ) -> None:
        db = self.dbs.get(name)
        if db is None:
            if spec_db is not None:
                self.notes.append(f"{_database(name)} does not exist: per-database steps skipped")
            return
        is_system = name == self.snapshot.system_database
        steps: list[Statement] = []

        def step(
            phase: Phase, obj: str, query: Query, args: tuple[tuple[str, str], ...] = ()
        ) -> None:
            self.emit(phase, obj, query, database=name, args=args, first=first, into=steps)

        if spec_db is not None:
            new_owner = spec_db.owner
        elif is_system or db.owner is None:
            new_owner = self.options.admin_role
        else:
            new_owner = db.owner
        for role in deleting:
            found = self.snapshot.role_dependencies.get(role, frozenset())
            here = db.oid is not None and (
                db.oid in found or (is_system and SHARED_OBJECTS_DBID in found)
            )
            if not here or new_owner == role:
                continue
            phase = Phase.DELETE_DB_ROLE_REFERENCES
            step(
                phase,
                _role(role),
                sql.SQL("REASSIGN OWNED BY {} TO {}").format(_ident(role), _ident(new_owner)),
            )
            step(
                phase, _role(role), sql_file("revoke_role_table_grants.sql"), (("role_name", role),)
            )
            step(phase, _role(role), sql.SQL("DROP OWNED BY {}").format(_ident(role)))
        if spec_db is not None and (db.new or not db.privileged_defaults):
            # Upstream runs these in every database on every apply. Their lasting trace is the
            # default privileges granted to the privileged role, which pg_shdepend shows for
            # every database; where it is present they have run, so they are planned only for
            # new databases and databases that never had them.
            phase = Phase.CHANGE_SCHEMA_PERMS
            step(
                phase,
                _database(name),
                sql_file("set_public_schema_owner.sql"),
                (("db_owner", spec_db.owner),),
            )
            step(
                phase,
                _database(name),
                sql_file("default_grants.sql"),
                (("privileged_role", self.priv),),
            )
        if spec_db is not None and self.drop_subscriptions and db.has_subscriptions:
            step(
                Phase.DROP_LOGICAL_SUBSCRIPTIONS,
                _database(name),
                sql_file("drop_subscriptions.sql"),
            )
        if not steps:
            return
        if not db.connectable:
            self.notes.append(
                f"{_database(name)} does not accept connections "
                f"(restrict_conn={db.restrict_conn}, invalid={db.invalid}): "
                "per-database steps skipped"
            )
            return
        self.statements.extend(steps)

    # -- final cluster-wide phases ----------------------------------------------------------

    def handle_other_extensions(self) -> None:
        libraries = find_option(self.spec.cluster.settings, "shared_preload_libraries") or ""
        if "pg_stat_statements" in libraries and "pg_stat_statements" not in (
            self.snapshot.extensions
        ):
            self.emit(
                Phase.HANDLE_OTHER_EXTENSIONS,
                'extension "pg_stat_statements"',
                sql.SQL("CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public"),
            )

    def handle_neon_extension(self) -> None:
        phase, obj = Phase.HANDLE_NEON_EXTENSION, 'extension "neon"'
        default = self.snapshot.available_extensions.get("neon")
        if default is None:
            self.notes.append("the neon extension is not available: HandleNeonExtension skipped")
            return
        installed = self.snapshot.extensions.get("neon")
        if installed is None:
            self.neon_extension_created = True
            self.emit(phase, obj, sql.SQL("CREATE EXTENSION IF NOT EXISTS neon WITH SCHEMA neon"))
            return
        if installed.schema != "neon":
            if not installed.relocatable:
                self.emit(
                    phase,
                    obj,
                    sql.SQL(
                        "UPDATE pg_catalog.pg_extension SET extrelocatable = true"
                        " WHERE extname OPERATOR(pg_catalog.=) 'neon'::pg_catalog.name"
                        " AND extrelocatable OPERATOR(pg_catalog.=) false"
                    ),
                )
            self.emit(phase, obj, sql.SQL("ALTER EXTENSION neon SET SCHEMA neon"))
        if installed.version != default:
            self.emit(phase, obj, sql.SQL("ALTER EXTENSION neon UPDATE"))

    def create_availability_check(self) -> None:
        if self.snapshot.has_health_check:
            return
        phase, obj = Phase.CREATE_AVAILABILITY_CHECK, 'table "public.health_check"'
        self.health_check_created = True
        self.emit(
            phase,
            obj,
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS public.health_check ("
                "id pg_catalog.int4 PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,"
                " updated_at pg_catalog.timestamptz DEFAULT pg_catalog.now())"
            ),
        )
        self.emit(
            phase,
            obj,
            sql.SQL(
                "INSERT INTO public.health_check VALUES (1, pg_catalog.now())"
                " ON CONFLICT (id) DO UPDATE SET updated_at = pg_catalog.now()"
            ),
        )

    def drop_roles(self) -> None:
        for op in self.deltas("delete_role"):
            if op.name not in self.roles:
                continue
            del self.roles[op.name]
            self.emit(
                Phase.DROP_ROLES,
                _role(op.name),
                sql.SQL("DROP ROLE IF EXISTS {}").format(_ident(op.name)),
            )

    def finalize_drop_subscriptions(self) -> None:
        """Record that this timeline's subscriptions were dropped, so it happens only once."""
        if not self.drop_subscriptions:
            return
        timeline = self.options.timeline_id
        if timeline is None:
            raise SpecError("timeline_id", "drop_subscriptions_before_start needs the timeline id")
        phase, obj = (
            Phase.FINALIZE_DROP_LOGICAL_SUBSCRIPTIONS,
            'table "neon.drop_subscriptions_done"',
        )
        self.emit(
            phase,
            obj,
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS neon.drop_subscriptions_done ("
                "id pg_catalog.int4 PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY,"
                " timeline_id pg_catalog.text)"
            ),
        )
        self.emit(
            phase,
            obj,
            sql.SQL(
                "INSERT INTO neon.drop_subscriptions_done VALUES (1, {})"
                " ON CONFLICT (id) DO UPDATE SET timeline_id = EXCLUDED.timeline_id"
            ).format(sql.Literal(timeline)),
        )

    def audit(self) -> None:
        level = self.spec.audit_log_level
        if level is ComputeAudit.DISABLED:
            return
        extensions = self.snapshot.extensions
        if "pgaudit" not in extensions:
            self.emit(
                Phase.CREATE_PGAUDIT_EXTENSION,
                'extension "pgaudit"',
                sql.SQL("CREATE EXTENSION IF NOT EXISTS pgaudit WITH SCHEMA public"),
            )
        extended = (ComputeAudit.HIPAA, ComputeAudit.EXTENDED, ComputeAudit.FULL)
        if level in extended and "pgauditlogtofile" not in extensions:
            self.emit(
                Phase.CREATE_PGAUDITLOGTOFILE_EXTENSION,
                'extension "pgauditlogtofile"',
                sql.SQL("CREATE EXTENSION IF NOT EXISTS pgauditlogtofile WITH SCHEMA public"),
            )
        if not self.snapshot.postgres_db_pgaudit_off:
            self.emit(
                Phase.DISABLE_POSTGRES_DB_PGAUDIT,
                'database "postgres"',
                sql.SQL("ALTER DATABASE postgres SET pgaudit.log TO 'none'"),
            )

    # -- lakebase phases (upstream's Databricks additions) -----------------------------------

    def create_databricks_roles(self) -> None:
        """The roles Databricks' services log in as (their authentication is in the
        `databricks_pg_hba` file); created when missing, never altered."""
        for name, options in DATABRICKS_ROLES:
            if name in self.roles:
                continue
            self.roles[name] = None
            self.new_roles.add(name)
            self.emit(
                Phase.CREATE_DATABRICKS_ROLES,
                _role(name),
                sql.SQL("CREATE ROLE {} " + options + "LOGIN PASSWORD NULL").format(_ident(name)),
            )

    def alter_databricks_roles(self) -> None:
        """databricks_reader_<N> roles get `databricks.reader_statement_timeout` as their
        statement timeout; planned only when one of them does not have it yet."""
        timeout = self.lakebase.reader_statement_timeout
        if not timeout or timeout == "0":
            return
        stale = [
            name
            for name, value in self.lakebase.role_timeouts.items()
            if READER_ROLE.fullmatch(name) and value != timeout
        ]
        if stale:
            self.emit(
                Phase.ALTER_DATABRICKS_ROLES,
                ", ".join(_role(name) for name in sorted(stale)),
                sql_file("alter_databricks_reader_roles_timeout.sql"),
            )

    def handle_databricks_auth_extension(self) -> None:
        """Upstream drops and re-creates databricks_auth on every apply (to pick up a new
        version); here that happens only when it is missing or not at its default version."""
        phase, obj = Phase.HANDLE_DATABRICKS_AUTH_EXTENSION, 'extension "databricks_auth"'
        default = self.snapshot.available_extensions.get("databricks_auth")
        if default is None:
            self.notes.append(
                "the databricks_auth extension is not available: "
                "HandleDatabricksAuthExtension skipped"
            )
            return
        installed = self.snapshot.extensions.get("databricks_auth")
        granted = self._granted("pg_monitor", "table public.databricks_auth_metrics", "SELECT")
        if installed is not None and installed.version == default and granted:
            return
        # Upstream's session has the default search_path: the extension (unless its control
        # file names a schema) and the table the grant names are found in public.
        public = sql.SQL("SET LOCAL search_path TO public; ")
        if installed is None or installed.version != default:
            if installed is not None:
                self.emit(phase, obj, sql.SQL("DROP EXTENSION IF EXISTS databricks_auth"))
            self.emit(phase, obj, public + sql.SQL("CREATE EXTENSION databricks_auth"))
        self.emit(
            phase, obj, public + sql.SQL("GRANT SELECT ON databricks_auth_metrics TO pg_monitor")
        )

    def _granted(self, grantee: str, key: str, *privileges: str) -> bool:
        if grantee in self.new_roles:
            return False
        have = self.lakebase.grants.get((grantee, key), frozenset())
        return all(privilege in have for privilege in privileges)

    def add_databricks_grants(self) -> None:
        """What databricks_monitor reads and runs; each grant only when it is missing. The
        neon extension's objects are skipped (with a note) where they do not exist."""
        phase, monitor = Phase.ADD_DATABRICKS_GRANTS, "databricks_monitor"
        neon_objects = self.neon_extension_created
        wanted: list[tuple[str, tuple[str, ...], bool, LiteralString]] = [
            ("schema neon", ("USAGE",), True, "GRANT USAGE ON SCHEMA neon TO {}"),
            (
                "table public.health_check",
                ("SELECT", "INSERT", "UPDATE"),
                True,
                "GRANT SELECT, INSERT, UPDATE ON public.health_check TO {}",
            ),
            (
                "function pg_ls_dir(text)",
                ("EXECUTE",),
                True,
                "GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text) TO {}",
            ),
            (
                "table neon.neon_perf_counters",
                ("SELECT",),
                neon_objects or self.lakebase.neon_perf_counters,
                "GRANT SELECT ON neon.neon_perf_counters TO {}",
            ),
            (
                "function neon.get_perf_counters()",
                ("EXECUTE",),
                neon_objects or self.lakebase.neon_get_perf_counters,
                "GRANT EXECUTE ON FUNCTION neon.get_perf_counters() TO {}",
            ),
        ]
        for key, privileges, exists, text in wanted:
            if not exists:
                self.notes.append(f"{key} does not exist: its grant to {monitor} skipped")
                continue
            if self._granted(monitor, key, *privileges):
                continue
            self.emit(phase, key, sql.SQL(text).format(_ident(monitor)))

    def create_databricks_misc(self) -> None:
        """databricks_monitor's statement timeout and the write probe's function."""
        phase = Phase.CREATE_DATABRICKS_MISC
        monitor = "databricks_monitor"
        if monitor in self.new_roles or self.lakebase.role_timeouts.get(monitor) != "60s":
            self.emit(
                phase,
                _role(monitor),
                sql.SQL("ALTER ROLE {} SET statement_timeout = '60s'").format(_ident(monitor)),
            )
        if self.lakebase.health_check_write_succeeds != health_check_function_body():
            self.emit(
                phase,
                'function "public.health_check_write_succeeds()"',
                sql_file("create_databricks_misc.sql"),
            )


def build_plan(
    spec: ComputeSpec,
    snapshot: Snapshot,
    options: PlanOptions | None = None,
    *,
    checked: CheckedCatalog | None = None,
) -> Plan:
    """The statements that bring the catalog in `snapshot` to what `spec` asks for.

    Pure: no I/O. Raises SpecError for a spec that cannot be applied (bad names, passwords,
    options, delta operations)."""
    options = options or PlanOptions()
    if checked is None:
        checked = check_catalog(spec)
    return _Planner(spec, checked, snapshot, options).plan()

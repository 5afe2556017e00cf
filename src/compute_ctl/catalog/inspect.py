"""Read, once and in one round trip, everything the planner compares the spec with.

All of it comes from the maintenance connection to the system database: roles (with their
stored password verifiers), databases (owner, flags), the system database's extensions and
schemas, and a few facts about other databases that Postgres exposes cluster-wide through its
shared catalogs — which databases have subscriptions (`pg_subscription`), which have default
privileges granted to the privileged role and where a role about to be dropped still owns or
is granted something (`pg_shdepend`). Knowing those without connecting to every database is what
lets an unchanged spec be re-applied without opening a single per-database connection.

`list_dbs_and_roles` is the other reader: what `GET /dbs_and_roles` shows.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from compute_ctl.errors import PostgresError
from compute_ctl.postgres.connect import connect, pg_error_text
from compute_ctl.spec.models import Database, Role
from compute_ctl.spec.responses import DbsAndRoles

SHARED_OBJECTS_DBID = 0  # pg_shdepend.dbid of dependencies of shared objects (databases, …)
SYSTEM_EXTENSIONS = ("neon", "neon_utils", "pg_stat_statements", "pgaudit", "pgauditlogtofile")


@dataclass(frozen=True)
class RoleInfo:
    name: str
    oid: int
    password: str | None = field(default=None, repr=False)  # pg_authid.rolpassword: secret


@dataclass(frozen=True)
class DatabaseInfo:
    name: str
    oid: int
    owner: str | None
    restrict_conn: bool = False
    invalid: bool = False
    is_template: bool = False
    has_subscriptions: bool = False
    # Whether default privileges granting something to the privileged role exist in it: the
    # trace the per-database ChangeSchemaPerms step leaves (see plan.py).
    privileged_defaults: bool = False

    @property
    def connectable(self) -> bool:
        return not (self.restrict_conn or self.invalid)


@dataclass(frozen=True)
class ExtensionInfo:
    version: str
    schema: str
    relocatable: bool


@dataclass(frozen=True)
class LakebaseFacts:
    """What the lakebase phases compare with (read only in lakebase mode)."""

    # databricks.reader_statement_timeout as the apply session sees it (None: unset)
    reader_statement_timeout: str | None = None
    # role → its cluster-wide statement_timeout setting (None: none), for databricks_monitor
    # and the databricks_reader_<N> roles
    role_timeouts: Mapping[str, str | None] = field(default_factory=dict)
    # (grantee, object key) → the privileges granted directly (see `_LAKEBASE_GRANTS`)
    grants: Mapping[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    neon_perf_counters: bool = False  # the view neon.neon_perf_counters exists
    neon_get_perf_counters: bool = False  # the function neon.get_perf_counters() exists
    health_check_write_succeeds: str | None = None  # the function's source, if it exists


@dataclass(frozen=True)
class Snapshot:
    """The catalog as the planner sees it (system database facts plus cluster-wide ones)."""

    server_version_num: int
    system_database: str
    current_user: str
    roles: Mapping[str, RoleInfo]
    databases: Mapping[str, DatabaseInfo]
    has_neon_schema: bool = False
    has_health_check: bool = False
    extensions: Mapping[str, ExtensionInfo] = field(default_factory=dict)
    available_extensions: Mapping[str, str] = field(default_factory=dict)  # name → default
    postgres_db_pgaudit_off: bool = False
    drop_subscriptions_done: bool = False
    # For roles about to be deleted: the databases (pg_database oids, 0 for shared objects)
    # in which something still depends on them.
    role_dependencies: Mapping[str, frozenset[int]] = field(default_factory=dict)
    lakebase: LakebaseFacts | None = None

    def database_by_oid(self, oid: int) -> DatabaseInfo | None:
        for database in self.databases.values():
            if database.oid == oid:
                return database
        return None


# Our connections run with search_path='', so pg_catalog (searched implicitly, first) is where
# every unqualified function and operator below resolves.
_SYSTEM_FACTS = """
SELECT current_setting('server_version_num')::int4, current_database()::text, current_user::text,
       to_regnamespace('neon') IS NOT NULL, to_regclass('public.health_check') IS NOT NULL"""
_ROLES = "SELECT rolname::text, oid::int8, rolpassword FROM pg_catalog.pg_authid"
_DATABASES = """
SELECT d.datname::text, d.oid::int8, a.rolname::text,
       NOT d.datallowconn, d.datconnlimit = -2, d.datistemplate
  FROM pg_catalog.pg_database AS d LEFT JOIN pg_catalog.pg_authid AS a ON a.oid = d.datdba"""
_EXTENSIONS = """
SELECT e.extname::text, e.extversion, n.nspname::text, e.extrelocatable
  FROM pg_catalog.pg_extension AS e JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
 WHERE e.extname::text = ANY ({names})"""
_AVAILABLE = """
SELECT name::text, default_version FROM pg_catalog.pg_available_extensions
 WHERE name::text = ANY ({names})"""
_SUBSCRIBED_DATABASES = "SELECT DISTINCT subdbid::int8 FROM pg_catalog.pg_subscription"
_PRIVILEGED_DEFAULTS = """
SELECT DISTINCT s.dbid::int8
  FROM pg_catalog.pg_shdepend AS s JOIN pg_catalog.pg_authid AS a ON a.oid = s.refobjid
 WHERE s.classid = 'pg_catalog.pg_default_acl'::regclass
   AND s.refclassid = 'pg_catalog.pg_authid'::regclass
   AND s.deptype = 'a' AND a.rolname = {role}"""
_POSTGRES_DB_PGAUDIT_OFF = """
SELECT EXISTS (SELECT FROM pg_catalog.pg_db_role_setting AS s
                 JOIN pg_catalog.pg_database AS d ON d.oid = s.setdatabase
                WHERE d.datname = 'postgres' AND s.setrole = 0
                  AND 'pgaudit.log=none' = ANY (s.setconfig))"""
_ROLE_DEPENDENCIES = """
SELECT a.rolname::text, s.dbid::int8
  FROM pg_catalog.pg_shdepend AS s JOIN pg_catalog.pg_authid AS a ON a.oid = s.refobjid
 WHERE s.refclassid = 'pg_catalog.pg_authid'::regclass AND a.rolname::text = ANY ({names})
 GROUP BY 1, 2"""


# The lakebase facts. Grants are read from the ACLs themselves (aclexplode), so a privilege a
# role only inherits, or that PUBLIC has, still counts as missing, as it does for upstream,
# which grants it every time.
_LAKEBASE_FACTS = """
SELECT pg_catalog.current_setting('databricks.reader_statement_timeout', true),
       to_regclass('neon.neon_perf_counters') IS NOT NULL,
       to_regprocedure('neon.get_perf_counters()') IS NOT NULL,
       (SELECT p.prosrc FROM pg_catalog.pg_proc AS p
         WHERE p.oid = to_regprocedure('public.health_check_write_succeeds()'))"""
_LAKEBASE_ROLE_TIMEOUTS = """
SELECT r.rolname::text,
       (SELECT substr(c, length('statement_timeout=') + 1) FROM unnest(s.setconfig) AS c
         WHERE starts_with(c, 'statement_timeout=') LIMIT 1)
  FROM pg_catalog.pg_roles AS r
  LEFT JOIN pg_catalog.pg_db_role_setting AS s ON s.setrole = r.oid AND s.setdatabase = 0
 WHERE r.rolname = 'databricks_monitor' OR r.rolname::text ~ '^databricks_reader_[0-9]+$'"""
_LAKEBASE_GRANTS = """
SELECT g.rolname::text, o.key, a.privilege_type
  FROM (VALUES
        ('schema neon', (SELECT nspacl FROM pg_catalog.pg_namespace WHERE nspname = 'neon')),
        ('table public.health_check', (SELECT relacl FROM pg_catalog.pg_class
                                        WHERE oid = to_regclass('public.health_check'))),
        ('function pg_ls_dir(text)', (SELECT proacl FROM pg_catalog.pg_proc
                                       WHERE oid = 'pg_catalog.pg_ls_dir(text)'::regprocedure)),
        ('table neon.neon_perf_counters', (SELECT relacl FROM pg_catalog.pg_class
                                            WHERE oid = to_regclass('neon.neon_perf_counters'))),
        ('function neon.get_perf_counters()',
         (SELECT proacl FROM pg_catalog.pg_proc
           WHERE oid = to_regprocedure('neon.get_perf_counters()'))),
        ('table public.databricks_auth_metrics',
         (SELECT relacl FROM pg_catalog.pg_class
           WHERE oid = to_regclass('public.databricks_auth_metrics')))
       ) AS o(key, acl)
 CROSS JOIN LATERAL aclexplode(o.acl) AS a
  JOIN pg_catalog.pg_roles AS g ON g.oid = a.grantee
 WHERE g.rolname IN ('databricks_monitor', 'pg_monitor')"""
LAKEBASE_EXTENSIONS = ("databricks_auth",)


def _queries(
    privileged_role: str, deleting_roles: Collection[str], *, lakebase: bool = False
) -> sql.Composed:
    """One simple-protocol message with every query; results come back in this order."""
    extensions = SYSTEM_EXTENSIONS + (LAKEBASE_EXTENSIONS if lakebase else ())
    available = ("neon", "neon_utils") + (LAKEBASE_EXTENSIONS if lakebase else ())
    parts: list[sql.Composable] = [
        sql.SQL(_SYSTEM_FACTS),
        sql.SQL(_ROLES),
        sql.SQL(_DATABASES),
        sql.SQL(_EXTENSIONS).format(names=_text_array(extensions)),
        sql.SQL(_AVAILABLE).format(names=_text_array(available)),
        sql.SQL(_SUBSCRIBED_DATABASES),
        sql.SQL(_PRIVILEGED_DEFAULTS).format(role=sql.Literal(privileged_role)),
        sql.SQL(_POSTGRES_DB_PGAUDIT_OFF),
    ]
    if deleting_roles:
        names = _text_array(sorted(set(deleting_roles)))
        parts.append(sql.SQL(_ROLE_DEPENDENCIES).format(names=names))
    if lakebase:
        parts += [sql.SQL(_LAKEBASE_FACTS), sql.SQL(_LAKEBASE_ROLE_TIMEOUTS)]
        parts.append(sql.SQL(_LAKEBASE_GRANTS))
    return sql.SQL(";").join(parts)


def _lakebase_facts(results: list[list[tuple[Any, ...]]]) -> LakebaseFacts:
    timeout, perf_counters, get_perf_counters, write_succeeds = results[0][0]
    grants: dict[tuple[str, str], set[str]] = {}
    for grantee, key, privilege in results[2]:
        grants.setdefault((grantee, key), set()).add(privilege)
    return LakebaseFacts(
        reader_statement_timeout=timeout,
        role_timeouts={name: value for name, value in results[1]},
        grants={key: frozenset(privileges) for key, privileges in grants.items()},
        neon_perf_counters=perf_counters,
        neon_get_perf_counters=get_perf_counters,
        health_check_write_succeeds=write_succeeds,
    )


def _text_array(values: Collection[str]) -> sql.Composable:
    items = sql.SQL(", ").join(sql.Literal(v) for v in values)
    return sql.SQL("ARRAY[{}]::text[]").format(items)


async def _drop_subscriptions_done(conn: psycopg.AsyncConnection[Any], timeline_id: str) -> bool:
    """Whether subscriptions were already dropped for this timeline (a missing table: no)."""
    try:
        cursor = await conn.execute(
            "SELECT 1 FROM neon.drop_subscriptions_done WHERE timeline_id = %s",
            (timeline_id,),
        )
        return await cursor.fetchone() is not None
    except (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName):
        return False


async def inspect(
    conn: psycopg.AsyncConnection[Any],
    *,
    privileged_role: str,
    deleting_roles: Collection[str] = (),
    timeline_id: str | None = None,
    lakebase: bool = False,
) -> Snapshot:
    """Read the snapshot. `timeline_id` is given only when subscriptions may have to be dropped
    before start (the check needs it); `lakebase` adds the facts of the lakebase phases."""
    cursor = conn.cursor()
    await cursor.execute(_queries(privileged_role, deleting_roles, lakebase=lakebase))
    results: list[list[tuple[Any, ...]]] = []
    while True:
        results.append(await cursor.fetchall())
        if not cursor.nextset():
            break
    version, system_db, user, neon_schema, health_check = results[0][0]
    roles = {name: RoleInfo(name, oid, password) for name, oid, password in results[1]}
    subscribed = {row[0] for row in results[5]}
    privileged_defaults = {row[0] for row in results[6]}
    databases = {
        name: DatabaseInfo(
            name=name,
            oid=oid,
            owner=owner,
            restrict_conn=restrict,
            invalid=invalid,
            is_template=template,
            has_subscriptions=oid in subscribed,
            privileged_defaults=oid in privileged_defaults,
        )
        for name, oid, owner, restrict, invalid, template in results[2]
    }
    dependencies: dict[str, set[int]] = {}
    lakebase_at = 8
    if deleting_roles:
        lakebase_at += 1
        for name, dbid in results[8]:
            dependencies.setdefault(name, set()).add(dbid)
    done = False
    if timeline_id is not None:
        done = await _drop_subscriptions_done(conn, timeline_id)
    return Snapshot(
        server_version_num=version,
        system_database=system_db,
        current_user=user,
        roles=roles,
        databases=databases,
        has_neon_schema=neon_schema,
        has_health_check=health_check,
        extensions={
            name: ExtensionInfo(version=ver, schema=schema, relocatable=reloc)
            for name, ver, schema, reloc in results[3]
        },
        available_extensions={name: default for name, default in results[4]},
        postgres_db_pgaudit_off=results[7][0][0],
        drop_subscriptions_done=done,
        role_dependencies={name: frozenset(dbids) for name, dbids in dependencies.items()},
        lakebase=_lakebase_facts(results[lakebase_at:]) if lakebase else None,
    )


# --------------------------------------------------------------------------------------------
# `GET /dbs_and_roles`: the roles and databases Postgres has now, as the API shows them.

LIST_APPLICATION_NAME = "compute_ctl:get_dbs_and_roles"
_LIST_ROLES = "SELECT rolname, rolpassword FROM pg_catalog.pg_authid"
_LIST_DATABASES = (
    "SELECT datname, (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = datdba), "
    "NOT datallowconn, datconnlimit = -2 FROM pg_catalog.pg_database"
)


async def list_dbs_and_roles(connstr: str) -> DbsAndRoles:
    """Every role (with its stored password verifier) and every database; PostgresError
    when Postgres cannot be reached or read."""
    try:
        async with await connect(connstr, LIST_APPLICATION_NAME) as conn:
            cur = await conn.execute(_LIST_ROLES)
            roles = [
                Role(name=name, encrypted_password=password)
                for name, password in await cur.fetchall()
            ]
            cur = await conn.execute(_LIST_DATABASES)
            databases = [
                # model_construct: the internal flags are dropped when a Database is validated.
                Database.model_construct(
                    name=name,
                    owner=owner or "",
                    options=None,
                    restrict_conn=restrict,
                    invalid=invalid,
                )
                for name, owner, restrict, invalid in await cur.fetchall()
            ]
    except psycopg.Error as exc:
        raise PostgresError(pg_error_text(exc)) from None
    return DbsAndRoles(roles=roles, databases=databases)

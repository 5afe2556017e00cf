"""The planner, without a server: phase order, the zero-statement re-apply, delta operations,
password and option validation, redaction."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compute_ctl.catalog.inspect import DatabaseInfo, ExtensionInfo, RoleInfo, Snapshot
from compute_ctl.catalog.migrations import SKIP_MARKER, migrations, render
from compute_ctl.catalog.phases import ALL_PHASES, PHASE_ORDER, Phase, Plan
from compute_ctl.catalog.plan import PlanOptions, build_plan
from compute_ctl.errors import SpecError
from compute_ctl.spec.catalog_checks import is_scram_verifier, stored_password
from compute_ctl.spec.models import ComputeSpec, Role
from tests.integration.catalog.names import HOSTILE_DATABASES, HOSTILE_ROLE_NAMES
from tests.support.specs import minimal_spec

MD5 = "6b1d16b78004bbd51fa06af9eda75972"
SCRAM = (
    "SCRAM-SHA-256$4096:hBT22QjqpydQWqEulorfXA==$miBogcoj68JWYdsNB5PW1X6PjSLBEcNuctuhtGkb4PY="
    ":hxk2gxkwxGo6P7GCtfpMlhA9zwHvPMsCz+NQf2HfvWk="
)
SYSTEM = "postgres"


def spec(
    roles: list[dict[str, Any]] | None = None,
    databases: list[dict[str, Any]] | None = None,
    *,
    settings: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> ComputeSpec:
    cluster = {"roles": roles or [], "databases": databases or [], "settings": settings}
    return ComputeSpec.model_validate(minimal_spec(cluster=cluster, **fields))


def snapshot(
    roles: dict[str, str | None] | None = None,
    databases: list[DatabaseInfo] | None = None,
    **fields: Any,
) -> Snapshot:
    """A catalog with the privileged role, the neon schema and health_check in place."""
    all_roles = {"cloud_admin": None, "neon_superuser": None, **(roles or {})}
    base: dict[str, Any] = {
        "server_version_num": 150000,
        "system_database": SYSTEM,
        "current_user": "cloud_admin",
        "roles": {
            name: RoleInfo(name, 10 + i, password)
            for i, (name, password) in enumerate(all_roles.items())
        },
        "databases": {
            d.name: d for d in [DatabaseInfo(SYSTEM, 5, "cloud_admin"), *(databases or [])]
        },
        "has_neon_schema": True,
        "has_health_check": True,
        "extensions": {"neon": ExtensionInfo("1.5", "neon", False)},
        "available_extensions": {"neon": "1.5"},
    }
    base.update(fields)
    return Snapshot(**base)


def empty_snapshot() -> Snapshot:
    """A freshly initialised cluster: only the administrator and the system database."""
    return Snapshot(
        server_version_num=150000,
        system_database=SYSTEM,
        current_user="cloud_admin",
        roles={"cloud_admin": RoleInfo("cloud_admin", 10)},
        databases={SYSTEM: DatabaseInfo(SYSTEM, 5, "cloud_admin")},
    )


def db(name: str, owner: str, oid: int = 100, **flags: Any) -> DatabaseInfo:
    return DatabaseInfo(name, oid, owner, privileged_defaults=True, **flags)


def texts(plan: Plan) -> list[str]:
    return [s.text() for s in plan.statements]


def phases(plan: Plan) -> list[Phase]:
    return [s.phase for s in plan.statements]


# --------------------------------------------------------------------------------------------
# Order and idempotence


def test_a_full_plan_follows_upstreams_phase_order() -> None:
    the_spec = spec(
        [{"name": "alice", "encrypted_password": MD5}, {"name": "bob"}],
        [{"name": "db1", "owner": "alice"}],
        settings=[
            {"name": "shared_preload_libraries", "value": "pg_stat_statements", "vartype": "string"}
        ],
        delta_operations=[
            {"action": "delete_db", "name": "old_db"},
            {"action": "rename_role", "name": "carl", "new_name": "carol"},
            {"action": "delete_role", "name": "dave"},
        ],
        drop_subscriptions_before_start=True,
        audit_log_level="Full",
    )
    catalog = Snapshot(
        server_version_num=150000,
        system_database=SYSTEM,
        current_user="cloud_admin",
        roles={n: RoleInfo(n, i) for i, n in enumerate(["cloud_admin", "carl", "dave"])},
        databases={
            SYSTEM: DatabaseInfo(SYSTEM, 5, "cloud_admin"),
            "old_db": DatabaseInfo("old_db", 6, "dave", has_subscriptions=True),
            "broken": DatabaseInfo("broken", 7, "cloud_admin", invalid=True),
        },
        available_extensions={"neon": "1.5"},
        role_dependencies={"dave": frozenset({5, 0})},
    )
    plan = build_plan(the_spec, catalog, PlanOptions(timeline_id="t"))
    seen = list(dict.fromkeys(phases(plan)))
    assert seen == [
        Phase.PRE_DROP_CLEANUP,
        Phase.CREATE_PRIVILEGED_ROLE,
        Phase.DROP_INVALID_DATABASES,
        Phase.RENAME_ROLES,
        Phase.CREATE_AND_ALTER_ROLES,
        Phase.RENAME_AND_DELETE_DATABASES,
        Phase.CREATE_AND_ALTER_DATABASES,
        Phase.CREATE_SCHEMA_NEON,
        # dave owns shared objects: the system database is visited first (and alone), then db1
        Phase.DELETE_DB_ROLE_REFERENCES,
        Phase.CHANGE_SCHEMA_PERMS,
        Phase.HANDLE_OTHER_EXTENSIONS,
        Phase.HANDLE_NEON_EXTENSION,
        Phase.CREATE_AVAILABILITY_CHECK,
        Phase.DROP_ROLES,
        Phase.FINALIZE_DROP_LOGICAL_SUBSCRIPTIONS,
        Phase.CREATE_PGAUDIT_EXTENSION,
        Phase.CREATE_PGAUDITLOGTOFILE_EXTENSION,
        Phase.DISABLE_POSTGRES_DB_PGAUDIT,
    ]
    cluster_phases = [p for p in seen if not p.per_database]
    assert cluster_phases == sorted(cluster_phases, key=lambda p: p.position)
    assert len(PHASE_ORDER) == len(ALL_PHASES)
    assert texts(plan)[:2] == [
        texts(plan)[0],
        'CREATE ROLE "neon_superuser" CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS'
        " IN ROLE pg_read_all_data, pg_write_all_data",
    ]
    assert plan.statements[0].database == "old_db"
    assert 'DROP DATABASE IF EXISTS "broken"' in texts(plan)
    assert 'ALTER ROLE "carl" RENAME TO "carol"' in texts(plan)
    assert 'DROP DATABASE IF EXISTS "old_db" WITH (FORCE)' in texts(plan)
    assert 'DROP ROLE IF EXISTS "dave"' in texts(plan)
    assert "CREATE EXTENSION IF NOT EXISTS neon WITH SCHEMA neon" in texts(plan)


def test_an_unchanged_catalog_plans_nothing() -> None:
    the_spec = spec(
        [
            {"name": "alice", "encrypted_password": MD5.upper()},
            {"name": "bob", "encrypted_password": SCRAM},
            {"name": "carol"},
        ],
        [{"name": "db1", "owner": "alice"}, {"name": "db2", "owner": "bob"}],
        settings=[
            {"name": "shared_preload_libraries", "value": "pg_stat_statements", "vartype": "string"}
        ],
        delta_operations=[
            {"action": "delete_db", "name": "gone"},
            {"action": "rename_db", "name": "gone", "new_name": "db1"},
            {"action": "rename_role", "name": "gone", "new_name": "carol"},
            {"action": "delete_role", "name": "gone"},
            {"action": "something_else", "name": "x"},
        ],
        drop_subscriptions_before_start=True,
        audit_log_level="Base",
    )
    catalog = snapshot(
        {"alice": "md5" + MD5, "bob": SCRAM, "carol": None},
        [db("db1", "alice", 100), db("db2", "bob", 101)],
        extensions={
            "pg_stat_statements": ExtensionInfo("1.10", "public", True),
            "pgaudit": ExtensionInfo("1.7", "public", False),
            "neon": ExtensionInfo("1.5", "neon", False),
        },
        available_extensions={"neon": "1.5"},
        postgres_db_pgaudit_off=True,
        drop_subscriptions_done=True,
    )
    plan = build_plan(the_spec, catalog)
    assert plan.statements == ()
    assert plan.notes == ()


# --------------------------------------------------------------------------------------------
# Roles


def test_passwords_are_compared_with_what_postgres_stores() -> None:
    the_spec = spec(
        [
            {"name": "same_md5", "encrypted_password": MD5},
            {"name": "new_md5", "encrypted_password": MD5},
            {"name": "same_scram", "encrypted_password": SCRAM},
            {"name": "now_null"},
        ]
    )
    catalog = snapshot(
        {
            "same_md5": "md5" + MD5,
            "new_md5": "md5" + "0" * 32,
            "same_scram": SCRAM,
            "now_null": "md5" + MD5,
        }
    )
    plan = build_plan(the_spec, catalog)
    assert [s.obj for s in plan.statements] == ['role "new_md5"', 'role "now_null"']
    assert plan.statements[0].secret
    assert not plan.statements[1].secret
    assert texts(plan) == [
        "ALTER ROLE \"new_md5\" LOGIN PASSWORD '<redacted>'",
        'ALTER ROLE "now_null" LOGIN PASSWORD NULL',
    ]
    secret = plan.statements[0].text(redact=False)
    assert secret == f"ALTER ROLE \"new_md5\" LOGIN PASSWORD 'md5{MD5}'"
    assert MD5 not in repr(plan.statements[0])
    assert MD5 not in plan.render()


def test_new_roles_join_the_privileged_role_unless_they_are_jwks_roles() -> None:
    the_spec = spec(
        [
            {"name": "web", "encrypted_password": SCRAM},
            {"name": "jwt user"},
            {
                "name": "monitor",
                "options": [
                    {
                        "name": 'IN ROLE pg_monitor, "Other Role"',
                        "value": None,
                        "vartype": "string",
                    },
                    {"name": "CONNECTION LIMIT", "value": "3", "vartype": "integer"},
                    {"name": "VALID UNTIL", "value": "2030-01-01", "vartype": "string"},
                    {"name": "nologin", "value": None, "vartype": "bool"},
                ],
            },
        ],
        local_proxy_config={
            "jwks": [
                {
                    "id": "1",
                    "role_names": ["jwt user"],
                    "jwks_url": "https://x",
                    "provider_name": "p",
                }
            ]
        },
    )
    catalog = snapshot({"databricks_superuser": None})
    plan = build_plan(the_spec, catalog, PlanOptions(privileged_role="databricks_superuser"))
    assert texts(plan) == [
        'CREATE ROLE "web" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION'
        " IN ROLE \"databricks_superuser\" LOGIN PASSWORD '<redacted>'",
        'CREATE ROLE "jwt user" LOGIN PASSWORD NULL',
        'CREATE ROLE "monitor" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION'
        ' IN ROLE "databricks_superuser", "pg_monitor", "Other Role" NOLOGIN'
        " CONNECTION LIMIT 3 VALID UNTIL '2030-01-01' PASSWORD NULL",
    ]


def test_altering_a_role_keeps_membership_clauses_out() -> None:
    the_spec = spec(
        [
            {
                "name": "monitor",
                "encrypted_password": MD5,
                "options": [{"name": "IN ROLE pg_monitor", "value": None, "vartype": "string"}],
            }
        ]
    )
    plan = build_plan(the_spec, snapshot({"monitor": None}))
    assert texts(plan) == ["ALTER ROLE \"monitor\" LOGIN PASSWORD '<redacted>'"]


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ({"name": "SUPERUSER; DROP TABLE x", "vartype": "string"}, "unsupported role option"),
        ({"name": "SUPERUSER", "value": "true", "vartype": "bool"}, "takes no value"),
        ({"name": "PASSWORD", "value": "x", "vartype": "string"}, "unsupported role option"),
        ({"name": "CONNECTION LIMIT", "value": "lots", "vartype": "integer"}, "integer"),
        ({"name": "IN ROLE", "value": "a; b", "vartype": "string"}, "list of role names"),
        ({"name": "VALID UNTIL", "vartype": "string"}, "needs a value"),
    ],
)
def test_role_options_that_cannot_be_quoted_are_refused(
    option: dict[str, Any], problem: str
) -> None:
    the_spec = spec([{"name": "ok"}, {"name": "bad", "options": [option]}])
    with pytest.raises(SpecError, match=problem) as caught:
        build_plan(the_spec, snapshot())
    assert caught.value.field == "cluster.roles[1].options[0]"
    assert "'bad'" in str(caught.value)


def test_rename_role_does_what_it_says() -> None:
    deltas = [
        {"action": "rename_role", "name": "md5_old", "new_name": "md5_new"},
        {"action": "rename_role", "name": "scram_old", "new_name": "scram_new"},
        {"action": "rename_role", "name": "missing", "new_name": "also_missing"},
        {"action": "rename_role", "name": "done_old", "new_name": "done"},
    ]
    the_spec = spec(
        [
            {"name": "md5_new", "encrypted_password": MD5},
            {"name": "scram_new", "encrypted_password": SCRAM},
            {"name": "done"},
        ],
        delta_operations=deltas,
    )
    catalog = snapshot({"md5_old": "md5" + MD5, "scram_old": SCRAM, "done": None})
    plan = build_plan(the_spec, catalog)
    assert texts(plan) == [
        'ALTER ROLE "md5_old" RENAME TO "md5_new"',
        'ALTER ROLE "scram_old" RENAME TO "scram_new"',
        # the md5 hash is salted with the old name: Postgres drops it, so it is set again
        "ALTER ROLE \"md5_new\" LOGIN PASSWORD '<redacted>'",
    ]
    assert plan.notes == ('role "missing" to rename does not exist: skipped',)


@pytest.mark.parametrize("name", HOSTILE_ROLE_NAMES)
def test_hostile_names_are_quoted_as_identifiers(name: str) -> None:
    plan = build_plan(spec([{"name": name}]), snapshot())
    quoted = '"' + name.replace('"', '""') + '"'
    assert texts(plan) == [
        f"CREATE ROLE {quoted} INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION"
        ' IN ROLE "neon_superuser" LOGIN PASSWORD NULL'
    ]


def test_names_postgres_would_truncate_are_refused() -> None:
    with pytest.raises(SpecError, match="is 64 bytes long") as caught:
        build_plan(spec([{"name": "é" * 32}]), snapshot())
    assert caught.value.field == "cluster.roles[0].name"
    with pytest.raises(SpecError, match="database name is empty"):
        build_plan(spec([], [{"name": "", "owner": "x"}]), snapshot())
    with pytest.raises(SpecError, match="needs a new_name"):
        build_plan(spec(delta_operations=[{"action": "rename_db", "name": "a"}]), snapshot())


# --------------------------------------------------------------------------------------------
# Passwords


@pytest.mark.parametrize(
    "password",
    [MD5, MD5.upper(), SCRAM, "SCRAM-SHA-256$1:c2FsdA==$" + "A" * 43 + "=:" + "B" * 43 + "="],
)
def test_valid_passwords(password: str) -> None:
    stored = stored_password(Role(name="r", encrypted_password=password), "f")
    assert stored == (password if password.startswith("SCRAM") else "md5" + password.lower())


@pytest.mark.parametrize(
    "password",
    [
        "md5" + MD5,
        MD5[:-1],
        MD5 + "0",
        "z" * 32,
        "SCRAM-SHA-256$4096:hBT22QjqpydQWqEulorfXA==$short:short",
        "SCRAM-SHA-256$abc:c2FsdA==$" + "A" * 43 + "=:" + "B" * 43 + "=",
        "SCRAM-SHA-256$4096:$" + "A" * 43 + "=:" + "B" * 43 + "=",
        "SCRAM-SHA-256$4096:c2FsdA==$" + "A" * 43 + "=:" + "B" * 43 + "=$extra",
        "SCRAM-SHA-1$4096:c2FsdA==$" + "A" * 43 + "=:" + "B" * 43 + "=",
        "hunter2",
    ],
)
def test_invalid_passwords_are_refused_without_being_echoed(password: str) -> None:
    with pytest.raises(SpecError) as caught:
        build_plan(spec([{"name": "victim", "encrypted_password": password}]), snapshot())
    assert caught.value.field == "cluster.roles[0].encrypted_password"
    assert "'victim'" in str(caught.value)
    assert password not in caught.value.one_line()


@given(st.text(max_size=120))
def test_only_well_formed_verifiers_are_accepted(text: str) -> None:
    try:
        stored = stored_password(Role(name="r", encrypted_password=text), "f")
    except SpecError:
        return
    assert stored is not None
    assert (len(text) == 32 and stored == "md5" + text.lower()) or is_scram_verifier(text)


# --------------------------------------------------------------------------------------------
# Databases


def test_databases_are_created_with_quoted_options_then_granted() -> None:
    the_spec = spec(
        [],
        [
            {
                "name": "db'x",
                "owner": 'o"wner',
                "options": [
                    {"name": "TEMPLATE", "value": "template0", "vartype": "enum"},
                    {"name": "lc_collate", "value": "C", "vartype": "string"},
                    {"name": "CONNECTION  LIMIT", "value": "10", "vartype": "integer"},
                ],
            }
        ],
    )
    plan = build_plan(the_spec, snapshot())
    assert texts(plan)[:2] == [
        "CREATE DATABASE \"db'x\" TEMPLATE 'template0' LC_COLLATE 'C' CONNECTION LIMIT 10"
        ' OWNER "o""wner"',
        'GRANT ALL PRIVILEGES ON DATABASE "db\'x" TO "neon_superuser"',
    ]
    assert {s.group for s in plan.statements[:2]} == {"db'x"}


def test_unsupported_database_options_are_refused() -> None:
    the_spec = spec(
        [],
        [
            {
                "name": "d",
                "owner": "o",
                "options": [{"name": "OWNER", "value": "x", "vartype": "string"}],
            }
        ],
    )
    with pytest.raises(SpecError, match="unsupported database option") as caught:
        build_plan(the_spec, snapshot())
    assert caught.value.field == "cluster.databases[0].options[0]"


@pytest.mark.parametrize(("name", "owner"), HOSTILE_DATABASES[:4])
def test_owner_changes_compare_role_names_exactly(name: str, owner: str) -> None:
    the_spec = spec([], [{"name": name, "owner": owner}])
    assert build_plan(the_spec, snapshot({owner: None}, [db(name, owner)])).statements == ()
    plan = build_plan(the_spec, snapshot({owner: None}, [db(name, "someone")]))
    assert phases(plan) == [Phase.CREATE_AND_ALTER_DATABASES]


def test_schema_permissions_are_planned_where_they_never_ran() -> None:
    the_spec = spec(
        [],
        [
            {"name": "fresh", "owner": "o"},
            {"name": "done", "owner": "o"},
            {"name": "never", "owner": "o"},
            {"name": "locked", "owner": "o"},
        ],
    )
    catalog = snapshot(
        {"o": None},
        [
            db("done", "o", 101),
            DatabaseInfo("never", 102, "o"),
            DatabaseInfo("locked", 103, "o", restrict_conn=True),
        ],
    )
    plan = build_plan(the_spec, catalog)
    perms = [s for s in plan.statements if s.phase is Phase.CHANGE_SCHEMA_PERMS]
    assert [(s.database, s.args) for s in perms] == [
        ("fresh", (("db_owner", "o"),)),
        ("fresh", (("privileged_role", "neon_superuser"),)),
        ("never", (("db_owner", "o"),)),
        ("never", (("privileged_role", "neon_superuser"),)),
    ]
    assert plan.notes == (
        'database "locked" does not accept connections (restrict_conn=True, invalid=False):'
        " per-database steps skipped",
    )


def test_delete_and_rename_databases() -> None:
    deltas = [
        {"action": "delete_db", "name": "tmpl"},
        {"action": "delete_db", "name": "absent"},
        {"action": "rename_db", "name": "a", "new_name": "b"},
        {"action": "rename_db", "name": "nowhere", "new_name": "elsewhere"},
    ]
    catalog = snapshot({}, [db("tmpl", "o", 100, is_template=True), db("a", "o", 101)])
    plan = build_plan(spec([], [{"name": "b", "owner": "o"}], delta_operations=deltas), catalog)
    assert texts(plan) == [
        'ALTER DATABASE "tmpl" IS_TEMPLATE false',
        'DROP DATABASE IF EXISTS "tmpl" WITH (FORCE)',
        'ALTER DATABASE "a" RENAME TO "b"',
    ]
    assert plan.notes == ('database "nowhere" to rename does not exist: skipped',)


def test_deleting_a_role_visits_the_databases_it_has_dependencies_in() -> None:
    deltas = [{"action": "delete_role", "name": "victim"}]
    the_spec = spec(
        [],
        [{"name": "d1", "owner": "o"}, {"name": "d2", "owner": "victim"}],
        delta_operations=deltas,
    )
    catalog = snapshot(
        {"o": None, "victim": None},
        [db("d1", "o", 101), db("d2", "victim", 102), db("d3", "x", 103), db("d4", "x", 104)],
        role_dependencies={"victim": frozenset({0, 101, 102, 104})},
    )
    plan = build_plan(the_spec, catalog)
    refs = [s for s in plan.statements if s.phase is Phase.DELETE_DB_ROLE_REFERENCES]
    # the system database first (shared objects go to cloud_admin, before any other database
    # can touch them), d1 (spec owner o), d4 (its owner); not d2 (owned by the victim itself)
    # nor d3 (nothing there)
    assert [(s.database, s.text(), s.first) for s in refs if s.text().startswith("REASSIGN")] == [
        (SYSTEM, 'REASSIGN OWNED BY "victim" TO "cloud_admin"', True),
        ("d1", 'REASSIGN OWNED BY "victim" TO "o"', False),
        ("d4", 'REASSIGN OWNED BY "victim" TO "x"', False),
    ]
    assert [s.args for s in refs if s.args] == [(("role_name", "victim"),)] * 3
    assert texts(plan)[-1] == 'DROP ROLE IF EXISTS "victim"'


# --------------------------------------------------------------------------------------------
# Extensions, subscriptions, audit, phase selection


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        (None, ["CREATE EXTENSION IF NOT EXISTS neon WITH SCHEMA neon"]),
        (ExtensionInfo("1.5", "neon", False), []),
        (ExtensionInfo("1.4", "neon", False), ["ALTER EXTENSION neon UPDATE"]),
        (
            ExtensionInfo("1.5", "public", False),
            [
                "UPDATE pg_catalog.pg_extension SET extrelocatable = true WHERE extname"
                " OPERATOR(pg_catalog.=) 'neon'::pg_catalog.name AND extrelocatable"
                " OPERATOR(pg_catalog.=) false",
                "ALTER EXTENSION neon SET SCHEMA neon",
            ],
        ),
    ],
)
def test_neon_extension(installed: ExtensionInfo | None, expected: list[str]) -> None:
    extensions = {"neon": installed} if installed else {}
    catalog = snapshot(extensions=extensions, available_extensions={"neon": "1.5"})
    assert texts(build_plan(spec(), catalog)) == expected


def test_neon_extension_unavailable_is_one_note() -> None:
    plan = build_plan(spec(), snapshot(extensions={}, available_extensions={}))
    assert plan.statements == ()
    assert plan.notes == ("the neon extension is not available: HandleNeonExtension skipped",)


def test_dropping_subscriptions_needs_the_timeline() -> None:
    the_spec = spec([], [{"name": "d", "owner": "o"}], drop_subscriptions_before_start=True)
    catalog = snapshot({"o": None}, [db("d", "o", 100, has_subscriptions=True)])
    with pytest.raises(SpecError, match="timeline"):
        build_plan(the_spec, catalog)
    plan = build_plan(the_spec, catalog, PlanOptions(timeline_id="abc"))
    assert phases(plan) == [
        Phase.DROP_LOGICAL_SUBSCRIPTIONS,
        Phase.FINALIZE_DROP_LOGICAL_SUBSCRIPTIONS,
        Phase.FINALIZE_DROP_LOGICAL_SUBSCRIPTIONS,
    ]
    assert plan.statements[0].database == "d"
    assert "'abc'" in texts(plan)[-1]


@pytest.mark.parametrize(
    ("level", "count"), [("Disabled", 0), ("Log", 2), ("Base", 2), ("Hipaa", 3), ("Full", 3)]
)
def test_audit_levels(level: str, count: int) -> None:
    plan = build_plan(spec(audit_log_level=level), snapshot())
    assert len(plan) == count
    if count:
        assert texts(plan)[-1] == "ALTER DATABASE postgres SET pgaudit.log TO 'none'"


def test_only_the_selected_phases_are_planned() -> None:
    the_spec = spec([{"name": "r"}], [{"name": "d", "owner": "r"}])
    plan = build_plan(
        the_spec,
        empty_snapshot(),
        PlanOptions(phases=frozenset({Phase.CREATE_AND_ALTER_DATABASES})),
    )
    assert set(phases(plan)) == {Phase.CREATE_AND_ALTER_DATABASES}
    lakebase = build_plan(the_spec, empty_snapshot(), PlanOptions(lakebase=True))
    assert "REPLICATION" not in texts(lakebase)[0]


def test_render_keeps_comments_on_one_line() -> None:
    plan = build_plan(spec([], [{"name": "a\nb", "owner": "o"}]), snapshot({"o": None}))
    rendered = plan.render()
    assert '-- CreateAndAlterDatabases: database "a\\nb"\n' in rendered
    assert all(line.startswith("--") or not line.startswith(" b") for line in rendered.splitlines())


# --------------------------------------------------------------------------------------------
# Migrations (files only)


def test_migration_files_are_numbered_and_each_has_a_test() -> None:
    found = migrations()
    assert [m.id for m in found] == list(range(1, 13))
    assert [m.id for m in found if m.skipped] == [5, 6, 7, 8, 9]
    assert all(m.untested == m.skipped for m in found)
    text = render(found[1].text, "neon_superuser").as_string(None)
    assert "'neon_superuser'" in text
    assert "{" not in text
    assert all(m.test.strip() for m in found)
    assert all(not m.test.startswith(SKIP_MARKER) or m.skipped for m in found)

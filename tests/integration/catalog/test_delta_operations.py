"""Deleting roles that own objects and hold grants, dropping databases that are in use or have
subscriptions, and dropping subscriptions once per timeline."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.catalog.conftest import (
    apply,
    databases,
    execute,
    role_names,
    rows,
    spec_of,
)
from tests.support.pgserver import PgServer

pytestmark = pytest.mark.postgres

GRANTEE = "'); MALFORMED SQL $$ $x$ $/;5%$ %I"


def test_deleting_a_role_that_owns_objects_and_holds_grants_in_several_databases(
    pg: PgServer,
) -> None:
    roles = [{"name": "own_owner"}, {"name": "own_victim"}, {"name": GRANTEE}]
    dbs = [{"name": "own_db1", "owner": "own_owner"}, {"name": "own_db2", "owner": "own_owner"}]
    apply(pg, spec_of(roles, dbs))

    # db1: a table owned by the victim, and grants made by the administrator
    execute(pg, "CREATE TABLE public.victims (id int)", dbname="own_db1")
    execute(pg, "ALTER TABLE public.victims OWNER TO own_victim", dbname="own_db1")
    execute(pg, "CREATE TABLE public.shared (id int)", dbname="own_db1")
    execute(pg, "GRANT SELECT ON public.shared TO own_victim", dbname="own_db1")
    # db2: default privileges and a schema, and table grants made through the privileged
    # role's grant option (the case DROP OWNED alone cannot undo)
    execute(pg, "CREATE SCHEMA victim_schema AUTHORIZATION own_victim", dbname="own_db2")
    execute(
        pg,
        "ALTER DEFAULT PRIVILEGES FOR ROLE own_owner IN SCHEMA public GRANT SELECT ON TABLES"
        " TO own_victim",
        dbname="own_db2",
    )
    execute(pg, "CREATE TABLE public.t (id int)", dbname="own_db2")
    with psycopg.connect(pg.connstr(), dbname="own_db2", autocommit=True) as conn:
        conn.execute("SET ROLE own_owner")
        conn.execute(
            psycopg.sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(
                psycopg.sql.Identifier(GRANTEE)
            )
        )
    grantors = rows(
        pg,
        "SELECT DISTINCT grantor FROM information_schema.role_table_grants WHERE grantee = %s",
        (GRANTEE,),
        dbname="own_db2",
    )
    assert grantors == [("neon_superuser",)]
    # a database outside the spec owned by the victim, and a grant in the system database
    execute(pg, "CREATE DATABASE own_outside OWNER own_victim")
    execute(pg, "GRANT CONNECT ON DATABASE own_db1 TO own_victim")

    deltas = [
        {"action": "delete_role", "name": "own_victim"},
        {"action": "delete_role", "name": GRANTEE},
    ]
    keep = [{"name": "own_owner"}]
    report = apply(pg, spec_of(keep, dbs, delta_operations=deltas), concurrency=3)
    assert report.by_phase["DropRoles"] == 2
    assert role_names(pg, ["own_victim", GRANTEE]) == set()
    assert rows(
        pg, "SELECT tableowner FROM pg_tables WHERE tablename = 'victims'", dbname="own_db1"
    ) == [("own_owner",)]
    # shared objects (a database) are reassigned from the system database, to the administrator
    assert databases(pg, ["own_outside"]) == {"own_outside": "cloud_admin"}
    assert apply(pg, spec_of(keep, dbs, delta_operations=deltas)).executed == 0

    cleanup = [
        {"action": "delete_db", "name": "own_db1"},
        {"action": "delete_db", "name": "own_db2"},
        {"action": "delete_db", "name": "own_outside"},
        {"action": "delete_role", "name": "own_owner"},
    ]
    apply(pg, spec_of(delta_operations=cleanup))
    assert databases(pg, ["own_db1", "own_db2", "own_outside"]) == {}


def test_dropping_a_database_terminates_its_sessions(pg: PgServer) -> None:
    apply(pg, spec_of([{"name": "busy_owner"}], [{"name": "busy db", "owner": "busy_owner"}]))
    session = psycopg.connect(pg.connstr(), dbname="busy db")
    try:
        execute(pg, "UPDATE pg_database SET datistemplate = true WHERE datname = 'busy db'")
        report = apply(pg, spec_of(delta_operations=[{"action": "delete_db", "name": "busy db"}]))
        assert report.by_phase == {"RenameAndDeleteDatabases": 2}  # template flag, then drop
        assert databases(pg, ["busy db"]) == {}
        with pytest.raises(psycopg.OperationalError):
            session.execute("SELECT 1")
    finally:
        session.close()
    apply(pg, spec_of(delta_operations=[{"action": "delete_role", "name": "busy_owner"}]))


def _subscribe(pg: PgServer, dbname: str, name: str) -> None:
    # connect = false: the subscription exists without a publisher (and without a slot)
    execute(
        pg,
        f"CREATE SUBSCRIPTION {name} CONNECTION 'host=127.0.0.1 port=1 dbname=none'"
        " PUBLICATION nothing WITH (connect = false)",
        dbname=dbname,
    )


def test_deleting_a_database_with_subscriptions(pg: PgServer) -> None:
    name = "';subscriber_db $$ $x$ $;"
    apply(pg, spec_of([], [{"name": name, "owner": "cloud_admin"}]))
    _subscribe(pg, name, "doomed_sub")
    deltas = [
        {"action": "delete_db", "name": name},
        {"action": "delete_db", "name": "nonexistent_db"},
    ]
    report = apply(pg, spec_of(delta_operations=deltas))
    assert report.by_phase["DropLogicalSubscriptions (pre-dropdb)"] == 1
    assert databases(pg, [name]) == {}
    assert rows(pg, "SELECT count(*) FROM pg_subscription") == [(0,)]


def test_subscriptions_are_dropped_once_per_timeline(pg: PgServer) -> None:
    dbs = [{"name": "sub_a", "owner": "cloud_admin"}, {"name": "sub_b", "owner": "cloud_admin"}]
    apply(pg, spec_of([], dbs))
    _subscribe(pg, "sub_a", "inherited_sub")
    timeline = "de200bd42b49cc1814412c7e592dd6e9"
    spec = spec_of([], dbs, drop_subscriptions_before_start=True, timeline_id=timeline)
    report = apply(pg, spec)
    assert report.by_phase["DropLogicalSubscriptions"] == 1  # only where there is one
    assert report.by_phase["FinalizeDropLogicalSubscriptions"] == 2
    assert rows(pg, "SELECT count(*) FROM pg_subscription") == [(0,)]
    assert rows(pg, "SELECT timeline_id FROM neon.drop_subscriptions_done") == [(timeline,)]
    # a subscription created after the branch started is not dropped again
    _subscribe(pg, "sub_b", "new_sub")
    assert apply(pg, spec).executed == 0
    assert rows(pg, "SELECT subname FROM pg_subscription") == [("new_sub",)]
    # a new timeline drops again
    other = spec_of([], dbs, drop_subscriptions_before_start=True, timeline_id="1" * 32)
    apply(pg, other)
    assert rows(pg, "SELECT count(*) FROM pg_subscription") == [(0,)]
    apply(pg, spec_of(delta_operations=[{"action": "delete_db", "name": d["name"]} for d in dbs]))

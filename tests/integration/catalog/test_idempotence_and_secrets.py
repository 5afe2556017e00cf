"""An unchanged spec executes nothing; passwords never reach the server's log, its statistics or
our errors; the stored verifiers are the ones the spec gave (and they work for logging in)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

from compute_ctl.errors import CatalogError, SpecError
from tests.integration.catalog.conftest import (
    PASSWORD_ROLES,
    PRELOAD_PG_STAT_STATEMENTS,
    LogWindow,
    apply,
    passwords,
    role_names,
    rows,
    spec_of,
)
from tests.integration.catalog.verifiers import md5_digest, scram_verifier
from tests.support.pgserver import PgServer

pytestmark = pytest.mark.postgres

# Anything that changes the catalog, as our statements spell it.
DDL = re.compile(
    r"\b(CREATE|ALTER|DROP|GRANT|REVOKE|REASSIGN) [A-Z]|\bDO \$|\bINSERT INTO|\bUPDATE \S+ SET"
)


def _rich_spec(prefix: str) -> list[dict[str, Any]]:
    return [
        {"name": f"{prefix}md5", "encrypted_password": md5_digest("a", f"{prefix}md5")},
        {"name": f"{prefix}scram", "encrypted_password": scram_verifier("b")},
        {"name": f"{prefix}nopw"},
        {
            "name": f"{prefix}opts",
            "encrypted_password": md5_digest("c", f"{prefix}opts").upper(),
            "options": [
                {"name": "IN ROLE pg_monitor", "value": None, "vartype": "string"},
                {"name": "CONNECTION LIMIT", "value": "5", "vartype": "integer"},
            ],
        },
    ]


def test_second_apply_executes_no_statement(pg: PgServer) -> None:
    roles = _rich_spec("idem_")
    dbs: list[dict[str, Any]] = [
        {"name": "idem_db", "owner": "idem_md5"},
        {
            "name": "idem_db_c",
            "owner": "idem_scram",
            "options": [
                {"name": "TEMPLATE", "value": "template0", "vartype": "enum"},
                {"name": "LC_COLLATE", "value": "C", "vartype": "string"},
                {"name": "LC_CTYPE", "value": "C", "vartype": "string"},
                {"name": "CONNECTION LIMIT", "value": "20", "vartype": "integer"},
            ],
        },
    ]
    deltas = [
        {"action": "delete_role", "name": "idem_never_existed"},
        {"action": "delete_db", "name": "idem_never_existed"},
        {"action": "rename_db", "name": "idem_gone", "new_name": "idem_db"},
    ]
    spec = spec_of(roles, dbs, settings=PRELOAD_PG_STAT_STATEMENTS, delta_operations=deltas)
    first = apply(pg, spec)
    assert first.executed > 0
    assert rows(pg, "SELECT rolconnlimit FROM pg_roles WHERE rolname = 'idem_opts'") == [(5,)]
    assert rows(
        pg,
        "SELECT datcollate, datconnlimit FROM pg_database WHERE datname = 'idem_db_c'",
    ) == [("C", 20)]

    with LogWindow(pg) as window:
        second = apply(pg, spec)
    assert second.executed == 0
    assert second.planned == 0
    assert any("pg_authid" in line for line in window.lines), "the catalog is still read"
    assert not [line for line in window.lines if DDL.search(line)]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_passwords_stay_out_of_logs_and_statistics(pg: PgServer, concurrency: int) -> None:
    roles = _rich_spec(f"quiet{concurrency}_")
    secrets = [str(r["encrypted_password"]) for r in roles if "encrypted_password" in r]
    changed = [dict(r) for r in roles]
    changed[1]["encrypted_password"] = scram_verifier("changed")
    secrets.append(str(changed[1]["encrypted_password"]))
    with LogWindow(pg) as window:
        apply(pg, spec_of(roles, settings=PRELOAD_PG_STAT_STATEMENTS), concurrency=concurrency)
        apply(pg, spec_of(changed, settings=PRELOAD_PG_STAT_STATEMENTS), concurrency=concurrency)
    logged = "\n".join(window.lines)
    # the statements setting passwords were not logged at all
    for role in roles:
        if "encrypted_password" in role:
            assert f'ROLE "{role["name"]}"' not in logged
    for secret in secrets:
        assert secret not in logged
        assert secret.lower() not in logged
    texts = rows(pg, "SELECT query FROM public.pg_stat_statements")
    assert texts  # statements are tracked in general …
    for (query,) in texts:
        assert not any(secret.lower() in query.lower() for secret in secrets)
    # … and the logging settings are back to normal on later statements
    assert "SELECT 'end-" in pg.log_text()


def test_failed_secret_statement_reveals_no_password(pg: PgServer) -> None:
    verifier = scram_verifier("leak")
    role = {
        "name": "quiet_bad_limit",
        "encrypted_password": verifier,
        "options": [{"name": "CONNECTION LIMIT", "value": "-5", "vartype": "integer"}],
    }
    with LogWindow(pg) as window, pytest.raises(CatalogError) as caught:
        apply(pg, spec_of([role]))
    assert caught.value.phase == "CreateAndAlterRoles"
    assert caught.value.obj == 'role "quiet_bad_limit"'
    assert "invalid connection limit" in caught.value.message
    assert verifier not in str(caught.value)
    logged = "\n".join(window.lines)
    assert "invalid connection limit" in logged
    assert verifier not in logged


@pytest.mark.parametrize(
    "password",
    [
        "md5" + "0" * 32,  # md5 prefix included
        "0" * 31,
        "g" * 32,
        "plaintext password",
        "SCRAM-SHA-256$4096:c2FsdA==$short:key",
        "SCRAM-SHA-256$0:c2FsdA==$" + "A" * 43 + "=:" + "A" * 43 + "=",
        "",
    ],
)
def test_malformed_passwords_are_refused_before_anything_runs(pg: PgServer, password: str) -> None:
    roles = [{"name": "pwfmt_first"}, {"name": "pwfmt_bad", "encrypted_password": password}]
    with pytest.raises(SpecError) as caught:
        apply(pg, spec_of(roles))
    assert caught.value.field == "cluster.roles[1].encrypted_password"
    assert "pwfmt_bad" in str(caught.value)
    if password:
        assert password not in str(caught.value)
    assert role_names(pg, ["pwfmt_first", "pwfmt_bad"]) == set()


def test_stored_verifiers_let_their_users_log_in(pg: PgServer) -> None:
    md5_role, scram_role = PASSWORD_ROLES
    roles = [
        # an upper-case digest is stored lower-case, or Postgres would hash it as plaintext
        {"name": md5_role, "encrypted_password": md5_digest("md5 pass", md5_role).upper()},
        {"name": scram_role, "encrypted_password": scram_verifier("scram pass")},
    ]
    apply(pg, spec_of(roles))
    assert passwords(pg, [md5_role]) == {md5_role: "md5" + md5_digest("md5 pass", md5_role)}
    for role, password in ((md5_role, "md5 pass"), (scram_role, "scram pass")):
        with psycopg.connect(pg.connstr(user=role), password=password) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (role,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(pg.connstr(user=role), password="wrong")
    assert apply(pg, spec_of(roles)).executed == 0

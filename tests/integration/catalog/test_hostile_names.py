"""Upstream's hostile role and database names are created, renamed and deleted exactly."""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.catalog.conftest import (
    apply,
    databases,
    passwords,
    role_names,
    rows,
    spec_of,
)
from tests.integration.catalog.names import HOSTILE_DATABASES, HOSTILE_ROLE_NAMES, renamed
from tests.integration.catalog.verifiers import md5_digest, scram_verifier
from tests.support.pgserver import PgServer

pytestmark = pytest.mark.postgres


def _roles(names: tuple[str, ...] | list[str]) -> list[dict[str, object]]:
    """Every third role has an md5 password, every third a SCRAM one, the rest none."""
    roles: list[dict[str, object]] = []
    for i, name in enumerate(names):
        role: dict[str, object] = {"name": name}
        if i % 3 == 0:
            role["encrypted_password"] = md5_digest(f"secret{i}", name)
        elif i % 3 == 1:
            role["encrypted_password"] = scram_verifier(f"secret{i}")
        roles.append(role)
    return roles


def _expected_passwords(roles: list[dict[str, object]]) -> dict[str, str | None]:
    expected: dict[str, str | None] = {}
    for role in roles:
        password = role.get("encrypted_password")
        name = str(role["name"])
        if password is None:
            expected[name] = None
        elif str(password).startswith("SCRAM"):
            expected[name] = str(password)
        else:
            expected[name] = f"md5{password}"
    return expected


def test_roles_are_created_renamed_and_deleted_exactly(pg: PgServer) -> None:
    roles = _roles(HOSTILE_ROLE_NAMES)
    report = apply(pg, spec_of(roles), concurrency=4)
    assert report.by_phase["CreateAndAlterRoles"] == len(HOSTILE_ROLE_NAMES)
    assert role_names(pg, HOSTILE_ROLE_NAMES) == set(HOSTILE_ROLE_NAMES)
    assert passwords(pg, HOSTILE_ROLE_NAMES) == _expected_passwords(roles)
    assert apply(pg, spec_of(roles)).executed == 0

    new_names = [renamed(name) for name in HOSTILE_ROLE_NAMES]
    renamed_roles = [
        {
            **role,
            "name": new,
            **({"encrypted_password": md5_digest("new", new)} if i % 3 == 0 else {}),
        }
        for i, (role, new) in enumerate(zip(roles, new_names, strict=True))
    ]
    deltas = [
        {"action": "rename_role", "name": old, "new_name": new}
        for old, new in zip(HOSTILE_ROLE_NAMES, new_names, strict=True)
    ]
    report = apply(pg, spec_of(renamed_roles, delta_operations=deltas))
    assert report.by_phase["RenameRoles"] == len(HOSTILE_ROLE_NAMES)
    # Postgres clears md5 hashes on rename (the role name salts them): those are set again;
    # SCRAM verifiers survive the rename and are left alone.
    assert report.by_phase["CreateAndAlterRoles"] == len(range(0, len(HOSTILE_ROLE_NAMES), 3))
    assert role_names(pg, HOSTILE_ROLE_NAMES) == set()
    assert role_names(pg, new_names) == set(new_names)
    assert passwords(pg, new_names) == _expected_passwords(renamed_roles)
    # The same spec again (delta operations included) changes nothing.
    assert apply(pg, spec_of(renamed_roles, delta_operations=deltas)).executed == 0

    deletes = [{"action": "delete_role", "name": name} for name in new_names]
    report = apply(pg, spec_of([], delta_operations=deletes))
    assert report.by_phase["DropRoles"] == len(new_names)
    assert role_names(pg, new_names) == set()
    assert apply(pg, spec_of([], delta_operations=deletes)).executed == 0


def test_databases_with_hostile_names_and_owners(pg: PgServer) -> None:
    roles = [{"name": owner} for _, owner in HOSTILE_DATABASES]
    dbs = [{"name": name, "owner": owner} for name, owner in HOSTILE_DATABASES]
    names = [name for name, _ in HOSTILE_DATABASES]
    apply(pg, spec_of(roles, dbs), concurrency=4)
    assert databases(pg, names) == dict(HOSTILE_DATABASES)
    for name in names:
        with psycopg.connect(pg.connstr(), dbname=name) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (name,)
        # ChangeSchemaPerms ran in each: the privileged role has default privileges there.
        acl = rows(pg, "SELECT count(*) FROM pg_default_acl", dbname=name)
        assert acl == [(2,)]
    assert apply(pg, spec_of(roles, dbs), concurrency=4).executed == 0

    new_names = [renamed(name) for name in names]
    moved = [
        {"name": new, "owner": owner}
        for new, (_, owner) in zip(new_names, HOSTILE_DATABASES, strict=True)
    ]
    deltas = [
        {"action": "rename_db", "name": old, "new_name": new}
        for old, new in zip(names, new_names, strict=True)
    ]
    report = apply(pg, spec_of(roles, moved, delta_operations=deltas), concurrency=4)
    assert report.by_phase == {"RenameAndDeleteDatabases": len(names)}
    assert databases(pg, names) == {}
    assert databases(pg, new_names) == {d["name"]: d["owner"] for d in moved}

    deletes = [{"action": "delete_db", "name": name} for name in new_names]
    deletes += [{"action": "delete_role", "name": owner} for _, owner in HOSTILE_DATABASES]
    apply(pg, spec_of([], [], delta_operations=deletes), concurrency=4)
    assert databases(pg, new_names) == {}
    assert role_names(pg, [owner for _, owner in HOSTILE_DATABASES]) == set()

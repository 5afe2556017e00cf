"""Checking a spec's catalog parts before anything runs, and converting them for the planner.

Everything that can be refused is refused here, naming the spec field and the object: names
Postgres would truncate, passwords it would mistake for plaintext, options that cannot be turned
into quoted SQL, and rename operations without a new name. A spec that passes cannot fail for
these reasons halfway through an apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from compute_ctl.catalog.options import (
    RoleOptions,
    check_name,
    database_option_clauses,
    parse_role_options,
    stored_password,
)
from compute_ctl.errors import SpecError
from compute_ctl.spec.models import ComputeSpec, Database, DeltaOp


@dataclass(frozen=True)
class CheckedRole:
    name: str
    password: str | None = field(repr=False)  # as stored in pg_authid: secret
    options: RoleOptions


@dataclass(frozen=True)
class CheckedDatabase:
    spec: Database
    options: tuple[sql.Composable, ...]


@dataclass(frozen=True)
class CheckedSpec:
    """The parts of a spec the catalog phases use, validated and converted."""

    roles: tuple[CheckedRole, ...]
    databases: tuple[CheckedDatabase, ...]
    deltas: tuple[DeltaOp, ...]


ACTED_ON = ("delete_db", "rename_db", "delete_role", "rename_role")


def check_spec(spec: ComputeSpec) -> CheckedSpec:
    """Validate names, passwords, options and delta operations; raise SpecError naming the
    field and the object on the first problem."""
    roles = []
    for index, role in enumerate(spec.cluster.roles):
        path = f"cluster.roles[{index}]"
        check_name("role", role.name, f"{path}.name")
        password = stored_password(role, f"{path}.encrypted_password")
        roles.append(CheckedRole(role.name, password, parse_role_options(role, f"{path}.options")))
    databases = []
    for index, database in enumerate(spec.cluster.databases):
        path = f"cluster.databases[{index}]"
        check_name("database", database.name, f"{path}.name")
        check_name("role", database.owner, f"{path}.owner")
        options = database_option_clauses(database, f"{path}.options")
        databases.append(CheckedDatabase(database, tuple(options)))
    deltas = []
    for index, op in enumerate(spec.delta_operations or ()):
        if op.action not in ACTED_ON:
            continue
        kind = "role" if op.action.endswith("_role") else "database"
        check_name(kind, op.name, f"delta_operations[{index}].name")
        if op.action.startswith("rename_"):
            if op.new_name is None:
                raise SpecError(
                    f"delta_operations[{index}].new_name", f"{op.action} needs a new_name"
                )
            check_name(kind, op.new_name, f"delta_operations[{index}].new_name")
        deltas.append(op)
    return CheckedSpec(tuple(roles), tuple(databases), tuple(deltas))

"""`GET /dbs_and_roles`: the roles and databases Postgres has now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from compute_ctl.http.responses import json_error, json_ok
from compute_ctl.postgres.connect import connect, pg_error_text
from compute_ctl.spec.models import Database, Role
from compute_ctl.spec.responses import DbsAndRoles

if TYPE_CHECKING:
    import psycopg

    from compute_ctl.compute.node import ComputeNode

APPLICATION_NAME = "compute_ctl:get_dbs_and_roles"
ROLES_QUERY = "SELECT rolname, rolpassword FROM pg_catalog.pg_authid"
DATABASES_QUERY = (
    "SELECT datname, (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = datdba), "
    "NOT datallowconn, datconnlimit = -2 FROM pg_catalog.pg_database"
)


async def read_dbs_and_roles(conn: psycopg.AsyncConnection[Any]) -> DbsAndRoles:
    cur = await conn.execute(ROLES_QUERY)
    roles = [
        Role(name=name, encrypted_password=password) for name, password in await cur.fetchall()
    ]
    cur = await conn.execute(DATABASES_QUERY)
    databases = [
        # model_construct: the internal flags are dropped when a Database is validated.
        Database.model_construct(
            name=name, owner=owner or "", options=None, restrict_conn=restrict, invalid=invalid
        )
        for name, owner, restrict, invalid in await cur.fetchall()
    ]
    return DbsAndRoles(roles=roles, databases=databases)


async def get_dbs_and_roles(request: Request) -> Response:
    """Every role (with its stored password verifier) and every database.

    200: `{"roles": [...], "databases": [...]}` (database order unspecified).
    500: Postgres could not be reached or read.
    """
    import psycopg  # noqa: PLC0415 - psycopg is heavy: off the start-up path

    node: ComputeNode = request.app.state.compute
    try:
        async with await connect(node.params.connstr, APPLICATION_NAME) as conn:
            result = await read_dbs_and_roles(conn)
    except psycopg.Error as exc:
        return json_error(pg_error_text(exc), 500)
    return json_ok(result.model_dump(mode="json"))

"""Names taken from API requests are checked as the spec's names are (one check), and the
helpers the routes' other inputs go through: pg_dump's and libpq's refusals recognised,
pg_isready aimed where the connection string says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from compute_ctl.errors import SpecError
from compute_ctl.http.app import EXTERNAL_ROUTES, INTERNAL_ROUTES
from compute_ctl.http.openapi import openapi_document
from compute_ctl.http.schemas import (
    DatabaseSchemaQuery,
    ExtensionInstallRequest,
    SetRoleGrantsRequest,
    name_error,
)
from compute_ctl.postgres.connect import DatabaseRefusal, database_refusal
from compute_ctl.postgres.tools import pg_isready_argv
from compute_ctl.spec.catalog_checks import check_name

REQUESTS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (DatabaseSchemaQuery, {"database": "app db"}),
    (ExtensionInstallRequest, {"extension": "citext", "database": "app", "version": "1.6"}),
    (
        SetRoleGrantsRequest,
        {"database": "app", "schema": "public", "privileges": ["USAGE"], "role": "alice"},
    ),
]
BAD = [
    ("", "name is empty"),
    ("x" * 64, "is 64 bytes long; Postgres allows at most 63"),
    ("\u00e9" * 32, "is 64 bytes long"),  # 32 characters, 64 bytes
    ("a\x00b", "contains a NUL character"),
]


@pytest.mark.parametrize(("model", "fields"), REQUESTS, ids=[m.__name__ for m, _ in REQUESTS])
def test_every_name_field_is_checked(model: type[BaseModel], fields: dict[str, Any]) -> None:
    assert name_error(model.model_validate(fields)) is None
    names = [key for key, value in fields.items() if isinstance(value, str)]
    for key in names:
        for value, problem in BAD:
            error = name_error(model.model_validate({**fields, key: value}))
            assert error is not None, (key, value)
            assert error.field == key
            assert error.one_line().startswith(f"{key}: {key} name")
            assert problem in error.problem
            assert len(error.one_line()) < 200  # a short excerpt, never the whole value


def test_the_longest_name_postgres_keeps_is_accepted() -> None:
    query = DatabaseSchemaQuery.model_validate({"database": "\u00e9" * 31 + "x"})  # 63 bytes
    assert name_error(query) is None


def test_a_lone_surrogate_is_refused_not_raised() -> None:
    with pytest.raises(SpecError, match="is not valid Unicode"):
        check_name("role", "a\ud800", "role")


def test_the_openapi_document_states_the_rule() -> None:
    external = openapi_document(EXTERNAL_ROUTES, "x")
    (parameter,) = external["paths"]["/database_schema"]["get"]["parameters"]
    assert parameter["schema"]["minLength"] == 1
    assert parameter["schema"]["maxLength"] == 63
    internal = openapi_document(INTERNAL_ROUTES, "x")["components"]["schemas"]
    for model, key in [
        ("ExtensionInstallRequest", "version"),
        ("SetRoleGrantsRequest", "schema"),
        ("SetRoleGrantsRequest", "role"),
    ]:
        assert internal[model]["properties"][key]["minLength"] == 1, (model, key)


@pytest.mark.parametrize(
    ("message", "database", "refusal"),
    [
        (
            'pg_dump: error: connection to server at "127.0.0.1", port 5432 failed: '
            'FATAL:  database "nope" does not exist\n',
            "nope",
            DatabaseRefusal.MISSING,
        ),
        # The name holds a newline and regex characters; psycopg collapses the spaces.
        ('failed: FATAL: database "a\nb.*" does not exist', "a\nb.*", DatabaseRefusal.MISSING),
        (
            'FATAL:  database "template0" is not currently accepting connections',
            "template0",
            DatabaseRefusal.CLOSED,
        ),
        ('FATAL:  database "other" does not exist', "nope", None),
        ('FATAL:  role "nope" does not exist', "nope", None),
        ("connection refused", "nope", None),
    ],
)
def test_database_refusal(message: str, database: str, refusal: DatabaseRefusal | None) -> None:
    assert database_refusal(message, database) is refusal


@pytest.mark.parametrize(
    ("connstr", "conninfo"),
    [
        (
            "postgresql://cloud_admin@127.0.0.1:55432/postgres",
            "user=cloud_admin dbname=postgres host=127.0.0.1 port=55432",
        ),
        # A socket directory, a password (never on the command line), TLS settings.
        (
            "postgresql://cloud_admin:s3cret@/postgres?host=%2Frun%2Fmy%20pg&port=6432"
            "&sslmode=disable",
            "user=cloud_admin dbname=postgres host='/run/my pg' port=6432 sslmode=disable",
        ),
        ("postgres://u@h1:1,h2:2/app", "user=u dbname=app host=h1,h2 port=1,2"),
    ],
)
def test_pg_isready_is_aimed_where_the_connstr_says(connstr: str, conninfo: str) -> None:
    argv = pg_isready_argv(Path("/pg/bin"), connstr)
    assert argv == ["/pg/bin/pg_isready", "--dbname", conninfo]
    assert "s3cret" not in " ".join(argv)


def test_pg_isready_with_a_connstr_libpq_cannot_parse() -> None:
    with pytest.raises(ValueError, match="cannot parse the connection string"):
        pg_isready_argv(Path("/pg/bin"), "postgresql://u@h:1/d?no_such_parameter=1")

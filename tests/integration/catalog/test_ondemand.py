"""The single-shot operations behind `/extensions` and `/grants`."""

from __future__ import annotations

import asyncio

import pytest

from compute_ctl.catalog import Privilege, install_extension, set_role_grants
from compute_ctl.errors import CatalogRefusalError
from tests.integration.catalog.conftest import LogWindow, apply, rows, spec_of
from tests.support.pgserver import PgServer

pytestmark = pytest.mark.postgres


def test_install_extension_and_grants(pg: PgServer) -> None:
    apply(pg, spec_of([{"name": "od owner"}], [{"name": "od db", "owner": "od owner"}]))
    assert asyncio.run(install_extension(pg.connstr(), "od db", "citext", "1.6")) == "1.6"
    assert rows(
        pg, "SELECT extversion FROM pg_extension WHERE extname = 'citext'", dbname="od db"
    ) == [("1.6",)]
    with LogWindow(pg) as window:
        assert asyncio.run(install_extension(pg.connstr(), "od db", "citext", "1.6")) == "1.6"
    assert not [line for line in window.lines if "CREATE EXTENSION" in line]
    with pytest.raises(CatalogRefusalError) as caught:
        asyncio.run(install_extension(pg.connstr(), "od db", "no_such_ext", "1.0"))
    assert caught.value.obj == 'extension "no_such_ext" in database "od db"'
    assert caught.value.missing
    with pytest.raises(CatalogRefusalError) as caught:
        asyncio.run(install_extension(pg.connstr(), "od db", "citext", "9.9"))
    assert not caught.value.missing
    # A database that does not exist: said without libpq's connection details.
    with pytest.raises(CatalogRefusalError) as caught:
        asyncio.run(install_extension(pg.connstr(), "no db", "citext", "1.6"))
    assert caught.value.missing
    assert caught.value.message == 'database "no db" does not exist'
    with pytest.raises(CatalogRefusalError) as caught:
        asyncio.run(set_role_grants(pg.connstr(), "od db", "public", [Privilege.USAGE], "ghost"))
    assert caught.value.missing
    assert caught.value.message == 'role "ghost" does not exist'

    privileges = [Privilege.USAGE, Privilege.CREATE]
    asyncio.run(set_role_grants(pg.connstr(), "od db", "public", privileges, "od owner"))
    granted = rows(
        pg,
        "SELECT has_schema_privilege('od owner', 'public', 'USAGE'),"
        " has_schema_privilege('od owner', 'public', 'CREATE')",
        dbname="od db",
    )
    assert granted == [(True, True)]
    with LogWindow(pg) as window:
        asyncio.run(set_role_grants(pg.connstr(), "od db", "public", privileges, "od owner"))
    assert not [line for line in window.lines if "GRANT" in line]
    apply(
        pg,
        spec_of(
            delta_operations=[
                {"action": "delete_db", "name": "od db"},
                {"action": "delete_role", "name": "od owner"},
            ]
        ),
    )

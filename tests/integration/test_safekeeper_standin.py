"""The safekeeper stand-in: `TIMELINE_STATUS` over psycopg's simple protocol and over psql,
with the startup options compute_ctl sends, in Trust and JWT mode, and each fault it can inject.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from compute_ctl.spec.types import Lsn, TenantId, TimelineId
from compute_dev.standins.safekeeper import SafekeeperFaults, parse_options, serve_safekeeper
from compute_dev.standins.timelines import Timeline, TimelineStore
from tests.integration.conftest import JwtKeys

pytestmark = pytest.mark.postgres

HOST = "127.0.0.1"
OTHER_TIMELINE = TimelineId("0" * 32)


@contextlib.asynccontextmanager
async def safekeeper(
    store: TimelineStore,
    *,
    public_key: bytes | None = None,
    faults: SafekeeperFaults | None = None,
) -> AsyncIterator[str]:
    """A running stand-in on a free port; yields its URL as compute_ctl builds it."""
    server = await serve_safekeeper(store, HOST, 0, public_key=public_key, faults=faults)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"postgresql://no_user@{HOST}:{port}"
    finally:
        server.close()
        await server.wait_closed()


def options_for(tenant: TenantId, timeline: TimelineId) -> str:
    """compute_ctl's options: one `-c`, then two `k=v` tokens."""
    return f"-c timeline_id={timeline} tenant_id={tenant}"


async def timeline_status(
    url: str,
    tenant: TenantId,
    timeline: TimelineId,
    *,
    password: str | None = None,
) -> tuple[list[str], list[tuple[Any, ...]], str | None]:
    """Column names, rows and command tag of `TIMELINE_STATUS` (simple protocol)."""
    async with (
        await psycopg.AsyncConnection.connect(
            url, options=options_for(tenant, timeline), password=password, autocommit=True
        ) as conn,
        conn.cursor() as cursor,
    ):
        await cursor.execute(b"TIMELINE_STATUS")
        names = [column.name for column in cursor.description or []]
        return names, await cursor.fetchall(), cursor.statusmessage


def status(store: TimelineStore, timeline: Timeline, **kwargs: Any) -> list[tuple[Any, ...]]:
    faults = kwargs.pop("faults", None)

    async def run() -> list[tuple[Any, ...]]:
        async with safekeeper(store, faults=faults) as url:
            _, rows, _ = await timeline_status(url, timeline.tenant_id, timeline.timeline_id)
            return rows

    return asyncio.run(run())


def test_timeline_status_over_psycopg(
    timeline_store: TimelineStore, timeline: Timeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="compute_dev.safekeeper")

    async def run() -> None:
        async with safekeeper(timeline_store) as url:
            names, rows, tag = await timeline_status(url, timeline.tenant_id, timeline.timeline_id)
            assert names == ["flush_lsn", "commit_lsn"]
            assert rows == [(str(timeline.lsn), str(timeline.lsn))]
            assert tag == "TIMELINE_STATUS"
            # An unknown timeline has no row.
            _, rows, tag = await timeline_status(url, timeline.tenant_id, OTHER_TIMELINE)
            assert rows == []
            assert tag == "TIMELINE_STATUS"

    asyncio.run(run())
    assert f"flush_lsn={timeline.lsn} commit_lsn={timeline.lsn}" in caplog.text


def test_timeline_status_over_psql(timeline_store: TimelineStore, timeline: Timeline) -> None:
    async def run() -> str:
        async with safekeeper(timeline_store) as url:
            psql = await asyncio.create_subprocess_exec(
                "psql",
                url,
                "-X",
                "-A",
                "-t",
                "-c",
                "TIMELINE_STATUS",
                env={
                    **os.environ,
                    "PGOPTIONS": options_for(timeline.tenant_id, timeline.timeline_id),
                },
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await psql.communicate()
            assert psql.returncode == 0, stderr.decode()
            return stdout.decode().strip()

    assert asyncio.run(run()) == f"{timeline.lsn}|{timeline.lsn}"


def test_parse_options() -> None:
    tenant, timeline = TenantId("ab" * 16), TimelineId("cd" * 16)
    assert parse_options(options_for(tenant, timeline)) == (tenant, timeline)
    assert parse_options(f"ztenantid={tenant}  -c  ztimelineid={timeline}") == (tenant, timeline)
    assert parse_options(r"-c application\ x=1 other=2") == (None, None)
    assert parse_options("") == (None, None)


@pytest.mark.parametrize(
    ("options", "query", "expected"),
    [
        ("-c timeline_id={l}", "TIMELINE_STATUS", "tenantid is required"),
        ("-c tenant_id={t}", "TIMELINE_STATUS", "timelineid is required"),
        ("-c tenant_id={t} timeline_id={l}", "SELECT 1", "unsupported command SELECT 1"),
        (
            "-c tenant_id={t} timeline_id={l}",
            "START_WAL_PUSH (proto_version '3')",
            "START_WAL_PUSH is not implemented by the compute_dev safekeeper stand-in",
        ),
    ],
)
def test_command_errors(
    timeline_store: TimelineStore, timeline: Timeline, options: str, query: str, expected: str
) -> None:
    values = {"t": timeline.tenant_id, "l": timeline.timeline_id}

    async def run() -> None:
        async with (
            safekeeper(timeline_store) as url,
            await psycopg.AsyncConnection.connect(
                url, options=options.format(**values), autocommit=True
            ) as conn,
            conn.cursor() as cursor,
        ):
            with pytest.raises(psycopg.errors.InternalError_) as caught:
                await cursor.execute(query.encode())
            assert caught.value.diag.message_primary == expected
            await cursor.execute(b"SET DATESTYLE TO ISO")
            assert cursor.statusmessage == "SELECT 1"

    asyncio.run(run())


def test_invalid_ids_in_options_end_the_handshake(timeline_store: TimelineStore) -> None:
    async def run() -> None:
        async with safekeeper(timeline_store) as url:
            with pytest.raises(psycopg.OperationalError, match="Failed to parse tenant id"):
                await psycopg.AsyncConnection.connect(url, options="-c tenant_id=xyz")

    asyncio.run(run())


# -- JWT mode ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "allowed"),
    [
        ({"scope": "tenant", "tenant_id": "{t}"}, True),
        ({"scope": "safekeeperdata"}, True),
        ({"scope": "tenant", "tenant_id": "ff" * 16}, False),
        ({"scope": "pageserverapi"}, False),
    ],
)
def test_jwt_permissions(
    timeline_store: TimelineStore,
    timeline: Timeline,
    jwt_keys: JwtKeys,
    claims: dict[str, str],
    allowed: bool,
) -> None:
    token = jwt_keys.token(**{k: v.format(t=timeline.tenant_id) for k, v in claims.items()})

    async def run() -> None:
        async with safekeeper(timeline_store, public_key=jwt_keys.public_pem) as url:
            if allowed:
                _, rows, _ = await timeline_status(
                    url, timeline.tenant_id, timeline.timeline_id, password=token
                )
                assert rows == [(str(timeline.lsn), str(timeline.lsn))]
                return
            with pytest.raises(psycopg.errors.InternalError_, match="JWT authentication error"):
                await timeline_status(url, timeline.tenant_id, timeline.timeline_id, password=token)

    asyncio.run(run())


def test_jwt_mode_rejects_bad_tokens_at_the_handshake(
    timeline_store: TimelineStore, timeline: Timeline, jwt_keys: JwtKeys
) -> None:
    async def run() -> None:
        async with safekeeper(timeline_store, public_key=jwt_keys.public_pem) as url:
            with pytest.raises(psycopg.OperationalError, match="JWT authentication error"):
                await timeline_status(
                    url, timeline.tenant_id, timeline.timeline_id, password="not.a.jwt"
                )
            with pytest.raises(psycopg.OperationalError, match="no password supplied"):
                await timeline_status(url, timeline.tenant_id, timeline.timeline_id)

    asyncio.run(run())


# -- faults ----------------------------------------------------------------------


def test_fault_no_row(timeline_store: TimelineStore, timeline: Timeline) -> None:
    assert status(timeline_store, timeline, faults=SafekeeperFaults(no_row=True)) == []


def test_fault_unequal_lsns_across_safekeepers(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    other = Lsn(timeline.lsn + 0x100)
    behind = SafekeeperFaults(flush_lsn=other, commit_lsn=other)
    assert status(timeline_store, timeline, faults=behind) == [(str(other), str(other))]


def test_fault_flush_differs_from_commit(timeline_store: TimelineStore, timeline: Timeline) -> None:
    older = Lsn(timeline.lsn - 0x100)
    faults = SafekeeperFaults(commit_lsn=older)
    assert status(timeline_store, timeline, faults=faults) == [(str(timeline.lsn), str(older))]


def test_fault_delay_exceeds_compute_ctls_100ms(
    timeline_store: TimelineStore, timeline: Timeline
) -> None:
    faults = SafekeeperFaults(delay=0.5)

    async def run() -> None:
        async with safekeeper(timeline_store, faults=faults) as url:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await timeline_status(url, timeline.tenant_id, timeline.timeline_id)
            # Without a deadline the answer does come.
            _, rows, _ = await timeline_status(url, timeline.tenant_id, timeline.timeline_id)
            assert rows == [(str(timeline.lsn), str(timeline.lsn))]

    asyncio.run(run())


def test_fault_error_response(timeline_store: TimelineStore, timeline: Timeline) -> None:
    faults = SafekeeperFaults(error="safekeeper is shutting down")
    with pytest.raises(psycopg.errors.InternalError_, match="safekeeper is shutting down"):
        status(timeline_store, timeline, faults=faults)


def test_fault_auth_failure(timeline_store: TimelineStore, timeline: Timeline) -> None:
    faults = SafekeeperFaults(reject_auth=True)

    async def run() -> None:
        async with safekeeper(timeline_store, faults=faults) as url:
            with pytest.raises(psycopg.OperationalError, match="JWT authentication error"):
                await timeline_status(
                    url, timeline.tenant_id, timeline.timeline_id, password="anything"
                )
            faults.reject_auth = False  # switched at run time
            _, rows, _ = await timeline_status(url, timeline.tenant_id, timeline.timeline_id)
            assert len(rows) == 1

    asyncio.run(run())

"""LFC prewarm/offload without Postgres: the endpoint-storage object, zstd, cancellation, the
state machines up to the database step, the periodic offload's gating, and the stand-in."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_ctl.lfc import (
    NO_SPEC,
    CancelToken,
    Lfc,
    LfcError,
    TokenCancelledError,
    compress,
    decompress,
    prewarm_display,
    state_object,
    unless_cancelled,
)
from compute_ctl.metrics import PromMetrics
from compute_ctl.spec.load import load_compute_spec
from compute_ctl.spec.resolve import ParsedSpec, resolve
from compute_ctl.spec.responses import (
    LfcOffloadFailed,
    LfcPrewarmCancelled,
    LfcPrewarmCompleted,
    LfcPrewarmFailed,
    LfcPrewarmNotPrewarmed,
    LfcPrewarmPrewarming,
    LfcPrewarmSkipped,
    LfcPrewarmState,
)
from tests.support.endpoint_storage import EndpointStorage, running_endpoint_storage, unzstd, zstd
from tests.support.specs import TENANT, TIMELINE, settings, storage_spec
from tests.support.waiting import wait_until_async

CLOSED = "postgresql://cloud_admin@127.0.0.1:1/postgres"  # nothing listens on port 1


def pspec(**fields: Any) -> ParsedSpec:
    return resolve(load_compute_spec(json.dumps(storage_spec(**fields))))


def storage_pspec(storage: EndpointStorage, endpoint_id: str = "ep-1", **fields: Any) -> ParsedSpec:
    return pspec(
        endpoint_id=endpoint_id,
        endpoint_storage_addr=storage.addr,
        endpoint_storage_token=storage.token,
        **fields,
    )


@pytest.fixture
def storage() -> Iterator[EndpointStorage]:
    with running_endpoint_storage() as running:
        yield running


def counter(prom: PromMetrics, name: str) -> float:
    value = prom.registry.get_sample_value(name)
    assert value is not None, name
    return value


async def settle(lfc: Lfc, what: str = "prewarm") -> Any:
    """Wait (bounded) until the background prewarm or offload has ended."""
    running = "prewarming" if what == "prewarm" else "offloading"

    def state() -> Any:
        return lfc.prewarm_state if what == "prewarm" else lfc.offload_state

    await wait_until_async(f"the {what} to end", lambda: state().status != running, 30)
    return state()


# ------------------------------------------------------------------------------------------
# The object and its encoding


def test_state_object_url_and_token() -> None:
    parsed = pspec(
        endpoint_id="ep-1", endpoint_storage_addr="es:9000", endpoint_storage_token="secret"
    )
    obj = state_object(parsed, None)
    assert obj.url == f"http://es:9000/{TENANT}/{TIMELINE}/ep-1/lfc_state"
    assert obj.token == "secret"
    assert "secret" not in repr(obj)
    other = state_object(parsed, "ep-other")
    assert other.url == f"http://es:9000/{TENANT}/{TIMELINE}/ep-other/lfc_state"
    # An odd endpoint name stays one path segment.
    assert state_object(parsed, "a/b?c").url.endswith("/a%2Fb%3Fc/lfc_state")


def test_state_object_settings_fallback() -> None:
    cluster = {
        "roles": [],
        "databases": [],
        "settings": settings(
            neon__endpoint_storage_addr="es:1", neon__endpoint_storage_token="tok"
        ),
    }
    obj = state_object(pspec(endpoint_id="ep", cluster=cluster), None)
    assert obj.url.startswith("http://es:1/")
    assert obj.token == "tok"


@pytest.mark.parametrize(
    ("fields", "from_endpoint", "error"),
    [
        ({}, None, "pspec.endpoint_id missing, other endpoint_id not provided"),
        ({"endpoint_id": "ep"}, None, "pspec.endpoint_storage_addr missing"),
        ({}, "ep", "pspec.endpoint_storage_addr missing"),
        (
            {"endpoint_id": "ep", "endpoint_storage_addr": "es:1"},
            None,
            "pspec.endpoint_storage_token missing",
        ),
    ],
)
def test_state_object_missing_parts(
    fields: dict[str, Any], from_endpoint: str | None, error: str
) -> None:
    with pytest.raises(LfcError) as caught:
        state_object(pspec(**fields), from_endpoint)
    assert str(caught.value) == error


def test_state_object_without_spec() -> None:
    with pytest.raises(LfcError, match=NO_SPEC):
        state_object(None, None)


def test_zstd_round_trip_and_errors() -> None:
    data = bytes(range(256)) * 100
    assert decompress(compress(data)) == data
    assert unzstd(compress(data)) == data
    assert decompress(zstd(data)) == data  # a frame without its content size
    assert decompress(zstd(b"")) == b""
    with pytest.raises(ValueError, match="incomplete"):
        decompress(compress(data)[:-4])
    with pytest.raises(ValueError, match="incomplete"):
        decompress(b"")
    with pytest.raises(ValueError, match="zstd"):
        decompress(b"not zstd at all")


@pytest.mark.parametrize(
    ("state", "display"),
    [
        (LfcPrewarmNotPrewarmed(), "NotPrewarmed"),
        (LfcPrewarmPrewarming(), "Prewarming"),
        (LfcPrewarmSkipped(), "Skipped"),
        (LfcPrewarmCancelled(), "Cancelled"),
        (LfcPrewarmFailed(error="boom"), "Error(boom)"),
    ],
)
def test_prewarm_display(state: LfcPrewarmState, display: str) -> None:
    assert prewarm_display(state) == display


def test_state_json_shapes() -> None:
    assert LfcPrewarmNotPrewarmed().model_dump(mode="json") == {"status": "not_prewarmed"}
    completed = LfcPrewarmCompleted(
        total=3,
        prewarmed=2,
        skipped=1,
        state_download_time_ms=4,
        uncompress_time_ms=5,
        prewarm_time_ms=6,
    )
    assert list(completed.model_dump(mode="json")) == [
        "status",
        "total",
        "prewarmed",
        "skipped",
        "state_download_time_ms",
        "uncompress_time_ms",
        "prewarm_time_ms",
    ]
    assert LfcOffloadFailed(error="x").model_dump(mode="json") == {
        "status": "failed",
        "error": "x",
    }


# ------------------------------------------------------------------------------------------
# Cancellation


def test_unless_cancelled() -> None:
    async def scenario() -> None:
        token = CancelToken()
        assert await unless_cancelled(token, asyncio.sleep(0, "done")) == "done"

        started = asyncio.Event()
        stopped = asyncio.Event()

        async def long() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            finally:
                stopped.set()

        waiting = asyncio.ensure_future(unless_cancelled(token, long()))
        await started.wait()
        token.cancel()
        with pytest.raises(TokenCancelledError):
            await waiting
        await stopped.wait()  # the work itself was cancelled

        # An already cancelled token refuses at once, without running the work.
        ran = False

        async def mark() -> None:
            nonlocal ran
            ran = True

        with pytest.raises(TokenCancelledError):
            await unless_cancelled(token, mark())
        assert not ran

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------
# The state machines up to the database step


def make_lfc(parsed: ParsedSpec | None) -> tuple[Lfc, PromMetrics]:
    prom = PromMetrics()
    return Lfc(CLOSED, lambda: parsed, prom), prom


def test_prewarm_without_spec_fails() -> None:
    async def scenario() -> None:
        lfc, prom = make_lfc(None)
        assert lfc.prewarm(None)
        assert await settle(lfc) == LfcPrewarmFailed(error=NO_SPEC)
        assert counter(prom, "compute_ctl_lfc_prewarms_total") == 1
        assert counter(prom, "compute_ctl_lfc_prewarm_errors_total") == 1
        assert lfc.offload()
        assert await settle(lfc, "offload") == LfcOffloadFailed(error=NO_SPEC)
        assert counter(prom, "compute_ctl_lfc_offloads_total") == 1
        assert counter(prom, "compute_ctl_lfc_offload_errors_total") == 1

    asyncio.run(scenario())


def test_prewarm_outcomes_before_postgres(storage: EndpointStorage) -> None:
    async def scenario() -> None:
        lfc, prom = make_lfc(storage_pspec(storage))
        # Nothing stored: skipped, not an error.
        assert lfc.prewarm(None)
        assert await settle(lfc) == LfcPrewarmSkipped()
        assert counter(prom, "compute_ctl_lfc_prewarm_errors_total") == 0

        storage.fail(TENANT, TIMELINE, "ep-1", 500)
        assert lfc.prewarm(None)
        state = await settle(lfc)
        assert state == LfcPrewarmFailed(
            error="500 Internal Server Error querying endpoint storage"
        )
        storage.fail(TENANT, TIMELINE, "ep-1", None)

        storage.put(TENANT, TIMELINE, "ep-1", b"not zstd")
        assert lfc.prewarm(None)
        state = await settle(lfc)
        assert isinstance(state, LfcPrewarmFailed)
        assert state.error.startswith("decoding LFC state: ")

        # A valid state gets as far as Postgres (none here).
        storage.put(TENANT, TIMELINE, "ep-1", zstd(b"pages"))
        assert lfc.prewarm(None)
        state = await settle(lfc)
        assert isinstance(state, LfcPrewarmFailed)
        assert state.error.startswith("connecting to postgres: ")
        assert counter(prom, "compute_ctl_lfc_prewarms_total") == 4
        assert counter(prom, "compute_ctl_lfc_prewarm_errors_total") == 3

    asyncio.run(scenario())


def test_wrong_token_and_unreachable_storage(storage: EndpointStorage) -> None:
    async def scenario() -> None:
        wrong = pspec(
            endpoint_id="ep-1",
            endpoint_storage_addr=storage.addr,
            endpoint_storage_token="wrong",
        )
        lfc, _ = make_lfc(wrong)
        lfc.prewarm(None)
        assert await settle(lfc) == LfcPrewarmFailed(
            error="401 Unauthorized querying endpoint storage"
        )
        closed = pspec(
            endpoint_id="ep-1",
            endpoint_storage_addr="127.0.0.1:1",
            endpoint_storage_token="secret-token",
        )
        lfc, _ = make_lfc(closed)
        lfc.prewarm(None)
        state = await settle(lfc)
        assert isinstance(state, LfcPrewarmFailed)
        prefix = "querying endpoint storage: error sending request for url (http://127.0.0.1:1/"
        assert state.error.startswith(prefix)
        assert "secret-token" not in state.error

    asyncio.run(scenario())


def test_one_prewarm_at_a_time_and_cancel(storage: EndpointStorage) -> None:
    async def scenario() -> None:
        lfc, prom = make_lfc(storage_pspec(storage))
        storage.put(TENANT, TIMELINE, "ep-1", zstd(b"pages"))
        with storage.held(TENANT, TIMELINE, "ep-1"):
            assert lfc.prewarm(None)
            assert lfc.prewarm_state == LfcPrewarmPrewarming()
            assert not lfc.prewarm(None)  # the route answers 429
            assert counter(prom, "compute_ctl_lfc_prewarms_total") == 1
            lfc.cancel_prewarm()  # the download is abandoned
            assert await settle(lfc) == LfcPrewarmCancelled()
        assert counter(prom, "compute_ctl_lfc_prewarm_errors_total") == 0

        # Cancelled ended with a fresh token: the next prewarm runs (to Postgres, absent).
        assert lfc.prewarm(None)
        state = await settle(lfc)
        assert isinstance(state, LfcPrewarmFailed)

        # Cancelling while idle cancels the next prewarm, and only that one.
        lfc.cancel_prewarm()
        assert lfc.prewarm(None)
        assert await settle(lfc) == LfcPrewarmCancelled()
        assert lfc.prewarm(None)
        assert isinstance(await settle(lfc), LfcPrewarmFailed)

        # A configuration error is found before the token is looked at; the token stays
        # cancelled for the prewarm after that.
        lfc.cancel_prewarm()
        parsed = lfc.pspec()
        lfc.pspec = lambda: None
        assert lfc.prewarm(None)
        assert await settle(lfc) == LfcPrewarmFailed(error=NO_SPEC)
        lfc.pspec = lambda: parsed
        assert lfc.prewarm(None)
        assert await settle(lfc) == LfcPrewarmCancelled()

    asyncio.run(scenario())


def test_offload_loop_only_after_a_good_prewarm() -> None:
    async def scenario() -> None:
        lfc, _ = make_lfc(None)
        offloads: list[str] = []

        async def offload_now() -> None:
            offloads.append(lfc.prewarm_state.status)

        lfc.offload_now = offload_now  # type: ignore[method-assign]
        ticks: asyncio.Queue[None] = asyncio.Queue()
        consumed = asyncio.Queue[None]()

        async def ticker() -> AsyncIterator[None]:
            while True:
                await ticks.get()
                yield
                consumed.put_nowait(None)

        loop = asyncio.ensure_future(lfc.offload_loop(ticker()))
        states: list[LfcPrewarmState] = [
            LfcPrewarmNotPrewarmed(),
            LfcPrewarmPrewarming(),
            LfcPrewarmFailed(error="x"),
            LfcPrewarmCancelled(),
            LfcPrewarmSkipped(),
            LfcPrewarmCompleted(
                total=0,
                prewarmed=0,
                skipped=0,
                state_download_time_ms=0,
                uncompress_time_ms=0,
                prewarm_time_ms=0,
            ),
        ]
        for state in states:
            lfc.prewarm_state = state
            ticks.put_nowait(None)
            await consumed.get()
        loop.cancel()
        assert offloads == ["not_prewarmed", "skipped", "completed"]

    asyncio.run(scenario())


# ------------------------------------------------------------------------------------------
# The stand-in


def request(
    storage: EndpointStorage, method: str, path: str, body: bytes | None = None, token: str = ""
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token or storage.token}"}
    req = urllib.request.Request(
        f"http://{storage.addr}{path}", data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_endpoint_storage_stand_in(storage: EndpointStorage) -> None:
    path = f"/{TENANT}/{TIMELINE}/ep-1/lfc_state"
    assert request(storage, "GET", path) == (404, b"")
    assert request(storage, "PUT", path, b"state") == (200, b"")
    assert request(storage, "GET", path) == (200, b"state")
    assert storage.get(TENANT, TIMELINE, "ep-1") == b"state"
    assert request(storage, "GET", path, token="wrong") == (401, b"")
    storage.fail(TENANT, TIMELINE, "ep-1", 503)
    assert request(storage, "GET", path)[0] == 503
    assert request(storage, "PUT", path, b"other")[0] == 503
    storage.fail(TENANT, TIMELINE, "ep-1", None)
    assert request(storage, "GET", path) == (200, b"state")
    assert request(storage, "DELETE", path) == (200, b"")
    assert request(storage, "GET", path) == (404, b"")
    for bad in ("/a/b/c", "/a/b/c/d/e", "/../b/c/d", f"/{TENANT}/{TIMELINE}/.x/lfc_state"):
        assert request(storage, "GET", bad)[0] == 404


def test_endpoint_storage_command(tmp_path: Path) -> None:
    """`compute-dev endpoint-storage` announces its address, serves, and stops on SIGTERM."""
    argv = [sys.executable, "-m", "compute_dev.cli", "endpoint-storage", "--dir", str(tmp_path)]
    process = subprocess.Popen(
        [*argv, "--token", "sekrit-42"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        addr = json.loads(process.stdout.readline())["endpoint_storage_addr"]
        assert addr.startswith("127.0.0.1:")
        running = EndpointStorage(tmp_path, addr, "sekrit-42")
        path = f"/{TENANT}/{TIMELINE}/ep/lfc_state"
        assert request(running, "PUT", path, b"x") == (200, b"")
        assert (tmp_path / TENANT / TIMELINE / "ep" / "lfc_state").read_bytes() == b"x"
        assert request(running, "GET", path, token="nope")[0] == 401
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "PUT" in stderr
    assert "sekrit-42" not in stderr

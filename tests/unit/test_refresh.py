"""The refresh path with the I/O replaced: `/refresh_configuration`'s state rules and
every outcome of one configurator refresh."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from compute_ctl.cli import parse_params
from compute_ctl.compute import configurator as configurator_module
from compute_ctl.compute.node import ComputeNode
from compute_ctl.errors import ComputeError
from compute_ctl.spec.load import load_compute_spec
from compute_ctl.spec.models import ComputeSpec
from compute_ctl.spec.resolve import resolve
from compute_ctl.state import ComputeStatus
from tests.support.specs import storage_spec

S = ComputeStatus


def spec(**fields: Any) -> ComputeSpec:
    return load_compute_spec(json.dumps(storage_spec(**fields)))


class Harness:
    """A ComputeNode whose spec source, reconfigure and exit are scripted."""

    def __init__(self, tmp_path: Path, status: ComputeStatus) -> None:
        connstr = "postgresql://cloud_admin@127.0.0.1:1/postgres"
        params = parse_params(
            ["-D", str(tmp_path), "-C", connstr, "-i", "c1", "-p", "http://127.0.0.1:1"]
        )
        self.node = ComputeNode(params, pspec=resolve(spec()), ctl_config=None)
        self.node.state.status = status
        self.source: Callable[[], Awaitable[ComputeSpec | None]] = self._same
        self.applied: list[ComputeSpec] = []
        self.exit_codes: list[int] = []
        self.fail_apply = False

        async def obtain() -> ComputeSpec | None:
            return await self.source()

        async def reconfigure(pspec: Any) -> None:
            if self.fail_apply:
                raise ComputeError("apply failed")
            self.applied.append(pspec.spec)

        async def exit_now(code: int) -> None:
            self.exit_codes.append(code)

        self.node.configurator.obtain_spec = obtain  # type: ignore[method-assign]
        self.node.configurator.reconfigure = reconfigure
        self.node.configurator.exit_now = exit_now

    @staticmethod
    async def _same() -> ComputeSpec | None:
        return spec()


@pytest.fixture(autouse=True)
def no_refresh_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(configurator_module, "REFRESH_RETRY_DELAY", 0.0)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (S.RUNNING, S.REFRESH_CONFIGURATION_PENDING),
        (S.FAILED, S.REFRESH_CONFIGURATION_PENDING),
        (S.REFRESH_CONFIGURATION_PENDING, S.REFRESH_CONFIGURATION_PENDING),
        (S.INIT, S.INIT),  # accepted, nothing happens
    ],
)
def test_refresh_request_accepted(
    tmp_path: Path, status: ComputeStatus, outcome: ComputeStatus
) -> None:
    h = Harness(tmp_path, status)
    asyncio.run(h.node.configurator.signal_refresh())
    assert h.node.state.status is outcome


@pytest.mark.parametrize(
    "status",
    [S.EMPTY, S.CONFIGURATION_PENDING, S.CONFIGURATION, S.REFRESH_CONFIGURATION, S.TERMINATED],
)
def test_refresh_request_refused(tmp_path: Path, status: ComputeStatus) -> None:
    h = Harness(tmp_path, status)
    with pytest.raises(ComputeError) as caught:
        asyncio.run(h.node.configurator.signal_refresh())
    assert str(caught.value) == f"Cannot refresh compute configuration in state {status.variant}"
    assert h.node.state.status is status


def refresh_once(h: Harness) -> list[ComputeStatus]:
    """Run one refresh from `refresh_configuration`; the statuses it went through."""
    seen: list[ComputeStatus] = []
    h.node.state.listeners.append(seen.append)
    h.node.state.status = S.REFRESH_CONFIGURATION
    asyncio.run(h.node.configurator.refresh())
    return seen


def test_unchanged_pageserver_info_applies_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path, S.RUNNING)

    async def other_settings() -> ComputeSpec | None:
        return spec(reconfigure_concurrency=4)

    h.source = other_settings
    assert refresh_once(h) == [S.RUNNING]
    assert h.applied == []


def test_new_pageserver_info_is_stored_and_applied(tmp_path: Path) -> None:
    h = Harness(tmp_path, S.RUNNING)
    new = spec(pageserver_connstring="postgres://no_user@ps2:64000")

    async def moved() -> ComputeSpec | None:
        return new

    h.source = moved
    assert refresh_once(h) == [S.RUNNING]
    assert h.applied == [new]
    assert h.node.state.pspec is not None and h.node.state.pspec.spec == new


def test_apply_error_leaves_it_pending(tmp_path: Path) -> None:
    h = Harness(tmp_path, S.RUNNING)

    async def moved() -> ComputeSpec | None:
        return spec(pageserver_connstring="postgres://no_user@ps2:64000")

    h.source = moved
    h.fail_apply = True
    assert refresh_once(h) == [S.REFRESH_CONFIGURATION_PENDING]


@pytest.mark.parametrize(
    "problem",
    [
        ComputeError("control plane is temporarily unavailable"),
        ComputeError("Exhausted all attempts to retrieve the config from the control plane"),
    ],
)
def test_fetch_error_leaves_it_pending(tmp_path: Path, problem: ComputeError) -> None:
    h = Harness(tmp_path, S.RUNNING)

    async def failing() -> ComputeSpec | None:
        raise problem

    h.source = failing
    assert refresh_once(h) == [S.REFRESH_CONFIGURATION_PENDING]


def test_unresolvable_spec_leaves_it_pending(tmp_path: Path) -> None:
    h = Harness(tmp_path, S.RUNNING)

    async def duplicate_safekeepers() -> ComputeSpec | None:
        return spec(safekeeper_connstrings=["a:1", "a:1"])

    h.source = duplicate_safekeepers
    assert refresh_once(h) == [S.REFRESH_CONFIGURATION_PENDING]
    assert h.applied == []


def test_empty_answer_exits_1(tmp_path: Path) -> None:
    h = Harness(tmp_path, S.RUNNING)

    async def empty() -> ComputeSpec | None:
        return None

    h.source = empty
    refresh_once(h)
    assert h.exit_codes == [1]


def test_configurator_takes_up_a_refresh_and_waits_after_a_failed_one(tmp_path: Path) -> None:
    h = Harness(tmp_path, S.RUNNING)
    attempts: list[int] = []

    async def flaky() -> ComputeSpec | None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ComputeError("control plane is temporarily unavailable")
        return spec(pageserver_connstring="postgres://no_user@ps2:64000")

    h.source = flaky

    async def scenario() -> None:
        state = h.node.state
        task = asyncio.ensure_future(h.node.configurator.run())
        await asyncio.sleep(0)
        await h.node.configurator.signal_refresh()
        await state.wait_for(S.REFRESH_CONFIGURATION_PENDING, S.RUNNING)
        for _ in range(20):  # the failed refresh is not retried by itself
            await asyncio.sleep(0)
        assert (state.status, len(attempts)) == (S.REFRESH_CONFIGURATION_PENDING, 1)
        await h.node.configurator.signal_refresh()
        await state.wait_for(S.RUNNING)
        assert len(attempts) == 2
        task.cancel()

    asyncio.run(scenario())
    assert len(h.applied) == 1


def test_config_file_is_read_again(tmp_path: Path) -> None:
    connstr = "postgresql://cloud_admin@127.0.0.1:1/postgres"
    config = tmp_path / "config.json"
    params = parse_params(["-D", str(tmp_path), "-C", connstr, "-i", "c1", "-c", str(config)])
    node = ComputeNode(params, pspec=None, ctl_config=None)
    keys: dict[str, Any] = {"jwks": {"keys": []}}
    config.write_text(json.dumps({"spec": storage_spec(), "compute_ctl_config": keys}))
    assert asyncio.run(node.configurator.obtain_spec()) == spec()
    config.write_text(json.dumps({"spec": None, "compute_ctl_config": keys}))
    assert asyncio.run(node.configurator.obtain_spec()) is None
    config.unlink()
    with pytest.raises(ComputeError, match="could not read"):
        asyncio.run(node.configurator.obtain_spec())

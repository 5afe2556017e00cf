"""One verdict on whether a spec can start (issue 17), through the real processes: generated
specs (tests/support/spec_mutants.py) given to `compute-dev spec check FILE`, to `compute_ctl
-S FILE` and to `POST /configure` on an empty compute_ctl.

- `spec check` refuses with exit 1 and one `error:` line, or accepts with exit 0.
- `-S` refuses with exit 1 and one `compute_ctl: error:` line, PGDATA left as it was (a marker
  file in it survives); it accepts when it goes on past loading the spec: its API answers.
- `/configure` refuses with 400/422 and a JSON error, the compute still `empty`; it accepts
  when the compute leaves `empty`.

Accepted specs point at storage where nothing listens: the verdict is decided before any
connection is made, and a start that fails there is quick to stop. A compute that took a spec
is replaced by a fresh empty one; a refusal leaves it as it was, so one serves many examples.
The in-process test (tests/unit/test_spec_verdicts.py) runs the same property on more specs.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.support.hardening_corpus import with_envelope
from tests.support.harness import Compute, HttpAnswer, free_port, http, shared_tempdir
from tests.support.spec_mutants import OFFLINE, Addresses, base_spec, spec_texts
from tests.support.verdicts import Verdict, assert_one_verdict, check_verdict, configure_verdict
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres

EXAMPLES = 30
MARKER = "left-alone"
SEED_PREFIX = "compute_ctl: error: "
SERVING = "serving the external API on port"


def _new_compute(prefix: str) -> Compute:
    ports: list[int] = []
    while len(ports) < 3:  # free_port may hand out the same port twice in a row
        if (port := free_port()) not in ports:
            ports.append(port)
    workdir = shared_tempdir(prefix)
    return Compute(workdir, pg_port=ports[0], http_port=ports[1], internal_port=ports[2])


def _discard(compute: Compute) -> None:
    compute.stop()
    shutil.rmtree(compute.workdir, ignore_errors=True)


class EmptyCompute:
    """An empty compute_ctl for `/configure`, replaced once it has taken a spec."""

    def __init__(self) -> None:
        self.compute: Compute | None = None
        self.pool = concurrent.futures.ThreadPoolExecutor(1)

    def get(self) -> Compute:
        if self.compute is None:
            self.compute = _new_compute("e2e-verdicts-empty-")
            self.compute.start("-i", "compute-1")
        return self.compute

    def close(self) -> None:
        if self.compute is not None:
            _discard(self.compute)
            self.compute = None
        self.pool.shutdown()

    def configure(self, body: bytes) -> Verdict:
        compute = self.get()
        answer = self.pool.submit(http, "POST", f"{compute.url}/configure", body)
        status = "empty"

        def decided() -> bool:
            nonlocal status
            if answer.done():
                return True
            status = str(compute.status()["status"])
            return status != "empty"

        wait_until("/configure answered or the compute left empty", decided)
        if status == "empty":
            reply: HttpAnswer = answer.result()
            status = str(compute.status()["status"])
            log = compute.log()
            assert "Traceback" not in log, log[-3000:]
            if status == "empty":
                return configure_verdict(reply.status, reply.body, left_empty=True)
        # It took the spec: its start-up goes nowhere; the next example gets a fresh compute.
        _discard(compute)
        self.compute = None
        concurrent.futures.wait([answer])  # the stop ends the request one way or another
        return configure_verdict(0, b"", left_empty=False)


@pytest.fixture(scope="module")
def empty_compute() -> Iterator[EmptyCompute]:
    pool = EmptyCompute()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="module")
def seed_dir() -> Iterator[Compute]:
    """One directory for the `-S` runs and the spec files, one run at a time."""
    compute = _new_compute("e2e-verdicts-seed-")
    try:
        yield compute
    finally:
        _discard(compute)


@pytest.fixture(scope="module")
def addresses(seed_dir: Compute) -> Addresses:
    """The offline storage, and settings that keep a Postgres (should one start) off ports
    and sockets others use."""
    settings = tuple((s["name"], s["value"]) for s in seed_dir.settings())
    return replace(OFFLINE, settings=settings)


def _fresh_pgdata(compute: Compute) -> Path:
    if compute.pgdata.exists():
        shutil.rmtree(compute.pgdata)
    compute.pgdata.mkdir(mode=0o700)
    marker = compute.pgdata / MARKER
    marker.write_text("a previous run's file")
    compute.run_as.chown(compute.pgdata)
    compute.run_as.chown(marker)
    return marker


def _seed_verdict(compute: Compute, marker: Path) -> Verdict:
    """Wait for `-S` to exit or serve its API; a serving compute is stopped at once. One
    that served and has already ended (a start that failed fast) took the spec too."""
    assert compute.process is not None
    process = compute.process
    wait_until(
        "compute_ctl -S exited or serves", lambda: process.poll() is not None or _serves(compute)
    )
    serving = process.poll() is None
    if serving:
        compute.stop()
    log = compute.log()
    assert "Traceback" not in log, log[-3000:]
    if serving or SERVING in log:
        return Verdict(True)
    assert process.returncode == 1, (process.returncode, log[-3000:])
    assert log.startswith(SEED_PREFIX) and log.count("\n") == 1, log[-3000:]
    assert log.endswith("\n"), log[-3000:]
    assert marker.exists(), f"PGDATA was touched by a refused spec: {log}"
    return Verdict(False, log.removeprefix(SEED_PREFIX).removesuffix("\n"))


def _serves(compute: Compute) -> bool:
    try:
        answer = http("GET", f"{compute.url}/status", timeout=1)
    except OSError:
        return False
    return answer.status == 200


def _three_verdicts(
    text: str, seed_dir: Compute, empty_compute: EmptyCompute
) -> tuple[Verdict, Verdict, Verdict]:
    path = seed_dir.workdir / "spec.json"
    path.write_text(text)
    seed_dir.run_as.chown(path)
    marker = _fresh_pgdata(seed_dir)
    # `spec check` and `-S` run side by side; `/configure` goes to the other compute meanwhile.
    check = subprocess.Popen(
        [sys.executable, "-m", "compute_dev.cli", "spec", "check", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seed_dir.start("-S", str(path), wait=False)
    configure = empty_compute.configure(with_envelope(text))
    seed = _seed_verdict(seed_dir, marker)
    _, err = check.communicate()
    return check_verdict(check.returncode, err), seed, configure


def _seed(addresses: Addresses, case: str) -> str:
    """The valid base, and the two seeds of issue 17 that `-S` and `/configure` once took."""
    form = "legacy" if case == "valid" else case.split("-", 1)[0]
    spec = base_spec(addresses, form, catalog=case == "valid")
    if case != "valid":
        del spec["pageserver_connection_info"]["shards"]["0000"]["pageservers"][0][f"{form}_url"]
    return json.dumps(spec)


@pytest.mark.parametrize("case", ["valid", "grpc-without-url", "libpq-without-url"])
def test_the_seed_cases_give_one_verdict(
    case: str, seed_dir: Compute, empty_compute: EmptyCompute, addresses: Addresses
) -> None:
    text = _seed(addresses, case)
    verdicts = _three_verdicts(text, seed_dir, empty_compute)
    assert_one_verdict(text, *verdicts)
    assert verdicts[0].accepted is (case == "valid")


@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_the_three_processes_give_one_verdict(
    data: st.DataObject,
    seed_dir: Compute,
    empty_compute: EmptyCompute,
    addresses: Addresses,
) -> None:
    text = data.draw(spec_texts(addresses), label="spec")
    check, seed, configure = _three_verdicts(text, seed_dir, empty_compute)
    event("accepted" if check.accepted else "refused")
    assert_one_verdict(text, check, seed, configure)
